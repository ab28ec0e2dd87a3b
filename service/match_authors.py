"""Who wrote an observation, for one case: the restrained party, an associate, a
suspected alt (look-alike handle, contained name, display name; account age from the
platform), or unknown; and the author key that groups hits into violations."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Literal

from rapidfuzz import fuzz

from service.match_cases import (
    _Author,
    _Case,
    _Identifier,
)
from service.normalize import (
    EMAIL_PLATFORM,
    _author_lookalike,
    _email_address,
    _email_display_name,
    identity_handle,
    normalize_handle,
)
from watchers.base import AccountInfo, Observation, WatcherError, fit_id, utc

log = logging.getLogger(__name__)


# The violations.author_key column's size.
AUTHOR_KEY_MAX = 300


# Score of a suspect whose handle or display name contains a restrained name or handle
# ("realjohndoe1987"): strong evidence, but below an identical look-alike (100).
CONTAINS_SCORE = 90.0


SAME_SKELETON_SCORE = 100.0


# Platforms whose handles can change hands while the account id stays (Bluesky DIDs).
ID_LINKED_PLATFORMS = frozenset({"bluesky"})


# An account created on or after the order's effective date is more suspicious.
NEW_ACCOUNT_BONUS = 10.0


_STATUS_WORDS: dict[str, str] = {
    "deleted": "account has been deleted",
    "suspended": "account is suspended",
    "not_found": "account was not found on the platform",
}


def _role_by_account_id(
    case: _Case, obs: Observation, author: _AuthorContext
) -> tuple[Literal["protected", "restrained", "associate"] | None, str]:
    """On platforms where a handle can change while the account stays (Bluesky: the
    DID), the author's account id against the configured handles' ids, which the
    watcher resolved (``account_lookup`` answers from its cache); a DID may also be
    configured directly. A renamed restrained account stays the restrained account."""
    if obs.platform not in ID_LINKED_PLATFORMS or not obs.author_id:
        return None, ""
    author_id = identity_handle(obs.author_id)
    roles = (
        ("restrained", case.restrained),
        ("associate", case.associates),
        ("protected", case.protected),
    )
    for role, by_platform in roles:
        for key, configured in by_platform.get(obs.platform, {}).items():
            if key == author_id or author.account_id_of(configured) == obs.author_id:
                return role, configured  # type: ignore[return-value]
    return None, ""


def _unknown_author(obs: Observation, author: _AuthorContext) -> _Author:
    if not obs.author_handle:
        noun = "author"
    else:
        noun = "address" if obs.platform == EMAIL_PLATFORM else "account"
    return _Author("unknown", f"`{author.shown()}` (unknown {noun})")


def _posted_by_author(obs: Observation) -> _Author:
    source = f"`{obs.watcher}`"
    if obs.posted_by == "restrained":
        return _Author("restrained", f"the restrained party (source {source})")
    return _Author("associate", f"an associate of the restrained party (source {source})")


@dataclasses.dataclass(frozen=True, slots=True)
class _Resemblance:
    score: float
    description: str


def _suspect(case: _Case, obs: Observation, author: _AuthorContext) -> _Author | None:
    """A suspected alt: look-alike handle, fuzzy-similar handle or a contained name."""
    best = _resemblance(case, obs, author)
    if best is None:
        return None
    score = best.score
    notes = [best.description]
    created, status_note = author.account_facts()
    if created is not None:
        created_day = utc(created).astimezone(case.zone).date()
        if created_day >= case.settings.order.effective:
            score = min(100.0, score + NEW_ACCOUNT_BONUS)
            notes.append(f"account created {created_day.isoformat()}, after the order")
        else:
            notes.append(f"account created {created_day.isoformat()}, before the order")
    if status_note:
        notes.append(status_note)
    description = f"author `{author.shown()}` " + "; ".join(notes)
    return _Author("suspected_alt", description, round(score, 1))


def _resemblance(case: _Case, obs: Observation, author: _AuthorContext) -> _Resemblance | None:
    """The strongest resemblance of the author to the restrained party, or None.

    Scorer: ``fuzz.ratio`` (normalised Indel similarity) on look-alike forms. Partial
    and token scorers were rejected: separators are already folded away (so token
    variants add nothing), and partial alignment rates any short handle a perfect match
    of a longer one (``john`` vs ``johndoe`` = 100) while costing several times more per
    comparison. Containment, which partial matching would catch, is an exact check here.
    """
    handle_norm, display, display_norm = author.forms()
    candidates: list[_Resemblance] = []
    if obs.platform == EMAIL_PLATFORM and obs.author_handle:
        # The whole address imitated, domain included: john@examp1e.com.
        imitated = case.addresses.get(normalize_handle(_email_address(obs.author_handle)))
        if imitated is not None:
            score = SAME_SKELETON_SCORE
            text = f"resembles restrained address `{imitated}` (score {_format_score(score)})"
            candidates.append(_Resemblance(score, text))
    if handle_norm:
        same = case.by_norm.get(handle_norm)
        if same is not None:
            candidates.append(
                _Resemblance(
                    SAME_SKELETON_SCORE, _resembles(same, SAME_SKELETON_SCORE, obs.platform)
                )
            )
        threshold = case.settings.fuzzy_threshold
        for ident in case.identifiers:
            score = fuzz.ratio(handle_norm, ident.norm, score_cutoff=threshold)
            if score:
                candidates.append(_Resemblance(score, _resembles(ident, score, obs.platform)))
        for ident in case.contained:
            if ident.norm in handle_norm and ident.norm != handle_norm:
                score = max(CONTAINS_SCORE, fuzz.ratio(handle_norm, ident.norm))
                candidates.append(_Resemblance(score, _contains(ident, score, obs.platform)))
    if display_norm:
        for ident in case.contained:
            if ident.norm in display_norm:
                text = f'has display name "{display}" which ' + _contains(
                    ident, CONTAINS_SCORE, obs.platform
                )
                candidates.append(_Resemblance(CONTAINS_SCORE, text))
    if not candidates:
        return None
    # Stable: on equal scores the first (handle before display name) wins.
    return max(candidates, key=lambda candidate: candidate.score)


def _format_score(score: float) -> str:
    return f"{score:.0f}"


def _ident_text(ident: _Identifier, platform: str) -> str:
    if ident.what == "name":
        return f'restrained name "{ident.label}"'
    if ident.platform == EMAIL_PLATFORM:
        return f"restrained address `{ident.label}`"
    # The platform is named only when the look-alike is on another one.
    where = "" if ident.platform == platform else f" on {ident.platform}"
    return f"restrained handle `{ident.label}`{where}"


def _resembles(ident: _Identifier, score: float, platform: str) -> str:
    return f"resembles {_ident_text(ident, platform)} (score {_format_score(score)})"


def _contains(ident: _Identifier, score: float, platform: str) -> str:
    return f"contains {_ident_text(ident, platform)} (score {_format_score(score)})"


class _AuthorContext:
    """What is known of the observation's author, computed at most once per ``match``
    call however many cases ask: look-alike forms, and the platform's account facts."""

    def __init__(
        self,
        obs: Observation,
        lookup: Callable[[str], AccountInfo | None] | None,
        *,
        facts: bool = True,
    ) -> None:
        self._obs = obs
        self._lookup = lookup
        # False: ``lookup`` may only link configured handles to account ids (answered
        # from the watcher's cache), never ask the platform about a suspect.
        self._facts = facts
        self._forms: tuple[str, str | None, str] | None = None
        self._done = False
        self._info: AccountInfo | None = None
        self._failure: str | None = None
        self._ids: dict[str, str | None] = {}

    def account_id_of(self, handle: str) -> str | None:
        """The platform's account id behind a configured handle, or None."""
        if handle not in self._ids:
            self._ids[handle] = None
            if self._lookup is not None:
                try:
                    info = self._lookup(handle)
                except WatcherError as exc:
                    log.warning("account id lookup for a configured handle failed: %s", exc)
                    info = None
                self._ids[handle] = info.account_id if info is not None else None
        return self._ids[handle]

    def shown(self) -> str:
        """The author as the reason names them (an email's bare address)."""
        handle = self._obs.author_handle
        if handle and self._obs.platform == EMAIL_PLATFORM:
            return _email_address(handle)
        return handle or self._obs.author_display_name or ""

    def forms(self) -> tuple[str, str | None, str]:
        """(look-alike form of the handle, display name, look-alike form of it)."""
        if self._forms is None:
            obs = self._obs
            display = obs.author_display_name
            if obs.platform == EMAIL_PLATFORM and obs.author_handle and not display:
                display = _email_display_name(obs.author_handle)
            display_norm = normalize_handle(display) if display else ""
            self._forms = (_author_lookalike(obs), display, display_norm)
        return self._forms

    def account_facts(self) -> tuple[datetime | None, str | None]:
        """(creation time, note about the account's status or a failed lookup)."""
        if self._obs.author_created_at is not None:
            return self._obs.author_created_at, None
        info = self._fetch()
        if self._failure is not None:
            return None, self._failure
        if info is None:
            return None, None
        return info.created_at, _STATUS_WORDS.get(info.status)

    def _fetch(self) -> AccountInfo | None:
        if self._done or self._lookup is None or not self._facts or not self._obs.author_handle:
            return self._info
        self._done = True
        try:
            self._info = self._lookup(self._obs.author_handle)
        except WatcherError as exc:
            # The hit matters more than the account's age: keep it, say what is unknown.
            log.warning("account lookup for a suspected author failed: %s", exc)
            self._failure = "account age unknown (platform lookup failed)"
        return self._info


def _author_key(obs: Observation) -> str:
    # Normalisation can lengthen a handle (NFKC expands some characters); the key must
    # fit its column on every store.
    return fit_id(_full_author_key(obs), AUTHOR_KEY_MAX)


def _full_author_key(obs: Observation) -> str:
    if obs.author_handle:
        if obs.platform == EMAIL_PLATFORM:
            return _email_address(obs.author_handle)
        key = normalize_handle(obs.author_handle)
        if key:
            return key
    if obs.posted_by is not None:
        return f"posted_by:{obs.watcher}"
    if obs.author_display_name:
        return f"display:{normalize_handle(obs.author_display_name)}"
    return f"unknown:{obs.watcher}"
