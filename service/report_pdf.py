"""The PDF evidence report (reportlab), written incrementally: front matter, summary
with the chart, one section per violation pulled from the store as reportlab lays out
pages, appendices, timestamps and the verification page. What the report says is
decided in ``service.report``; this module lays it out."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any
from xml.sax.saxutils import escape as xml_escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import (
    Flowable,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
)

from service.chart import CHART_TITLE as CHART_TITLE
from service.chart import chart_caption, chart_drawing
from service.report import (
    DISMISSED_TITLE,
    CoverInfo,
    Summary,
    _evidence_fields,
    _name,
    _violation_fields,
    _violation_title,
    dismissed_line,
    pdf_lines,
    pdf_text,
    utc_time,
)
from service.report_judge import (
    APPENDIX,
    APPENDIX_NOTE,
    pdf_closing,
    pdf_log,
)
from service.report_pdf_block import BLACK, MARK, Box, Frag, Look, TextBlock
from service.report_pdf_file import PackedCanvas
from service.report_sections import (
    pdf_coverage,
    pdf_timestamps,
    pdf_verification,
)
from service.timeline import ViolationEntry

# --------------------------------------------------------------------------- PDF

_FONT_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/dejavu"),
    Path("/usr/share/fonts/TTF"),
    Path("/usr/local/share/fonts"),
)


@dataclasses.dataclass(frozen=True, slots=True)
class Fonts:
    regular: str
    bold: str
    mono: str
    # False when only reportlab's own Latin font was found (see docs/evidence.md).
    broad_unicode: bool


@functools.cache
def pdf_fonts() -> Fonts:
    """DejaVu (Debian ``fonts-dejavu-core``) covers Latin, Greek, Cyrillic, Hebrew and
    Arabic; reportlab's bundled Vera (Latin only) is the fallback."""
    for folder in _FONT_DIRS:
        files = [folder / name for name in ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf")]
        mono = folder / "DejaVuSansMono.ttf"
        if all(f.is_file() for f in files) and mono.is_file():
            pdfmetrics.registerFont(TTFont("NC-Sans", str(files[0])))
            pdfmetrics.registerFont(TTFont("NC-Sans-Bold", str(files[1])))
            pdfmetrics.registerFont(TTFont("NC-Mono", str(mono)))
            return Fonts("NC-Sans", "NC-Sans-Bold", "NC-Mono", broad_unicode=True)
    pdfmetrics.registerFont(TTFont("NC-Vera", "Vera.ttf"))
    pdfmetrics.registerFont(TTFont("NC-Vera-Bold", "VeraBd.ttf"))
    return Fonts("NC-Vera", "NC-Vera-Bold", "NC-Vera", broad_unicode=False)


@dataclasses.dataclass(frozen=True, slots=True)
class _Styles:
    title: ParagraphStyle
    h2: ParagraphStyle
    h3: ParagraphStyle
    body: ParagraphStyle
    field: ParagraphStyle
    text: ParagraphStyle
    flag: ParagraphStyle


def _styles(fonts: Fonts) -> _Styles:
    body = ParagraphStyle("nc-body", fontName=fonts.regular, fontSize=9, leading=12)
    return _Styles(
        title=ParagraphStyle("nc-title", parent=body, fontName=fonts.bold, fontSize=18,
                             leading=22, spaceAfter=10),
        h2=ParagraphStyle("nc-h2", parent=body, fontName=fonts.bold, fontSize=13, leading=16,
                          spaceBefore=10, spaceAfter=4, keepWithNext=1),
        h3=ParagraphStyle("nc-h3", parent=body, fontName=fonts.bold, fontSize=11, leading=14,
                          spaceBefore=8, spaceAfter=2, keepWithNext=1),
        body=body,
        field=ParagraphStyle("nc-field", parent=body, leftIndent=6 * mm),
        text=ParagraphStyle("nc-text", parent=body, fontName=fonts.mono, fontSize=8.5,
                            leading=11, leftIndent=6 * mm, borderPadding=3,
                            backColor=colors.HexColor("#f4f4f4"), spaceBefore=4,
                            spaceAfter=4),
        flag=ParagraphStyle("nc-flag", parent=body, backColor=colors.HexColor("#fff4ce"),
                            borderPadding=3, spaceBefore=3, spaceAfter=3),
    )  # fmt: skip


OUTSIDE_PERIOD = "Outside the order period: recorded, not a violation of the order."


@dataclasses.dataclass(frozen=True, slots=True)
class _Looks:
    """The styles of a violation's block, as ``report_pdf_block`` draws them."""

    h3: Look
    flag: Look
    body: Look
    field: Look
    text: Look

    @classmethod
    def of(cls, st: _Styles) -> _Looks:
        return cls(Look.of(st.h3), Look.of(st.flag), Look.of(st.body), Look.of(st.field),
                   Look.of(st.text))  # fmt: skip


Pieces = list[tuple[str, bool]]  # (text, is the visible mark of a control character)


def _frags(pieces: Pieces, font: str) -> list[Frag]:
    return [(piece, font, MARK if mark else BLACK) for piece, mark in pieces]


def _joined(*parts: list[Pieces]) -> list[Pieces]:
    """Multi-line texts run on: each part continues the last line of the one before."""
    lines: list[Pieces] = [[]]
    for part in parts:
        first, *more = part
        lines[-1] = [*lines[-1], *first]
        lines.extend(more)
    return lines


def _marked_box(look: Look, lines: list[Pieces], *, glue: bool) -> Box:
    return Box(look, tuple(tuple(_frags(line, look.font)) for line in lines), glue=glue)


def _plain_box(look: Look, text: str, *, glue: bool) -> Box:
    return _marked_box(look, [[(text, False)]], glue=glue)


def _field_box(look: Look, bold: str, pairs: Iterable[tuple[str, str | None]]) -> Box:
    """ "label: value" lines, the label in bold; a value's own line breaks are kept."""
    hard: list[tuple[Frag, ...]] = []
    for label, value in pairs:
        first, *more = pdf_lines(value)
        hard.append(((f"{label}: ", bold, BLACK), *_frags(first, look.font)))
        hard.extend(tuple(_frags(line, look.font)) for line in more)
    return Box(look, tuple(hard))


def _field(style: ParagraphStyle, label: str, value: str | None) -> Paragraph:
    return Paragraph(f"<b>{xml_escape(label)}:</b> {pdf_text(value)}", style)


def _fields(style: ParagraphStyle, pairs: Iterable[tuple[str, str | None]]) -> Paragraph:
    """Several label/value lines as one paragraph: far fewer flowables to lay out."""
    return Paragraph(
        "<br/>".join(f"<b>{xml_escape(label)}:</b> {pdf_text(value)}" for label, value in pairs),
        style,
    )


class _LazyDoc(SimpleDocTemplate):
    """A document whose story is topped up from an iterator as reportlab consumes it,
    so that only a few violations' flowables exist at any time."""

    def __init__(self, *args: Any, source: Iterator[Flowable], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._source = source
        self._story: list[Flowable] = []

    def filterFlowables(self, flowables: list[Flowable]) -> None:  # reportlab's hook name
        # reportlab stops when the story is empty, so keep a margin ahead of it. It
        # also passes its own internal lists here: leave those alone.
        if flowables is not self._story:
            return
        while len(flowables) < 64:
            nxt = next(self._source, None)
            if nxt is None:
                return
            flowables.append(nxt)


class PdfReport:
    def __init__(self, cover: CoverInfo, summary: Summary) -> None:
        self.cover = cover
        self.summary = summary
        self.zone = cover.zone
        self.fonts = pdf_fonts()
        self.styles = _styles(self.fonts)
        self.looks = _Looks.of(self.styles)
        # The frame's height (set in ``build``): a block taller may split anywhere.
        self.frame_height = A4[1]

    def _front(self, width: float) -> Iterator[Flowable]:
        cover, st = self.cover, self.styles
        yield Paragraph(xml_escape(f"Evidence report — case {cover.case_id}"), st.title)
        yield from pdf_verification(cover.facts.verification, st.flag, st.body)
        yield Paragraph("Order", st.h2)
        yield _field(st.field, "Order reference", cover.reference or "—")
        yield _field(st.field, "Effective", cover.effective.isoformat())
        yield _field(st.field, "Expires",
                     cover.expires.isoformat() if cover.expires else "no end date")  # fmt: skip
        yield _field(st.field, "Terms", ", ".join(cover.terms))
        yield _field(st.field, "Exported (UTC)", utc_time(cover.exported_at))
        yield _field(st.field, "Local time zone", cover.zone.key)
        yield Paragraph("Protected person", st.h2)
        for label, value in cover.protected:
            yield _field(st.field, label, value)
        yield Paragraph("Restrained party", st.h2)
        for label, value in cover.restrained:
            yield _field(st.field, label, value)
        if cover.facts.log is not None:
            yield PageBreak()
            cell = ParagraphStyle("nc-cell", parent=st.body, fontSize=7.5, leading=9)
            yield from pdf_log(cover.facts.log, cover.zone.key, pdf_lines, (st.h2, st.body, cell))
        yield from self._summary(width)

    def _summary(self, width: float) -> Iterator[Flowable]:
        summary, st = self.summary, self.styles
        yield Paragraph("Summary", st.h2)
        yield Paragraph(
            f"{summary.total - summary.outside_period} violations within the order period.",
            st.body,
        )
        if summary.outside_period:
            yield Paragraph(
                f"{summary.outside_period} more recorded outside the order period: listed "
                "in Appendix A, not counted as violations.",
                st.flag,
            )
        for title, counts in (
            ("By kind", summary.by_kind),
            ("By severity", summary.by_severity),
            ("By platform (of the first evidence item)", summary.by_platform),
        ):
            listing = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "none"
            yield _field(st.field, title, listing)
        yield Spacer(1, 4 * mm)
        yield Paragraph("Timeline", st.h2)
        yield chart_drawing(summary, self.fonts, width)
        yield Paragraph(xml_escape(chart_caption(summary, self.cover.zone.key)), st.body)
        if not self.fonts.broad_unicode:
            yield Paragraph(
                "Note: no broad-coverage font was found; characters outside Latin scripts "
                "may show as boxes. evidence.json holds the exact texts.",
                st.flag,
            )
        yield from pdf_coverage(self.cover.facts, st.h2, st.body, st.flag)
        yield PageBreak()
        yield Paragraph("Violations", st.h2)

    def violation(self, number: int, entry: ViolationEntry) -> Iterator[Flowable]:
        """One flowable per violation (``report_pdf_block``): headings, flags, fields
        and evidence texts as plain text, with the headings' keep rules."""
        looks, bold = self.looks, self.fonts.bold
        title = _violation_title(_name(self.cover.facts, number, entry), entry)
        # A heading never stands alone at the foot of a page: the violation's heading,
        # flags and fields are kept together, and each evidence heading with its fields.
        boxes = [_plain_box(looks.h3, title, glue=True)]
        if not entry.in_order_period:
            boxes.append(_plain_box(looks.flag, OUTSIDE_PERIOD, glue=True))
        if entry.id in self.summary.dismissed:
            line = dismissed_line(self.summary.dismissed[entry.id])
            boxes.append(_plain_box(looks.flag, line, glue=True))
        boxes.append(_field_box(looks.field, bold, _violation_fields(entry, self.zone)))
        for item in entry.evidence:
            heading = _joined([[(f"Evidence seq {item.seq}: ", False)]], pdf_lines(item.platform),
                              [[(" ", False)]], pdf_lines(item.native_id))  # fmt: skip
            boxes.append(_marked_box(looks.h3, heading, glue=True))
            flags, notes = self.cover.facts.record_lines(item.seq)
            for flag in flags:
                boxes.append(
                    _plain_box(dataclasses.replace(looks.flag, font=bold), flag, glue=True)
                )
            for note in notes:
                boxes.append(_plain_box(looks.body, note, glue=True))
            boxes.append(_field_box(looks.field, bold, _evidence_fields(item, self.zone)))
            text = _marked_box(looks.text, pdf_lines(item.text), glue=False)
            boxes.append(dataclasses.replace(text, whole=False))
        boxes.append(Box(looks.body, (), extra=3 * mm))
        yield TextBlock(boxes, self.frame_height)

    def build(
        self,
        out: IO[bytes],
        entries: Iterable[ViolationEntry],
        appendix: Callable[[], Iterable[ViolationEntry]] | None = None,
        scratch: Path | None = None,
    ) -> None:
        """Write the report to ``out``; finished pages wait in an unlinked file in
        ``scratch`` (``report_pdf_file``)."""
        facts, st = self.cover.facts, self.styles

        def story(width: float) -> Iterator[Flowable]:
            yield from self._front(width)
            number = 0
            for entry in entries:
                if entry.in_order_period or facts.log is None:
                    number += 1
                    yield from self.violation(number, entry)
            if facts.log is not None and facts.log.appendix and appendix is not None:
                yield PageBreak()
                yield Paragraph(APPENDIX, st.h2)
                yield Paragraph(APPENDIX_NOTE, st.body)
                for later, entry in enumerate(appendix(), 1):
                    yield from self.violation(later, entry)
            if self.summary.dismissed:
                yield Paragraph(DISMISSED_TITLE, st.h2)
                for vid, dismissal in self.summary.dismissed.items():
                    yield _field(st.field, vid, dismissed_line(dismissal))
            yield from pdf_timestamps(facts, st.h2, st.body, st.text)
            yield PageBreak()
            yield from pdf_closing(self.cover.case_id, facts.head, facts.tokens, (st.h2, st.body))

        title = f"Evidence report — case {self.cover.case_id}"
        doc = _LazyDoc(out, pagesize=A4, title=title, author="nocontact",
                       leftMargin=18 * mm, rightMargin=18 * mm, topMargin=16 * mm,
                       bottomMargin=16 * mm, pageCompression=1,
                       source=iter(()))  # fmt: skip
        self.frame_height = doc.height
        doc._source = story(doc.width)
        doc._story.append(next(doc._source))
        doc.build(doc._story, onFirstPage=self._footer, onLaterPages=self._footer,
                  canvasmaker=functools.partial(PackedCanvas, scratch=scratch))  # fmt: skip

    def _footer(self, canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(self.fonts.regular, 7)
        canvas.drawString(
            18 * mm,
            9 * mm,
            f"nocontact evidence report — case {self.cover.case_id} — exported "
            f"{utc_time(self.cover.exported_at)} — page {doc.page}",
        )
        canvas.restoreState()
