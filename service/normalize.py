"""Normalisation of text and handles for matching (DESIGN.md "Matching rules"): the
identity form (this is that account) and the look-alike form (this account imitates
that one). ``service.matching`` says how each is used."""

from __future__ import annotations

import email.utils
import importlib.resources
import unicodedata
from functools import lru_cache
from importlib.resources.abc import Traversable

from watchers.base import Observation

EMAIL_PLATFORM = "email"
# Platforms whose handles are ``user@instance``: the same or a confusable user name on
# another instance is another account, and looks like this one whatever its instance.
FEDIVERSE_PLATFORMS = frozenset({"mastodon"})

# Hosting domains shared by many accounts, left out of look-alike comparisons.
SHARED_HANDLE_SUFFIXES: dict[str, tuple[str, ...]] = {"bluesky": (".bsky.social",)}
# Leetspeak folded in handles, applied after NFKC + casefold and before the confusable
# skeleton. One target per character so the mapping is deterministic: ``1``, ``!`` and
# ``|`` become ``i`` (``l`` is folded to ``i`` too, see ``_fold_lookalike_letters``).
LEET_MAP: dict[str, str] = {
    "0": "o",
    "1": "i",
    "2": "z",
    "3": "e",
    "4": "a",
    "5": "s",
    "6": "g",
    "7": "t",
    "8": "b",
    "9": "g",
    "$": "s",
    "@": "a",
    "!": "i",
    "|": "i",
    "+": "t",
    "€": "e",
    "£": "l",
}
_LEET_TABLE = str.maketrans(LEET_MAP)
# The ASCII fast paths' tables (``normalize_text``, ``normalize_handle``): what the
# confusable skeleton and ``_fold_lookalike_letters`` do to each ASCII character but
# ``m`` (skeleton ``rn``, folded back to ``m``) and ``%`` (a non-ASCII prototype).
# ``normalize_text``: lower() and the skeleton's one-to-one ASCII mappings in one byte
# table; ``"`` (to ``''``) is a replace.
_ASCII_TEXT_BYTES = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ01|l`", b"abcdefghijkimnopqrstuvwxyzoiii'"
)
_ASCII_HANDLE_TABLE = str.maketrans(
    {**{k: v for k, v in LEET_MAP.items() if k.isascii()}, "l": "i"}
)
_ASCII_NOT_ALNUM = str.maketrans(
    "", "", "".join(chr(c) for c in range(128) if not chr(c).isalnum())
)

# Prefixes that only say "this is a handle", in the order they can be stacked.
_HANDLE_PREFIXES = ("@", "/u/", "u/")


def _confusables_file() -> Traversable:
    """The Unicode ``confusables.txt`` (UTS #39) shipped in ``service/data``, with its
    licence; ``tests/test_matching.py`` pins its Unicode version."""
    return importlib.resources.files("service") / "data" / "confusables.txt"


@lru_cache(maxsize=1)
def _skeleton_table() -> dict[int, str | None]:
    """``str.translate`` table: UTS #39 prototype of each confusable character, and
    deletion of combining marks and invisible format characters (accents and zero-width
    spaces are cheap ways to dodge a name search: ``Alëx Sm\u200bith``)."""
    table: dict[int, str | None] = {}
    with _confusables_file().open(encoding="utf-8-sig") as lines:
        for line in lines:
            fields = line.split("#", 1)[0].split(";")
            if len(fields) < 2:
                continue
            source = fields[0].strip()
            target = fields[1].split()
            if not source or not target:
                continue
            table[int(source, 16)] = "".join(chr(int(code, 16)) for code in target)
    table.update(_invisible_table())
    return table


@lru_cache(maxsize=1)
def _invisible_table() -> dict[int, str | None]:
    """Deletion of combining marks (Mn, Me) and format characters (Cf). Planes 0, 1 and
    14 hold all of them; scanning only those keeps the one-off cost to milliseconds."""
    planes = (range(0x20000), range(0xE0000, 0xE1000))
    return {
        code: None
        for plane in planes
        for code in plane
        if unicodedata.category(chr(code)) in ("Mn", "Me", "Cf")
    }


def _skeleton(folded: str) -> str:
    """UTS #39 skeleton of an already NFKC-casefolded string, without marks, casefolded.

    NFD → prototypes → NFD → drop marks; the prototypes can be upper case (``0`` → ``O``)
    so the result is casefolded again, then recomposed (NFC) to keep Hangul readable.
    """
    if folded.isascii() and not any(c in folded for c in '01|`"%m'):
        return folded  # no ASCII character other than these has a prototype
    table = _skeleton_table()
    mapped = unicodedata.normalize("NFD", folded).translate(table)
    mapped = unicodedata.normalize("NFD", mapped).translate(_invisible_table())
    return unicodedata.normalize("NFC", mapped.casefold())


def normalize_text(text: str) -> str:
    """NFKC, casefold, confusable skeleton (UTS #39, marks and invisible characters
    dropped), ``l``/``i`` and ``rn``/``m`` folded, whitespace collapsed to single spaces.

    No leetspeak folding: digits in prose are usually digits (the skeleton still maps
    ``0`` and ``1``). Used for name search, on both the patterns and the text.
    """
    if text.isascii() and "%" not in text:
        # Most text is ASCII: NFKC is the identity there, casefold is lower(), and the
        # skeleton maps a handful of characters, which one byte table does at C speed
        # (the general path costs several times a scan of the text). ``%`` has a non-ASCII
        # prototype and takes the general path. ``_normalize_text_unicode`` is the
        # reference; tests hold both equal on ASCII.
        raw = text.encode("ascii").translate(_ASCII_TEXT_BYTES)
        if b'"' in raw:
            raw = raw.replace(b'"', b"''")
        value = raw.replace(b"rn", b"m").decode("ascii")
        if text.isprintable() and "  " not in value and value[:1] != " " != value[-1:]:
            return value  # already single spaces between words (the usual prose)
        return " ".join(value.split())
    return _normalize_text_unicode(text)


def _normalize_text_unicode(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_fold_lookalike_letters(_skeleton(folded)).split())


def identity_handle(handle: str) -> str:
    """The form in which a platform considers two handles the same account: NFKC,
    casefold, surrounding whitespace and ``@`` / ``u/`` / ``/u/`` prefixes dropped."""
    if handle.isascii():
        value = handle.lower().strip()  # NFKC is the identity on ASCII, casefold lower()
    else:
        value = unicodedata.normalize("NFKC", handle).casefold().strip()
    while value.startswith(_HANDLE_PREFIXES):  # one C call for the usual bare handle
        for prefix in _HANDLE_PREFIXES:
            if value.startswith(prefix):
                value = value[len(prefix) :].lstrip()
    return value


def _fold_lookalike_letters(value: str) -> str:
    """Letter pairs that the skeleton leaves apart but fonts do not: ``l`` vs ``i``
    (``AIex`` with a capital I: casefolding comes first, so the skeleton never sees the
    ``I`` it would map to ``l``) and the skeleton's ``rn`` for ``m``, turned back into
    ``m`` to keep normalised forms readable."""
    return value.replace("l", "i").replace("rn", "m")


def normalize_handle(handle: str) -> str:
    """The look-alike form of a handle: ``@J0hn.D0e_``, ``u/jоhn_doe`` (Cyrillic о) and
    ``johndoe`` all give ``johndoe``.

    Steps: identity form (NFKC, casefold, prefixes dropped); leetspeak (``LEET_MAP``);
    UTS #39 skeleton without marks; ``l``→``i`` and ``rn``→``m``; every character that
    is not a letter or digit (separators ``. _ -``, spaces, punctuation) removed.
    """
    value = identity_handle(handle)
    if value.isascii() and "%" not in value:
        # As in ``normalize_text``: on ASCII the skeleton only maps characters that
        # leetspeak folding maps first or that are dropped as separators anyway, and
        # ``m`` (to ``rn``, folded back). ``_normalize_handle_unicode`` is the reference.
        value = value.translate(_ASCII_HANDLE_TABLE).replace("rn", "m")
        return value.translate(_ASCII_NOT_ALNUM)
    return _normalize_handle_unicode(value)


def _normalize_handle_unicode(identity: str) -> str:
    """The look-alike form of a handle already in identity form, for any text."""
    value = _fold_lookalike_letters(_skeleton(identity.translate(_LEET_TABLE)))
    return "".join(char for char in value if char.isalnum())


def _email_address(value: str) -> str:
    """The bare address of ``Name <addr>`` or ``addr``, casefolded."""
    _name, address = email.utils.parseaddr(value)
    return (address or value).strip().casefold()


def _email_display_name(value: str) -> str:
    name, _address = email.utils.parseaddr(value)
    return name


def _author_lookalike(obs: Observation) -> str:
    if not obs.author_handle:
        return ""
    if obs.platform == EMAIL_PLATFORM:
        local = _email_address(obs.author_handle).rsplit("@", 1)[0]
        return normalize_handle(local)
    return _lookalike_handle(obs.platform, obs.author_handle)


def _lookalike_handle(platform: str, handle: str) -> str:
    """The look-alike form of what of a handle can imitate another: the user name of a
    ``user@instance`` (the instance says nothing), without a shared hosting domain:
    ``.bsky.social`` says nothing about the person and would make short handles there
    look alike (``bob.bsky.social`` scores 81 against ``jdoe.bsky.social``, 29 without
    it)."""
    bare = identity_handle(handle)
    if platform in FEDIVERSE_PLATFORMS:
        bare = bare.partition("@")[0]
    for suffix in SHARED_HANDLE_SUFFIXES.get(platform, ()):
        if bare.endswith(suffix) and len(bare) > len(suffix):
            bare = bare[: -len(suffix)]
    return normalize_handle(bare)
