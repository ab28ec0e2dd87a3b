"""Plain-text blocks for the PDF report: one flowable per violation, laid out by
arithmetic on font metrics instead of reportlab's Paragraph.

A Paragraph parses mini-HTML markup and re-measures every word at every wrap and page
split; a packet of 10,000 violations spent most of its time there. A violation's
headings, fields and evidence text are plain text with a few coloured marks, so here
each line is wrapped once, when the block is made, and split between lines across
pages. The look follows the ParagraphStyles of ``service.report_pdf`` (font, size,
leading, indent, background with padding, space before and after).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from typing import Any

from reportlab.lib import colors
from reportlab.lib.styles import ParagraphStyle
from reportlab.pdfbase.pdfmetrics import getAscentDescent, stringWidth
from reportlab.platypus import Flowable

BLACK = colors.black
MARK = colors.HexColor("#b00000")  # the visible mark of a control character

# Paragraph's own word separators (reportlab.platypus.paragraph._wsc): the same text
# breaks at the same places, and no-break spaces stay glued.
_SPACES = re.compile(
    "[\t\n\x0b\x0c\r\x1c-\x1f \x85\u1680\u2000-\u200b\u2028\u2029\u202f\u205f\u3000]+"
)

# Any separator but a single space: such a line goes through the word splitter.
_UNUSUAL = re.compile(
    "[\t\n\x0b\x0c\r\x1c-\x1f\x85\u1680\u2000-\u200b\u2028\u2029\u202f\u205f\u3000]|  "
)

Frag = tuple[str, str, colors.Color]  # text, font name, colour
Line = tuple[Frag, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Look:
    """What a block draws of a ParagraphStyle."""

    font: str
    size: float
    leading: float
    indent: float
    back: colors.Color | None
    pad: float
    before: float
    after: float

    @classmethod
    def of(cls, style: ParagraphStyle) -> Look:
        return cls(style.fontName, style.fontSize, style.leading, style.leftIndent,
                   style.backColor, float(style.borderPadding or 0), style.spaceBefore,
                   style.spaceAfter)  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class Box:
    """Lines in one look. ``whole``: never split inside; ``glue``: never a page break
    between this box and the next (a heading and what it heads)."""

    look: Look
    lines: tuple[Line, ...]
    whole: bool = True
    glue: bool = False
    extra: float = 0.0  # blank space below the lines (a spacer)

    @property
    def height(self) -> float:
        return len(self.lines) * self.look.leading + self.extra


def wrap_lines(hard_lines: Iterable[Sequence[Frag]], look: Look, width: float) -> list[Line]:
    """Each hard line (fragments in their fonts) wrapped to ``width`` minus the indent,
    at the separators Paragraph uses, long words cut between characters."""
    room = width - look.indent
    out: list[Line] = []
    for frags in hard_lines:
        # Most lines fit and are spaced normally: measured whole, a few fragments
        # instead of every word.
        line = _as_is(frags)
        if line is not None and _width(line, look.size) <= room:
            out.append(tuple(line))
            continue
        words = _words(frags)
        line = []
        for index, word in enumerate(words):
            _append(line, word, index > 0)
        if _width(line, look.size) <= room:
            out.append(tuple(line))
        else:
            out.extend(_wrap(words, look.size, room))
    return out


def _width(line: Sequence[Frag], size: float) -> float:
    return sum(stringWidth(text, font, size) for text, font, _ in line)


def _as_is(frags: Sequence[Frag]) -> list[Frag] | None:
    """The fragments, merged, when the separators between their words are single
    spaces (what Paragraph would make of them anyway); None when they need work."""
    line: list[Frag] = []
    spaced = True  # at the start of the line, a space would be dropped
    for text, font, colour in frags:
        if not text:
            continue
        if (spaced and text[0] == " ") or _UNUSUAL.search(text):
            return None
        spaced = text[-1] == " "
        if line and line[-1][1] == font and line[-1][2] is colour:
            line[-1] = (line[-1][0] + text, font, colour)
        else:
            line.append((text, font, colour))
    return None if spaced and line else line


def _words(frags: Sequence[Frag]) -> list[list[Frag]]:
    """Words as fragment lists: a word may change colour midway (a control mark)."""
    words: list[list[Frag]] = []
    current: list[Frag] = []
    for text, font, colour in frags:
        if not text:
            continue
        pieces = _SPACES.split(text)
        for index, piece in enumerate(pieces):
            if index and current:
                words.append(current)
                current = []
            if piece:
                current.append((piece, font, colour))
    if current:
        words.append(current)
    return words


def _wrap(words: list[list[Frag]], size: float, room: float) -> list[Line]:
    lines: list[Line] = []
    line: list[Frag] = []
    used = 0.0
    for word in words:
        width = sum(stringWidth(text, font, size) for text, font, _ in word)
        space = stringWidth(" ", word[0][1], size) if line else 0.0
        if used + space + width <= room:
            _append(line, word, space > 0)
            used += space + width
            continue
        if width <= room:  # starts the next line
            lines.append(tuple(line))
            line, used = [], 0.0
            _append(line, word, False)
            used = width
            continue
        spaced = bool(line)  # a word longer than a line: cut it, filling this one
        used += space
        for text, font, colour in word:
            for char in text:
                step = stringWidth(char, font, size)
                if line and used + step > room:
                    lines.append(tuple(line))
                    line, used, spaced = [], 0.0, False
                _append(line, [(char, font, colour)], spaced)
                used += step
                spaced = False
    lines.append(tuple(line))
    return lines


def _append(line: list[Frag], word: list[Frag], spaced: bool) -> None:
    for index, (text, font, colour) in enumerate(word):
        if index == 0 and spaced:
            text = " " + text
        # Colours are compared by identity: Color.__eq__ is slow, and the block only
        # uses the module's BLACK and MARK.
        if line and line[-1][1] == font and line[-1][2] is colour:
            last = line[-1]
            line[-1] = (last[0] + text, font, colour)
        else:
            line.append((text, font, colour))


class TextBlock(Flowable):
    """Boxes stacked like Paragraphs in a frame; split between lines where allowed."""

    def __init__(self, boxes: Sequence[Box], page_height: float, *, wrapped: bool = False) -> None:
        """``boxes`` hold hard lines (each wrapped at the first ``wrap``), or lines
        already wrapped (the parts of a split)."""
        super().__init__()
        self.boxes = tuple(boxes)
        self.page_height = page_height  # a part taller than this may split anywhere
        self._wrapped_at: float | None = None if not wrapped else -1.0
        self.height = self._top_of(len(self.boxes))

    def _gap(self, index: int) -> float:
        """Space between box ``index - 1`` and box ``index`` (the larger one wins)."""
        if index == 0:
            return 0.0
        return max(self.boxes[index - 1].look.after, self.boxes[index].look.before)

    def _top_of(self, count: int) -> float:
        """Height of the first ``count`` boxes."""
        return sum(self._gap(i) + self.boxes[i].height for i in range(count))

    def wrap(self, availWidth: float, availHeight: float) -> tuple[float, float]:
        if self._wrapped_at is None:
            self.boxes = tuple(
                dataclasses.replace(box, lines=tuple(wrap_lines(box.lines, box.look, availWidth)))
                for box in self.boxes
            )
            self._wrapped_at = availWidth
            self.height = self._top_of(len(self.boxes))
        self.width = availWidth
        return availWidth, self.height

    def getSpaceBefore(self) -> float:
        return self.boxes[0].look.before if self.boxes else 0.0

    def getSpaceAfter(self) -> float:
        return self.boxes[-1].look.after if self.boxes else 0.0

    def split(self, availWidth: float, availHeight: float) -> list[Flowable]:
        cut = self._cut(availHeight, strict=True)
        if cut is None and self._first_run() > self.page_height:
            cut = self._cut(availHeight, strict=False)  # taller than a page: no choice
        if cut is None:
            return []
        index, keep = cut
        box = self.boxes[index]
        head = [*self.boxes[:index], dataclasses.replace(box, lines=box.lines[:keep], extra=0.0)]
        rest = [dataclasses.replace(box, lines=box.lines[keep:]), *self.boxes[index + 1 :]]
        head = [b for b in head if b.lines or b.extra]
        parts: list[Flowable] = [TextBlock(head, self.page_height, wrapped=True)]
        if any(b.lines for b in rest):
            parts.append(TextBlock(rest, self.page_height, wrapped=True))
        return parts

    def _cut(self, room: float, *, strict: bool) -> tuple[int, int] | None:
        """The last place (box, lines of it kept) where the part above fits ``room``."""
        best: tuple[int, int] | None = None
        top = 0.0
        for index, box in enumerate(self.boxes):
            top += self._gap(index)
            leading = box.look.leading
            if not (strict and box.whole) and len(box.lines) > 1:
                fits = min(int((room - top) // leading + 1e-9), len(box.lines) - 1)
                if fits >= 1:
                    best = (index, fits)
            top += box.height
            if top > room:
                return best
            if index + 1 < len(self.boxes) and not (strict and box.glue):
                best = (index + 1, 0)
        return best

    def _first_run(self) -> float:
        """Height up to the first place a page break is allowed."""
        for index, box in enumerate(self.boxes):
            if not box.whole and len(box.lines) > 1:
                return self._top_of(index) + self._gap(index) + box.look.leading
            if not box.glue:
                return self._top_of(index + 1)
        return self.height

    def draw(self) -> None:
        canvas: Any = self.canv
        top = self.height
        placed: list[tuple[float, Box]] = []
        for index, box in enumerate(self.boxes):
            top -= self._gap(index)
            placed.append((top, box))
            top -= box.height
        for top, box in placed:  # backgrounds first, under every line
            look = box.look
            if look.back is not None and box.lines:
                canvas.setFillColor(look.back)
                height = len(box.lines) * look.leading
                canvas.rect(look.indent - look.pad, top - height - look.pad,
                            self.width - look.indent + 2 * look.pad, height + 2 * look.pad,
                            stroke=0, fill=1)  # fmt: skip
        text = canvas.beginText()
        for top, box in placed:
            self._draw_lines(text, top, box)
        canvas.drawText(text)

    @staticmethod
    def _draw_lines(text: Any, top: float, box: Box) -> None:
        look = box.look
        ascent = getAscentDescent(look.font, look.size)[0]
        state: tuple[str, colors.Color] | None = None
        for number, line in enumerate(box.lines):
            text.setTextOrigin(look.indent, top - number * look.leading - ascent)
            for chunk, font, colour in line:
                if state is None or state[0] != font:
                    text.setFont(font, look.size, look.leading)
                if state is None or state[1] is not colour:
                    text.setFillColor(colour)
                state = (font, colour)
                text.textOut(chunk)
