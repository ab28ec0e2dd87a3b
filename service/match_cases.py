"""The cases as the matcher holds them: who is who on which platform (identity and
look-alike forms), and the text patterns of the one automaton (the protected person's
names and handles, the restrained party's for proxies). Built once per configuration."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Literal
from zoneinfo import ZoneInfo

from service.hits import AuthorClass, TargetKind
from service.normalize import (
    EMAIL_PLATFORM,
    _email_address,
    _lookalike_handle,
    identity_handle,
    normalize_handle,
    normalize_text,
)
from service.settings import CaseSettings

# What a text pattern finds: a tag of the protected person (contact), their name
# (mention), or the restrained party named (for suspected proxies).
_PatternRole = Literal["contact", "mention", "restrained"]

# Containing a restrained name/handle shorter than this is not evidence: "al" or "joe"
# occur inside countless unrelated handles.
MIN_CONTAINED_LENGTH = 4


# A restrained e-mail address's local part is compared with authors' handles only from
# this length (look-alike form): "john@" would make every john a suspect.
MIN_EMAIL_LOCAL_LENGTH = 6


@dataclasses.dataclass(frozen=True, slots=True)
class _Identifier:
    """Something the restrained party is known by, in look-alike form."""

    norm: str
    label: str  # as written in config, for the reason
    what: Literal["handle", "name"]
    platform: str | None  # for handles


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
    associates_any: frozenset[str]  # identity forms of associates on every platform
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
    associates = {p: _identity_map(p, h) for p, h in settings.restrained.associates.items()}
    return _Case(
        settings=settings,
        zone=settings.timezone,
        restrained={p: _identity_map(p, h) for p, h in settings.restrained.handles.items()},
        associates=associates,
        protected=protected,
        protected_any=frozenset(key for handles in protected.values() for key in handles),
        associates_any=frozenset(key for handles in associates.values() for key in handles),
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
