"""The PDF's violation log table, drawn from plain text like ``report_pdf_block``.

reportlab's Table of Paragraphs measured every cell of all rows, and again at every
page split: one row per violation made it the second cost of a large packet. Here a
row is wrapped when a page needs it, a page takes the rows that fit, and the header
row is repeated on each page, as ``repeatRows=1`` did.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from reportlab.lib import colors
from reportlab.pdfbase.pdfmetrics import getAscentDescent
from reportlab.platypus import Flowable

from service.report_pdf_block import BLACK, MARK, Line, Look, wrap_lines

GRID = colors.HexColor("#999999")
HEAD_BACK = colors.HexColor("#eeeeee")
PAD_X, PAD_Y = 6.0, 3.0  # reportlab's default cell padding

Pieces = list[tuple[str, bool]]  # (text, is the visible mark of a control character)
Cells = list[tuple[Line, ...]]  # one cell's wrapped lines, per column


class LogTable(Flowable):
    """Rows ``start``..``stop`` of ``rows`` under the ``head`` row, with a grid."""

    def __init__(
        self,
        head: Sequence[str],
        rows: Sequence[Sequence[str]],
        widths: Sequence[float | None],
        look: Look,
        pieces: Callable[[str], list[Pieces]],
        span: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.head, self.rows, self.widths, self.look, self.pieces = head, rows, widths, look, pieces
        self.start, self.stop = span if span is not None else (0, len(rows))
        self._laid: list[Cells] = []  # the rows wrapped so far, from ``start``
        self._columns: list[float] = []

    def _cells(self, values: Sequence[str]) -> Cells:
        look = self.look
        return [
            tuple(wrap_lines(
                [[(p, look.font, MARK if mark else BLACK) for p, mark in line]
                 for line in self.pieces(value)],
                look, width - 2 * PAD_X,
            ))
            for value, width in zip(values, self._columns, strict=True)
        ]  # fmt: skip

    def _row_height(self, cells: Cells) -> float:
        return max(1, *(len(cell) for cell in cells)) * self.look.leading + 2 * PAD_Y

    def wrap(self, availWidth: float, availHeight: float) -> tuple[float, float]:
        fixed = sum(w for w in self.widths if w is not None)
        self._columns = [w if w is not None else availWidth - fixed for w in self.widths]
        self._head = self._cells(self.head)
        height = self._row_height(self._head)
        # Rows are wrapped only until the page is full: the rest waits for its page.
        for number, index in enumerate(range(self.start, self.stop)):
            if number == len(self._laid):
                self._laid.append(self._cells(self.rows[index]))
            height += self._row_height(self._laid[number])
            if height > availHeight:
                break
        self.width, self.height = sum(self._columns), height
        return self.width, height

    def split(self, availWidth: float, availHeight: float) -> list[Flowable]:
        self.wrap(availWidth, availHeight)
        used, fits = self._row_height(self._head), 0
        for cells in self._laid:
            used += self._row_height(cells)
            if used > availHeight:
                break
            fits += 1
        if fits == 0:
            return []
        cut = self.start + fits
        first = LogTable(self.head, self.rows, self.widths, self.look, self.pieces,
                         (self.start, cut))  # fmt: skip
        first._laid = self._laid[:fits]
        rest = LogTable(self.head, self.rows, self.widths, self.look, self.pieces,
                        (cut, self.stop))  # fmt: skip
        return [first, rest]

    def draw(self) -> None:
        canvas: Any = self.canv
        rows = [self._head, *self._laid[: self.stop - self.start]]
        tops = [self.height]
        for cells in rows:
            tops.append(tops[-1] - self._row_height(cells))
        right = sum(self._columns)
        canvas.saveState()
        canvas.setFillColor(HEAD_BACK)
        canvas.rect(0, tops[1], right, tops[0] - tops[1], stroke=0, fill=1)
        canvas.restoreState()
        text = canvas.beginText()
        for top, cells in zip(tops, rows, strict=False):
            self._draw_row(text, top, cells)
        canvas.drawText(text)
        canvas.saveState()
        canvas.setStrokeColor(GRID)
        canvas.setLineWidth(0.4)
        for y in tops:
            canvas.line(0, y, right, y)
        x = 0.0
        for width in [0.0, *self._columns]:
            x += width
            canvas.line(x, tops[-1], x, tops[0])
        canvas.restoreState()

    def _draw_row(self, text: Any, top: float, cells: Cells) -> None:
        look = self.look
        ascent = getAscentDescent(look.font, look.size)[0]
        text.setFont(look.font, look.size, look.leading)
        x = 0.0
        for cell, width in zip(cells, self._columns, strict=True):
            for number, line in enumerate(cell):
                text.setTextOrigin(x + PAD_X, top - PAD_Y - ascent - number * look.leading)
                for chunk, _font, colour in line:
                    text.setFillColor(colour)
                    text.textOut(chunk)
            x += width
