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

import contextlib
import dataclasses
import gc
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime

import ahocorasick

from service.author_index import AuthorIndex
from service.hits import AuthorClass, Hit, TargetKind, ViolationKind
from service.match_authors import (
    AUTHOR_KEY_MAX as AUTHOR_KEY_MAX,
)
from service.match_authors import (
    ID_LINKED_PLATFORMS,
    _author_key,
    _AuthorContext,
    _posted_by_author,
    _role_by_account_id,
    _suspect,
    _unknown_author,
)
from service.match_cases import (
    _Author,
    _build_case,
    _Case,
    _is_word_char,
    _restrained_patterns,
    _Target,
    _text_patterns,
    _TextFindings,
    _TextPattern,
)
from service.normalize import EMAIL_PLATFORM as EMAIL_PLATFORM
from service.normalize import (
    _email_address,
)
from service.normalize import identity_handle as identity_handle
from service.normalize import normalize_handle as normalize_handle
from service.normalize import normalize_text as normalize_text
from service.settings import CaseSettings, Severity
from watchers.base import AccountInfo, Observation, utc

log = logging.getLogger(__name__)

# Distinct ``case_ids`` filters remembered (one per watcher in practice).
_MAX_CACHED_FILTERS = 256
# Up to this many cases served, a watcher's authors are checked against each case
# rather than through the index of every case.
_FEW_CASES = 16
# Authors whose indexed cases are remembered (``Matcher._author_cases``): about 6 MB
# when full, used only by watchers serving more than ``_FEW_CASES`` cases.
_MAX_CACHED_AUTHORS = 16_384

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


class MatchingError(Exception):
    """Matching cannot proceed; the message is one line and safe to show."""


class MatcherConfigError(MatchingError):
    """A case's settings cannot be used for matching (for example an unknown time zone)."""


class UnknownCaseError(MatchingError):
    """``match`` was asked about a case id that the Matcher was not built with."""


# --------------------------------------------------------------------------------------
# Precomputed per-case data
# --------------------------------------------------------------------------------------


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


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector paused while the matcher is built. The build
    allocates hundreds of thousands of objects for 10,000 cases and frees no cycle;
    the collector, run every few hundred allocations, would walk the growing heap
    (the cases' settings included) again and again, a third to half of the build."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class Matcher:
    """Recognises possible violations. Build once per configuration; ``match`` is
    thread-safe (it reads what ``__init__`` built; its caches are dicts of immutable
    values, where a lost race costs a recomputation)."""

    def __init__(
        self,
        cases: Sequence[CaseSettings],
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))
        with _collector_paused():
            self._cases = [_build_case(case) for case in cases]
            self._authors = _author_index(self._cases)
            self._automaton = self._build_automaton(cases)
        self._index_by_id = {case.id: i for i, case in enumerate(cases)}
        self._all_indexes = frozenset(range(len(cases)))
        self._filters: dict[tuple[str, ...], frozenset[int]] = {}
        self._author_answers: dict[tuple[str, str | None, str | None, bool], frozenset[int]] = {}
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
            # Patterns of different cases differ by their case index: duplicates can
            # only come from one case, and comparing within it keeps the build linear.
            seen: set[tuple[str, _TextPattern]] = set()
            for norm, pattern in (
                *_text_patterns(index, case),
                *_restrained_patterns(index, case),
            ):
                if (norm, pattern) not in seen:
                    seen.add((norm, pattern))
                    grouped.setdefault(norm, []).append(pattern)
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
        matches = self._text_matches(obs, candidates)
        if not matches and not obs.addressed_to and obs.kind != "direct_message":
            return []  # neither named, tagged nor addressed: no case has a target
        findings = _findings(matches)
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
            author = self._author(self._cases[index], obs, context, describe=False)
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
        # Everything the index is asked depends on these alone; streams repeat their
        # authors, so the answer is remembered (a bounded dict of immutable values).
        key = (obs.platform, obs.author_handle, obs.author_display_name, bool(obs.author_id))
        found = self._author_answers.get(key)
        if found is None:
            found = self._indexed_author_cases(obs, context)
            if len(self._author_answers) >= _MAX_CACHED_AUTHORS:
                self._author_answers.clear()
            self._author_answers[key] = found
        return set(found & candidates)

    def _indexed_author_cases(self, obs: Observation, context: _AuthorContext) -> frozenset[int]:
        """Every case whose author rules could find the author anything but unknown."""
        is_email = obs.platform == EMAIL_PLATFORM
        handle = obs.author_handle or ""
        key = _email_address(handle) if is_email else identity_handle(handle)
        linked = bool(obs.author_id)
        found = self._authors.known(obs.platform, key, linked)
        handle_norm, _display, display_norm = context.forms()
        address = normalize_handle(_email_address(handle)) if is_email and handle else ""
        found |= self._authors.lookalikes(handle_norm, display_norm, address)
        return frozenset(found)

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

    def _text_matches(self, obs: Observation, candidates: frozenset[int]) -> list[_TextPattern]:
        """Whole-word matches of the automaton's patterns in the text, for the cases
        in ``candidates`` (a tag only on the platform where it reaches its account)."""
        found: list[_TextPattern] = []
        if self._automaton is None or not obs.text:
            return found
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
                found.append(pattern)
        return found

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

    def _author(
        self, case: _Case, obs: Observation, author: _AuthorContext, *, describe: bool = True
    ) -> _Author | None:
        """Who the author is for ``case``; None for the protected person, or when only
        an account id is known and matches no one. ``describe=False`` (``involved``,
        which asks only whether they are known or suspected): None for an unknown
        author too, whose description would be thrown away."""
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
            if not is_email and key in case.associates_any:
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
        suspect = _suspect(case, obs, author)
        if suspect is not None or not describe:
            return suspect
        return _unknown_author(obs, author)


def _findings(matches: Iterable[_TextPattern]) -> _TextFindings:
    findings = _TextFindings()
    for pattern in matches:
        index = pattern.case_index
        if pattern.target == "restrained":
            findings.restrained.setdefault(index, pattern.label)
        elif pattern.target == "contact":
            description = f"tagging protected account `{pattern.label}`"
            findings.targets.append((index, _Target("contact", description)))
        else:
            description = f'names the protected person ("{pattern.label}")'
            findings.targets.append((index, _Target("mention", description)))
    return findings


def _keep_stronger(found: dict[int, _Target], index: int, target: _Target) -> None:
    current = found.get(index)
    if current is None or (current.kind == "mention" and target.kind == "contact"):
        found[index] = target


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
