"""The XML pre-check every XML-reading watcher runs before its parser sees a document.

Entity declarations are refused outright (no expansion, no external entities: the
billion-laughs and XXE families), and the byte range of each top-level entry element is
found on the way, so that each entry's evidence is its own bytes as received.

This is expat with the three handlers defusedxml would set (entity declaration,
unparsed entity, external reference), set here because defusedxml's SAX and etree
interfaces do not expose the byte offsets the ranges need.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from typing import Any
from xml.parsers import expat
from xml.sax.saxutils import escape, quoteattr

_ENTITY_DECL = "<!ENTITY"
_WIDE_ENCODINGS = ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")
FEED_ENTRIES = frozenset({"item", "entry"})


class EntityDeclared(Exception):
    """The document declares XML entities; it is refused instead of expanded."""


def declares_entity_bytes(data: bytes) -> bool:
    """Conservative check for documents expat cannot read: any ``<!ENTITY`` at all."""
    if _ENTITY_DECL.encode("ascii") in data:
        return True
    return any(_ENTITY_DECL.encode(enc) in data for enc in _WIDE_ENCODINGS)


def is_ascii_compatible(data: bytes) -> bool:
    """False for UTF-16/32 documents, whose byte offsets of ``>`` are not searchable."""
    head = data[:4]
    return not (head.startswith((b"\xfe\xff", b"\xff\xfe")) or b"\x00" in head)


def _refuse_entities(*_args: object) -> int:
    raise EntityDeclared


def entry_ranges(data: bytes, names: Iterable[str] = FEED_ENTRIES) -> list[tuple[int, int]] | None:
    """Byte ranges of the outermost elements whose local name is in ``names``, or None
    when the document is not well-formed XML. Raises ``EntityDeclared`` if it declares
    entities (also when it is not well-formed)."""
    wanted = frozenset(names)
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.EntityDeclHandler = _refuse_entities
    parser.UnparsedEntityDeclHandler = _refuse_entities
    parser.ExternalEntityRefHandler = _refuse_entities
    ranges: list[tuple[int, int]] = []
    depth = 0
    # (start offset, depth) of the entry element we are inside; entries do not nest.
    inside: tuple[int, int] | None = None

    def start(name: str, _attrs: object) -> None:
        nonlocal depth, inside
        depth += 1
        if inside is None and name.rsplit(":", 1)[-1] in wanted:
            inside = (parser.CurrentByteIndex, depth)

    def end(name: str) -> None:
        nonlocal depth, inside
        if inside is not None and inside[1] == depth:
            # The index points at the end tag's '<', or just past an empty '<item/>'.
            at = parser.CurrentByteIndex
            closing = data.startswith(b"</" + name.encode(), at)
            ranges.append((inside[0], data.index(b">", at) + 1 if closing else at))
            inside = None
        depth -= 1

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        parser.Parse(data, True)
    except (expat.ExpatError, LookupError, ValueError):
        # Not well-formed, or an encoding expat cannot decode (LookupError): the caller's
        # parser may still read it, but only after the conservative entity check.
        if declares_entity_bytes(data):
            raise EntityDeclared from None
        return None
    return ranges


# ----------------------------------------------------------------------- bounded input
# feedparser holds the GIL for its whole parse, and some of its work grows faster than
# the input (its author e-mail regex is quadratic: a 1,000,000-character <author> froze
# every thread of the service for 84 s; 700k nested elements took 436 MB). So documents
# are bounded here, in one streaming expat pass, before feedparser sees them.
MAX_DEPTH = 64
MAX_ELEMENTS = 100_000
MAX_ENTRIES = 2_500  # feeds list the newest first: the first entries are kept
NAME_TEXT_LIMIT = 2_000  # ids, titles, dates, links
# Author names and addresses: feedparser's e-mail regex is quadratic in them, once per
# entry, so their bound is the store's handle size (FIELD_LIMITS) and no more.
AUTHOR_TEXT_LIMIT = 320
TEXT_LIMIT = 256_000  # any other text node (content, summary)
ATTRIBUTE_LIMIT = 4_000
# Elements whose text feedparser runs through regular expressions or keeps as names.
AUTHOR_ELEMENTS = frozenset(
    {
        "author",
        "name",
        "email",
        "creator",
        "contributor",
        "managingEditor",
        "webMaster",
        "publisher",
        "owner",
    }
)
NAME_ELEMENTS = frozenset(
    {
        "uri",
        "title",
        "guid",
        "id",
        "link",
        "category",
        "pubDate",
        "published",
        "updated",
        "date",
        "modified",
        "issued",
        "created",
    }
)


def _text_limit(local_name: str) -> int:
    if local_name in AUTHOR_ELEMENTS:
        return AUTHOR_TEXT_LIMIT
    return NAME_TEXT_LIMIT if local_name in NAME_ELEMENTS else TEXT_LIMIT


class DocumentRefused(Exception):
    """The document is beyond what is parsed at all (too deep, too many elements).
    The message says which bound, in words fit for an error line."""


@dataclasses.dataclass(frozen=True, slots=True)
class Bounded:
    """A document within the bounds: ``body`` is the input itself when nothing was cut,
    else a re-serialised UTF-8 copy with the cuts made; ``cuts`` says what was cut and
    ``entries`` how many entries were kept (None when none were dropped)."""

    body: bytes
    cuts: tuple[str, ...] = ()
    entries: int | None = None


class _Pass:
    """Streams the expat events of a document into a bounded copy of it."""

    def __init__(self, entry_names: frozenset[str]) -> None:
        self.out: list[str] = ['<?xml version="1.0" encoding="utf-8"?>']
        self.entry_names = entry_names
        # Per open element: [local name, characters of text kept, limit].
        self.stack: list[list[Any]] = []
        self.elements = 0
        self.entries = 0
        self.skip_depth = 0  # >0 inside a dropped entry
        self.cut_text: dict[str, int] = {}  # element → longest text seen
        self.cut_attributes = 0
        self.dropped_entries = 0

    def start(self, name: str, attrs: dict[str, str]) -> None:
        if len(self.stack) >= MAX_DEPTH:
            raise DocumentRefused(f"elements nested more than {MAX_DEPTH} deep")
        local = name.rsplit(":", 1)[-1]
        if self.skip_depth:
            self.skip_depth += 1
            self.stack.append([local, 0, 0])
            return
        if local in self.entry_names and not self._inside_entry():
            self.entries += 1
            if self.entries > MAX_ENTRIES:
                self.dropped_entries += 1
                self.skip_depth = 1
                self.stack.append([local, 0, 0])
                return
        self.elements += 1
        if self.elements > MAX_ELEMENTS:
            raise DocumentRefused(f"more than {MAX_ELEMENTS:,} elements")
        parts = [f"<{name}"]
        for key, value in attrs.items():
            if len(value) > ATTRIBUTE_LIMIT:
                self.cut_attributes += 1
                value = value[:ATTRIBUTE_LIMIT]
            parts.append(f" {key}={quoteattr(value)}")
        self.out.append("".join(parts) + ">")
        self.stack.append([local, 0, _text_limit(local)])

    def _inside_entry(self) -> bool:
        return any(frame[0] in self.entry_names for frame in self.stack)

    def end(self, name: str) -> None:
        self.stack.pop()
        if self.skip_depth:
            self.skip_depth -= 1
            return
        self.out.append(f"</{name}>")

    def text(self, data: str) -> None:
        if self.skip_depth or not self.stack:
            return
        frame = self.stack[-1]
        room = frame[2] - frame[1]
        frame[1] += len(data)
        if len(data) > room:
            self.cut_text[frame[0]] = max(self.cut_text.get(frame[0], 0), frame[1])
            data = data[: max(room, 0)]
        if data:
            self.out.append(escape(data))

    def cuts(self) -> list[str]:
        found = [
            f"<{name}> text over {_text_limit(name):,} characters ({length:,})"
            for name, length in sorted(self.cut_text.items())
        ]
        if self.cut_attributes:
            found.append(f"{self.cut_attributes} attribute(s) over {ATTRIBUTE_LIMIT:,} characters")
        if self.dropped_entries:
            found.append(f"{self.dropped_entries:,} entries after the first {MAX_ENTRIES:,}")
        return found


def bound_document(data: bytes, entry_names: Iterable[str] = FEED_ENTRIES) -> Bounded | None:
    """``data`` within the bounds above, or None when it is not well-formed XML (see
    ``bound_loose``). Raises ``DocumentRefused`` past the depth or element bound and
    ``EntityDeclared`` for entity declarations."""
    walk = _Pass(frozenset(entry_names))
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.EntityDeclHandler = _refuse_entities
    parser.UnparsedEntityDeclHandler = _refuse_entities
    parser.ExternalEntityRefHandler = _refuse_entities
    parser.buffer_text = True
    parser.StartElementHandler = walk.start
    parser.EndElementHandler = walk.end
    parser.CharacterDataHandler = walk.text
    try:
        parser.Parse(data, True)
    except (expat.ExpatError, LookupError, ValueError):
        if declares_entity_bytes(data):
            raise EntityDeclared from None
        return None
    cuts = walk.cuts()
    if not cuts:
        return Bounded(data)
    kept = min(walk.entries, MAX_ENTRIES) if walk.dropped_entries else None
    return Bounded("".join(walk.out).encode("utf-8"), tuple(cuts), kept)


_LONG_RUN = re.compile(rb"[^<]{%d,}" % TEXT_LIMIT)
_LONG_NAME = re.compile(
    rb"<(?:[\w.-]+:)?(?:author|name|email|creator|contributor|managingEditor|webMaster)"
    rb"\b[^>]{0,200}>[^<]{%d,}" % AUTHOR_TEXT_LIMIT
)


def bound_loose(data: bytes) -> None:
    """The bounds for a document expat cannot read (feedparser's loose parser may):
    it cannot be cut safely, so it is refused when it is beyond them."""
    if data.count(b"<") > MAX_ELEMENTS * 2:
        raise DocumentRefused(f"more than {MAX_ELEMENTS:,} elements")
    if _LONG_RUN.search(data):
        raise DocumentRefused(f"a text over {TEXT_LIMIT:,} characters")
    if _LONG_NAME.search(data):
        raise DocumentRefused(f"an author over {AUTHOR_TEXT_LIMIT:,} characters")
