"""The XML pre-check every XML-reading watcher runs before its parser sees a document.

Entity declarations are refused outright (no expansion, no external entities: the
billion-laughs and XXE families), and the byte range of each top-level entry element is
found on the way, so that each entry's evidence is its own bytes as received.

This is expat with the three handlers defusedxml would set (entity declaration,
unparsed entity, external reference), set here because defusedxml's SAX and etree
interfaces do not expose the byte offsets the ranges need.
"""

from __future__ import annotations

from collections.abc import Iterable
from xml.parsers import expat

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
