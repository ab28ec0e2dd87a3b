"""Matching: who wrote an observation, whom it addresses or names, and whether that is
a possible violation of a case (DESIGN.md "Matching rules").

Two levels of handle normalisation are used, on purpose:

* the *identity* form (:func:`identity_handle`: NFKC, casefold, ``@``/``u/`` prefix
  dropped) says "this is that account". Platforms treat handles case-insensitively, but
  ``j0hn.d0e_`` or ``jоhndoe`` (Cyrillic о) are *other* accounts. Only the identity form
  makes an author ``restrained`` or ``associate``, or an addressee the protected person.
* the *look-alike* form (:func:`normalize_handle`: identity form plus confusable
  skeleton, leetspeak and separator folding) says "this account imitates that one".
  Equal look-alike forms, fuzzy similarity or a contained name make an author a
  ``suspected_alt``; it is also the ``author_key`` that groups hits into violations.

Text (names in posts) is searched with one Aho-Corasick automaton over every case's
patterns, built once; per observation the text is normalised and scanned once, and
only the cases it targets are examined further, so thousands of cases stay cheap.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Literal
from zoneinfo import ZoneInfo

import ahocorasick
from rapidfuzz import fuzz

from service.author_index import AuthorIndex
from service.hits import AuthorClass, Hit, TargetKind, ViolationKind
from service.normalize import EMAIL_PLATFORM as EMAIL_PLATFORM
from service.normalize import (
    _author_lookalike,
    _email_address,
    _email_display_name,
    _lookalike_handle,
)
from service.normalize import identity_handle as identity_handle
from service.normalize import normalize_handle as normalize_handle
from service.normalize import normalize_text as normalize_text
from service.settings import CaseSettings, Severity
from watchers.base import AccountInfo, Observation, WatcherError, fit_id, utc

log = logging.getLogger(__name__)

# The violations.author_key column's size.
AUTHOR_KEY_MAX = 300
# Containing a restrained name/handle shorter than this is not evidence: "al" or "joe"
# occur inside countless unrelated handles.
MIN_CONTAINED_LENGTH = 4
# A restrained e-mail address's local part is compared with authors' handles only from
# this length (look-alike form): "john@" would make every john a suspect.
MIN_EMAIL_LOCAL_LENGTH = 6
# Score of a suspect whose handle or display name contains a restrained name or handle
# ("realjohndoe1987"): strong evidence, but below an identical look-alike (100).
CONTAINS_SCORE = 90.0
SAME_SKELETON_SCORE = 100.0
# Platforms whose handles can change hands while the account id stays (Bluesky DIDs).
ID_LINKED_PLATFORMS = frozenset({"bluesky"})
# Distinct ``case_ids`` filters remembered (one per watcher in practice).
_MAX_CACHED_FILTERS = 256
# Up to this many cases served, a watcher's authors are checked against each case
# rather than through the index of every case.
_FEW_CASES = 16
# An account created on or after the order's effective date is more suspicious.
NEW_ACCOUNT_BONUS = 10.0

_KIND_WORDS: dict[str, str] = {
    "post": "post",
    "comment": "comment",
    "reply": "reply",
    "mention": "mention",
    "direct_message": "direct message",
    "email": "email",
    "feed_entry": "feed entry",
    "account": "account",
    "boost": "boosted post",
}
_STATUS_WORDS: dict[str, str] = {
    "deleted": "account has been deleted",
    "suspended": "account is suspended",
    "not_found": "account was not found on the platform",
}


class MatchingError(Exception):
    """Matching cannot proceed; the message is one line and safe to show."""


class MatcherConfigError(MatchingError):
    """A case's settings cannot be used for matching (for example an unknown time zone)."""


class UnknownCaseError(MatchingError):
    """``match`` was asked about a case id that the Matcher was not built with."""


# --------------------------------------------------------------------------------------
# Precomputed per-case data
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Identifier:
    """Something the restrained party is known by, in look-alike form."""

    norm: str
    label: str  # as written in config, for the reason
    what: Literal["handle", "name"]
    platform: str | None  # for handles


# What a pattern of the text automaton finds: a tag reaching the protected person
# (contact), their name (mention), or the restrained party's name (for proxy contact).
_PatternRole = Literal["contact", "mention", "restrained"]


@dataclasses.dataclass(frozen=True, slots=True)
class _TextPattern:
    """A payload of the text automaton: which case a matched pattern concerns, how."""

    case_index: int
    target: _PatternRole
    label: str
    # For @/u/ tags: the platform on which the tag reaches the protected person.
    platform: str | None


@dataclasses.dataclass(slots=True)
class _Case:
    settings: CaseSettings
    zone: ZoneInfo
    # platform → identity form → handle as configured
    restrained: dict[str, dict[str, str]]
    associates: dict[str, dict[str, str]]
    protected: dict[str, dict[str, str]]
    protected_any: frozenset[str]  # identity forms on every platform
    identifiers: tuple[_Identifier, ...]
    by_norm: dict[str, _Identifier]
    # look-alike form of each whole restrained address → the address as configured
    addresses: dict[str, str]
    contained: tuple[_Identifier, ...]  # identifiers long enough for containment


@dataclasses.dataclass(frozen=True, slots=True)
class _Target:
    kind: TargetKind
    description: str  # e.g. "to protected account `alex_smith`"


@dataclasses.dataclass(frozen=True, slots=True)
class _Author:
    cls: AuthorClass
    description: str  # e.g. "restrained account `jdoe`"
    score: float | None = None


def _identity_map(platform: str, handles: Iterable[str]) -> dict[str, str]:
    key: Callable[[str], str] = _email_address if platform == EMAIL_PLATFORM else identity_handle
    return {key(handle): handle for handle in handles if key(handle)}


def _identifiers(case: CaseSettings) -> tuple[_Identifier, ...]:
    found: dict[str, _Identifier] = {}
    for platform, handles in case.restrained.handles.items():
        for handle in handles:
            if platform == EMAIL_PLATFORM:
                # The local part from any domain (john.doe@ → j0hn.doe@ elsewhere);
                # short ones like "john" would make half the world a suspect.
                norm = normalize_handle(_email_address(handle).rsplit("@", 1)[0])
                if len(norm) < MIN_EMAIL_LOCAL_LENGTH:
                    continue
            else:
                norm = _lookalike_handle(platform, handle)
            if norm and norm not in found:
                found[norm] = _Identifier(norm, handle, "handle", platform)
    for name in (*case.restrained.names, *case.restrained.aliases):
        norm = normalize_handle(name)
        if norm and norm not in found:
            found[norm] = _Identifier(norm, name, "name", None)
    return tuple(found.values())


def _build_case(settings: CaseSettings) -> _Case:
    identifiers = _identifiers(settings)
    protected = {p: _identity_map(p, h) for p, h in settings.protected.handles.items()}
    return _Case(
        settings=settings,
        zone=settings.timezone,
        restrained={p: _identity_map(p, h) for p, h in settings.restrained.handles.items()},
        associates={p: _identity_map(p, h) for p, h in settings.restrained.associates.items()},
        protected=protected,
        protected_any=frozenset(key for handles in protected.values() for key in handles),
        identifiers=identifiers,
        by_norm={ident.norm: ident for ident in identifiers},
        addresses={
            normalize_handle(address): address
            for address in settings.restrained.handles.get(EMAIL_PLATFORM, [])
        },
        contained=tuple(i for i in identifiers if len(i.norm) >= MIN_CONTAINED_LENGTH),
    )


def _text_patterns(index: int, case: CaseSettings) -> list[tuple[str, _TextPattern]]:
    """Normalised patterns naming or tagging the protected person of one case."""
    patterns: list[tuple[str, _TextPattern]] = []
    for name in (*case.protected.names, *case.protected.aliases):
        norm = normalize_text(name)
        if not norm:
            continue
        patterns.append((norm, _TextPattern(index, "mention", name, None)))
        if " " in norm:
            # "#AlexSmith" / "alexsmith" name them as clearly as "Alex Smith" does.
            joined = norm.replace(" ", "")
            patterns.append((joined, _TextPattern(index, "mention", name, None)))
    for platform, handles in case.protected.handles.items():
        for handle in handles:
            bare = identity_handle(handle) if platform != EMAIL_PLATFORM else handle
            norm = normalize_text(bare)
            if not norm:
                continue
            patterns.append((norm, _TextPattern(index, "mention", handle, None)))
            if platform != EMAIL_PLATFORM:
                # A tag notifies the account holder on that platform: that is contact.
                for prefix in ("@", "u/") if platform == "reddit" else ("@",):
                    tag = _TextPattern(index, "contact", f"{prefix}{bare}", platform)
                    patterns.append((normalize_text(prefix + bare), tag))
    return patterns


def _restrained_patterns(index: int, case: CaseSettings) -> list[tuple[str, _TextPattern]]:
    """Normalised patterns naming the restrained party (names, aliases, handles, email
    addresses): text from an unknown author that addresses the protected person and
    names them is a suspected proxy ("using friends to send messages")."""
    labels = [*case.restrained.names, *case.restrained.aliases]
    for platform, handles in case.restrained.handles.items():
        for handle in handles:
            labels.append(handle if platform == EMAIL_PLATFORM else identity_handle(handle))
    patterns: list[tuple[str, _TextPattern]] = []
    for label in labels:
        norm = normalize_text(label)
        if not norm:
            continue
        pattern = _TextPattern(index, "restrained", label, None)
        patterns.append((norm, pattern))
        if " " in norm:
            patterns.append((norm.replace(" ", ""), pattern))
    return patterns


@dataclasses.dataclass(slots=True)
class _TextFindings:
    """One scan of an observation's text: targets per case, and per case the first
    restrained name or handle it contains (as configured)."""

    targets: list[tuple[int, _Target]] = dataclasses.field(default_factory=list)
    restrained: dict[int, str] = dataclasses.field(default_factory=dict)


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


# --------------------------------------------------------------------------------------
# The matcher
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class CaseFilter:
    """The cases a watcher serves, resolved once (``Matcher.case_filter``): passing
    thousands of case ids with every observation would cost more than matching."""

    indexes: frozenset[int]


CaseIds = Iterable[str] | CaseFilter | None


def _author_index(cases: Sequence[_Case]) -> AuthorIndex:
    index = AuthorIndex(ID_LINKED_PLATFORMS)
    for number, case in enumerate(cases):
        index.add_handles(number, case.restrained, case.associates, case.protected)
        index.add_lookalikes(
            number,
            [ident.norm for ident in case.identifiers],
            [ident.norm for ident in case.contained],
            case.addresses,
            case.settings.fuzzy_threshold,
        )
    index.finish()
    return index


class Matcher:
    """Recognises possible violations. Build once per configuration; ``match`` is
    thread-safe (it reads what ``__init__`` built; its only cache is a dict of
    immutable values, where a lost race costs a recomputation)."""

    def __init__(
        self,
        cases: Sequence[CaseSettings],
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))
        self._cases = [_build_case(case) for case in cases]
        self._authors = _author_index(self._cases)
        self._index_by_id = {case.id: i for i, case in enumerate(cases)}
        self._all_indexes = frozenset(range(len(cases)))
        self._filters: dict[tuple[str, ...], frozenset[int]] = {}
        self._automaton = self._build_automaton(cases)
        # (platform, identity form of a protected handle) → cases and handle as written
        self._addressees: dict[tuple[str, str], list[tuple[int, str]]] = {}
        for index, case in enumerate(self._cases):
            for platform, handles in case.protected.items():
                for key, handle in handles.items():
                    self._addressees.setdefault((platform, key), []).append((index, handle))

    @staticmethod
    def _build_automaton(cases: Sequence[CaseSettings]) -> ahocorasick.Automaton | None:
        grouped: dict[str, list[_TextPattern]] = {}
        for index, case in enumerate(cases):
            for norm, pattern in (
                *_text_patterns(index, case),
                *_restrained_patterns(index, case),
            ):
                entries = grouped.setdefault(norm, [])
                if pattern not in entries:
                    entries.append(pattern)
        if not grouped:
            return None
        automaton = ahocorasick.Automaton()
        for norm, entries in grouped.items():
            automaton.add_word(norm, (len(norm), tuple(entries)))
        automaton.make_automaton()
        return automaton

    # -- public -----------------------------------------------------------------------

    def match(
        self,
        obs: Observation,
        case_ids: CaseIds = None,
        account_lookup: Callable[[str], AccountInfo | None] | None = None,
    ) -> list[Hit]:
        """Hits of ``obs`` for the given cases (all when None): at most one per case,
        the most serious. ``account_lookup`` is asked about suspected authors only, at
        most once per call."""
        candidates = self._candidate_indexes(case_ids)
        if not candidates:
            return []
        findings = self._scan_text(obs, candidates)
        context = _AuthorContext(obs, account_lookup)
        targets = self._targets(obs, candidates, findings, context)
        if not targets:
            return []
        hits: list[Hit] = []
        for index in sorted(targets):
            named = findings.restrained.get(index)
            hit = self._hit_for_case(self._cases[index], obs, targets[index], context, named)
            if hit is not None:
                hits.append(hit)
        return hits

    def involved(
        self,
        obs: Observation,
        case_ids: CaseIds = None,
        account_lookup: Callable[[str], AccountInfo | None] | None = None,
    ) -> bool:
        """Whether a case knows or suspects the author (restrained party, associate or
        look-alike), whatever the item says: what they write is kept as evidence even
        without a target. ``account_lookup`` only links configured handles to account
        ids (a renamed Bluesky account); no suspect is looked up: deciding what to keep
        must cost no reads."""
        context = _AuthorContext(obs, account_lookup, facts=False)
        candidates = self._candidate_indexes(case_ids)
        if obs.posted_by is not None:
            return bool(candidates)  # the source itself belongs to the restrained party
        for index in sorted(self._author_cases(obs, context, candidates)):
            author = self._author(self._cases[index], obs, context)
            if author is not None and author.cls != "unknown":
                return True
        return False

    # -- targets ----------------------------------------------------------------------

    def case_filter(self, case_ids: Iterable[str]) -> CaseFilter:
        """``case_ids`` resolved once, to pass to ``match`` and ``involved``."""
        return CaseFilter(self._candidate_indexes(case_ids))

    def _author_cases(
        self, obs: Observation, context: _AuthorContext, candidates: frozenset[int]
    ) -> set[int]:
        """The candidate cases whose author rules could find the author anything but
        unknown (``service.author_index``); the others need not be asked. A watcher
        serving a few cases asks them all: cheaper than searching every case's index."""
        if len(candidates) <= _FEW_CASES:
            return set(candidates)
        is_email = obs.platform == EMAIL_PLATFORM
        handle = obs.author_handle or ""
        key = _email_address(handle) if is_email else identity_handle(handle)
        linked = bool(obs.author_id)
        found = self._authors.known(obs.platform, key, linked)
        handle_norm, _display, display_norm = context.forms()
        address = normalize_handle(_email_address(handle)) if is_email and handle else ""
        found |= self._authors.lookalikes(handle_norm, display_norm, address)
        return {index for index in found if index in candidates}

    def _candidate_indexes(self, case_ids: CaseIds) -> frozenset[int]:
        if case_ids is None:
            return self._all_indexes
        if isinstance(case_ids, CaseFilter):
            return case_ids.indexes
        # A watcher passes the same list on every call; converting thousands of ids per
        # observation would cost more than the matching itself.
        key = tuple(case_ids)
        cached = self._filters.get(key)
        if cached is not None:
            return cached
        indexes: set[int] = set()
        for case_id in key:
            index = self._index_by_id.get(case_id)
            if index is None:
                raise UnknownCaseError(f"unknown case id {case_id!r}")
            indexes.add(index)
        if len(self._filters) >= _MAX_CACHED_FILTERS:
            self._filters.clear()
        self._filters[key] = frozenset(indexes)
        return self._filters[key]

    def _targets(
        self,
        obs: Observation,
        candidates: frozenset[int],
        findings: _TextFindings,
        context: _AuthorContext,
    ) -> dict[int, _Target]:
        """The strongest target per case: contact beats mention; an explicit addressee
        is described in preference to a tag in the text."""
        found: dict[int, _Target] = {}
        for index, target in self._addressed_targets(obs, candidates, findings, context):
            _keep_stronger(found, index, target)
        for index, target in findings.targets:
            _keep_stronger(found, index, target)
        return found

    def _addressed_targets(
        self,
        obs: Observation,
        candidates: frozenset[int],
        findings: _TextFindings,
        context: _AuthorContext,
    ) -> Iterable[tuple[int, _Target]]:
        is_email = obs.platform == EMAIL_PLATFORM
        noun = "address" if is_email else "account"
        for recipient in obs.addressed_to:
            key = _email_address(recipient) if is_email else identity_handle(recipient)
            for index, handle in self._addressees.get((obs.platform, key), ()):
                if index in candidates:
                    yield index, _Target("contact", f"to protected {noun} `{handle}`")
        if obs.kind == "direct_message":
            # A DM reaches the inbox a watcher reads for the cases it serves; only the
            # cases that know or suspect its author, or that it names, can make a hit
            # of it (an unknown author is a proxy only when naming the restrained party).
            reached: Iterable[int] = candidates
            if obs.posted_by is None:
                named = findings.restrained.keys()
                reached = self._author_cases(obs, context, candidates).union(named)
            for index in sorted(reached):
                yield index, _Target("contact", "to the protected person")

    def _scan_text(self, obs: Observation, candidates: frozenset[int]) -> _TextFindings:
        findings = _TextFindings()
        for index, pattern in self._text_matches(obs, candidates):
            if pattern.target == "restrained":
                findings.restrained.setdefault(index, pattern.label)
            elif pattern.target == "contact":
                description = f"tagging protected account `{pattern.label}`"
                findings.targets.append((index, _Target("contact", description)))
            else:
                description = f'names the protected person ("{pattern.label}")'
                findings.targets.append((index, _Target("mention", description)))
        return findings

    def _text_matches(
        self, obs: Observation, candidates: frozenset[int]
    ) -> Iterable[tuple[int, _TextPattern]]:
        """Whole-word matches of the automaton's patterns in the text, for the cases
        in ``candidates`` (a tag only on the platform where it reaches its account)."""
        if self._automaton is None or not obs.text:
            return
        text = normalize_text(obs.text)
        last = len(text) - 1
        for end, (length, entries) in self._automaton.iter(text):
            start = end - length + 1
            if start > 0 and _is_word_char(text[start - 1]):
                continue
            if end < last and _is_word_char(text[end + 1]):
                continue
            for pattern in entries:
                if pattern.case_index not in candidates:
                    continue
                if pattern.target == "contact" and pattern.platform != obs.platform:
                    continue
                yield pattern.case_index, pattern

    # -- authors ----------------------------------------------------------------------

    def _hit_for_case(
        self,
        case: _Case,
        obs: Observation,
        target: _Target,
        context: _AuthorContext,
        named: str | None,
    ) -> Hit | None:
        """The hit of one case; ``named`` is the restrained name the text contains."""
        author = self._author(case, obs, context)
        if author is None:
            return None
        decided = _kind_and_severity(author.cls, target.kind, case.settings, named is not None)
        if decided is None:
            return None
        kind, severity = decided
        in_period, period_note = _order_period(case, obs, self._clock)
        if kind == "suspected_proxy":
            reason = _proxy_reason(obs, author, target, named or "")
        else:
            reason = _reason(obs, author, target)
        return Hit(
            case_id=case.settings.id,
            kind=kind,
            severity=severity,
            suspected=kind in ("suspected_alt", "suspected_proxy"),
            reason=reason + period_note,
            author_key=_author_key(obs),
            author_class=author.cls,
            target=target.kind,
            in_order_period=in_period,
            score=author.score,
        )

    def _author(self, case: _Case, obs: Observation, author: _AuthorContext) -> _Author | None:
        if obs.posted_by is not None:
            return _posted_by_author(obs)
        if not obs.author_handle and not obs.author_display_name:
            # Only an account id (a Bluesky account event): known by it, or nobody.
            role, configured = _role_by_account_id(case, obs, author)
            if role in ("restrained", "associate"):
                label = "restrained account" if role == "restrained" else "associate"
                return _Author(role, f"{label} `{configured}`")
            return None
        is_email = obs.platform == EMAIL_PLATFORM
        handle = obs.author_handle or ""
        key = _email_address(handle) if is_email else identity_handle(handle)
        if key:
            noun = "address" if is_email else "account"
            shown = key if is_email else handle  # the bare address, not "Name <addr>"
            if key in case.restrained.get(obs.platform, {}):
                return _Author("restrained", f"restrained {noun} `{shown}`")
            if key in case.associates.get(obs.platform, {}):
                return _Author("associate", f"associate `{shown}`")
            if key in case.protected_any:
                return None  # the protected person's own account is never a suspect
            if not is_email:
                # A known associate writing elsewhere under the same name is that
                # associate, not a look-alike of the restrained party.
                for platform, handles in sorted(case.associates.items()):
                    if platform != obs.platform and key in handles:
                        return _Author("associate", f"associate `{shown}` (listed for {platform})")
        role, configured = _role_by_account_id(case, obs, author)
        if role == "protected":
            return None
        if role is not None:
            now = f" (now `{obs.author_handle}`)" if obs.author_handle else ""
            label = "restrained account" if role == "restrained" else "associate"
            return _Author(role, f"{label} `{configured}`{now}")
        return _suspect(case, obs, author) or _unknown_author(obs, author)


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


def _keep_stronger(found: dict[int, _Target], index: int, target: _Target) -> None:
    current = found.get(index)
    if current is None or (current.kind == "mention" and target.kind == "contact"):
        found[index] = target


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


def _kind_and_severity(
    author: AuthorClass, target: TargetKind, case: CaseSettings, names_restrained: bool
) -> tuple[ViolationKind, Severity] | None:
    if author == "unknown":
        if target == "contact" and names_restrained:
            return "suspected_proxy", "medium"
        return None
    if author == "suspected_alt":
        return "suspected_alt", "high"
    if author == "associate":
        return "third_party", "medium"
    if target == "contact":
        return "contact", "high"
    if "no_mention" in case.order.terms:
        return "mention", "medium"
    return None


def _order_period(case: _Case, obs: Observation, clock: Callable[[], datetime]) -> tuple[bool, str]:
    """Whether the observation falls in [effective, expires), judged on its calendar
    date in the case's time zone (the court's dates are local dates)."""
    when = utc(obs.posted_at or clock())
    day: date = when.astimezone(case.zone).date()
    order = case.settings.order
    if day < order.effective:
        return False, f"; before the order took effect ({order.effective.isoformat()})"
    if order.expires is not None and day >= order.expires:
        return False, f"; after the order expired ({order.expires.isoformat()})"
    return True, ""


def _reason(obs: Observation, author: _Author, target: _Target) -> str:
    kind = _KIND_WORDS.get(obs.kind, obs.kind)
    if author.cls == "suspected_alt":
        return f"{author.description}; {kind} {target.description}"
    joiner = "from" if target.kind == "contact" else "by"
    return f"{kind} {joiner} {author.description} {target.description}"


def _proxy_reason(obs: Observation, author: _Author, target: _Target, named: str) -> str:
    kind = _KIND_WORDS.get(obs.kind, obs.kind)
    return (
        f"{author.description} addresses the protected person ({kind} {target.description})"
        f' and names the restrained party ("{named}")'
    )


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
