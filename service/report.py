"""The human-readable evidence report: self-contained HTML and PDF.

Everything shown comes from platforms and may be hostile: it is escaped for the
output format (HTML entities; XML entities for reportlab's Paragraph markup), and
invisible control characters — above all bidi overrides that could reorder the page —
are replaced by visible marks such as ``⟨U+202E⟩``. ``evidence.json`` keeps the exact
text; the report shows it inert and legible.

Both renderers consume violations one at a time from an iterator, so a packet of
thousands of violations never sits in memory at once.
"""

from __future__ import annotations

import dataclasses
import functools
import html
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import IO, Any
from xml.sax.saxutils import escape as xml_escape
from zoneinfo import ZoneInfo

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Flowable, PageBreak, Paragraph, SimpleDocTemplate, Spacer

from service.chart import CHART_TITLE as CHART_TITLE
from service.chart import chart_caption, chart_drawing, chart_svg
from service.evidence import format_time
from service.marks import Dismissal
from service.timeline import EvidenceItem, ViolationEntry

# Characters that are invisible or change the direction of text around them. A post
# could use U+202E (right-to-left override) to make "gpj.exe" read as "exe.jpg" or to
# flip the report's own text, so each is shown as a visible mark instead.
_CONTROL = re.compile(
    "[\x00-\x08\x0b\x0c\x0d\x0e-\x1f\x7f-\x9f\u061c\u200b\u200e\u200f\u2028\u2029"
    "\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\ufff9-\ufffb]"
)
# Long texts are cut into several PDF paragraphs: reportlab re-wraps a paragraph at
# every page split, so one 100 kB paragraph would cost quadratic time.
_PDF_CHUNK = 2000


@dataclasses.dataclass(frozen=True, slots=True)
class CoverInfo:
    case_id: str
    reference: str | None
    effective: date
    expires: date | None
    terms: tuple[str, ...]
    protected: tuple[tuple[str, str], ...]  # (label, value) lines
    restrained: tuple[tuple[str, str], ...]
    zone: ZoneInfo
    exported_at: datetime


@dataclasses.dataclass(slots=True)
class Summary:
    """Counts over the case's violations; days are local days in the case's zone."""

    total: int = 0
    outside_period: int = 0
    by_kind: Counter[str] = dataclasses.field(default_factory=Counter)
    by_severity: Counter[str] = dataclasses.field(default_factory=Counter)
    by_platform: Counter[str] = dataclasses.field(default_factory=Counter)
    per_day: dict[date, Counter[str]] = dataclasses.field(default_factory=dict)
    # Violations marked as false positives (``nocontact dismiss``): listed apart.
    dismissed: dict[str, Dismissal] = dataclasses.field(default_factory=dict)

    def add(
        self, kind: str, severity: str, platform: str, day: date, in_order_period: bool
    ) -> None:
        self.total += 1
        if not in_order_period:
            # Kept and listed, but not a violation of the order: not counted.
            self.outside_period += 1
            return
        self.by_kind[kind] += 1
        self.by_severity[severity] += 1
        self.by_platform[platform] += 1
        self.per_day.setdefault(day, Counter())[platform] += 1

    @property
    def platforms(self) -> list[str]:
        return sorted(self.by_platform)

    def days(self) -> list[date]:
        if not self.per_day:
            return []
        first, last = min(self.per_day), max(self.per_day)
        return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def split_controls(text: str) -> Iterator[tuple[str, bool]]:
    """Split ``text`` into (segment, is_control) pieces; a control piece is the visible
    mark for one invisible or direction-changing character."""
    text = text.replace("\r\n", "\n")
    position = 0
    for match in _CONTROL.finditer(text):
        if match.start() > position:
            yield text[position : match.start()], False
        yield f"⟨U+{ord(match.group()):04X}⟩", True
        position = match.end()
    if position < len(text):
        yield text[position:], False


def html_text(text: str | None) -> str:
    """Platform text as inert HTML."""
    if text is None:
        return "—"
    return "".join(
        f'<span class="cc">{piece}</span>' if control else html.escape(piece, quote=True)
        for piece, control in split_controls(text)
    )


def pdf_text(text: str | None) -> str:
    """Platform text as inert Paragraph markup (which parses tags and entities)."""
    if text is None:
        return "—"
    parts: list[str] = []
    for piece, control in split_controls(text):
        if control:
            parts.append(f'<font color="#b00000">{piece}</font>')
        else:
            parts.append(xml_escape(piece).replace("\n", "<br/>"))
    return "".join(parts)


def local_time(value: datetime | None, zone: ZoneInfo) -> str:
    if value is None:
        return "—"
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z (UTC%z)")


def utc_time(value: datetime | None) -> str:
    return format_time(value) or "—"


def _evidence_fields(item: EvidenceItem, zone: ZoneInfo) -> list[tuple[str, str | None]]:
    """(label, value) pairs shown for each evidence item; values are platform text."""
    return [
        ("Captured (UTC)", utc_time(item.captured_at)),
        ("Captured (local)", local_time(item.captured_at, zone)),
        ("Posted (UTC)", utc_time(item.posted_at)),
        ("Posted (local)", local_time(item.posted_at, zone)),
        ("Platform", item.platform),
        ("Item id", f"{item.native_id} (version {item.version}, {item.kind})"),
        ("Account handle", item.author_handle),
        ("Account id", item.author_id),
        ("Display name", item.author_display_name),
        (
            "Account created",
            format_time(item.author_created_at) if item.author_created_at else "unknown",
        ),
        ("URL", item.url),
        ("Capture method", f"{item.capture_method or 'unspecified'} (watcher {item.watcher})"),
        ("Reason", item.reason),
        ("SHA-256", item.sha256),
        ("Chain SHA-256", item.chain_sha256),
        ("Raw payload", f"{item.raw_file} ({item.raw_content_type}, {len(item.raw or b'')} bytes)"),
        ("Raw SHA-256", item.raw_sha256),
    ]


DISMISSED_TITLE = "Dismissed as not violations"


def dismissed_line(dismissal: Dismissal) -> str:
    return (
        f"Dismissed by {dismissal.by} at {format_time(dismissal.at)}: {dismissal.reason} "
        f"(chain record {dismissal.seq})"
    )


def _violation_title(number: int, entry: ViolationEntry) -> str:
    suspected = ", suspected" if entry.suspected else ""
    score = f", score {entry.score:.0f}" if entry.score is not None else ""
    return f"Violation {number}: {entry.kind} ({entry.severity}{suspected}{score})"


def _violation_fields(entry: ViolationEntry, zone: ZoneInfo) -> list[tuple[str, str | None]]:
    return [
        ("Violation id", entry.id),
        ("First seen", f"{utc_time(entry.first_seen)} — {local_time(entry.first_seen, zone)}"),
        ("Last seen", f"{utc_time(entry.last_seen)} — {local_time(entry.last_seen, zone)}"),
        ("Reason", entry.reason),
        ("Alert sent", "yes" if entry.alerted else "no"),
    ]


# --------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:"DejaVu Sans",Arial,sans-serif;margin:2em auto;max-width:60em;
 padding:0 1em;color:#111;line-height:1.4}
h1,h2,h3,h4{line-height:1.2}
table{border-collapse:collapse;margin:.5em 0;width:100%}
th,td{border:1px solid #bbb;padding:.2em .5em;text-align:left;vertical-align:top;
 overflow-wrap:anywhere}
th{background:#f0f0f0;width:12em}
.text{white-space:pre-wrap;overflow-wrap:anywhere;word-break:break-word;border:1px solid #888;
 background:#fafafa;padding:.6em;font-family:"DejaVu Sans Mono",monospace;
 unicode-bidi:isolate;max-width:100%}
.cc{color:#b00000;background:#fee;border:1px solid #b00000;font-size:.85em}
.flag{background:#fff4ce;border:1px solid #c90;padding:.3em .6em}
.violation{border-top:3px solid #333;margin-top:2em;page-break-inside:auto}
.evidence{margin-left:1em;border-left:3px solid #ccc;padding-left:1em}
svg{max-width:100%;height:auto}
svg text{font-family:"DejaVu Sans",Arial,sans-serif}
"""

# No scripts, no external resources, no referrer: even a markup bug cannot run code.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _html_rows(fields: Iterable[tuple[str, str | None]]) -> str:
    return "".join(
        f"<tr><th>{html.escape(label)}</th><td><bdi>{html_text(value)}</bdi></td></tr>"
        for label, value in fields
    )


def _counter_table(title: str, counts: Counter[str]) -> str:
    rows = "".join(
        f"<tr><th>{html_text(name)}</th><td>{count}</td></tr>"
        for name, count in sorted(counts.items())
    )
    return f"<h3>{html.escape(title)}</h3><table>{rows or '<tr><td>none</td></tr>'}</table>"


class HtmlReport:
    """Writes report.html incrementally: ``begin``, ``add`` per violation, ``end``."""

    def __init__(self, out: IO[str], cover: CoverInfo, summary: Summary) -> None:
        self.out = out
        self.cover = cover
        self.summary = summary
        self.zone = cover.zone
        self.count = 0

    def begin(self) -> None:
        cover = self.cover
        title = f"Evidence report — case {cover.case_id}"
        order = [
            ("Case", cover.case_id),
            ("Order reference", cover.reference or "—"),
            ("Order effective", cover.effective.isoformat()),
            ("Order expires", cover.expires.isoformat() if cover.expires else "no end date"),
            ("Order terms", ", ".join(cover.terms)),
            ("Exported (UTC)", utc_time(cover.exported_at)),
            ("Local time zone", cover.zone.key),
        ]
        self.out.write(
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            '<meta name="referrer" content="no-referrer">'
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
            f"<h1>{html.escape(title)}</h1>"
            f"<h2>Order</h2><table>{_html_rows(order)}</table>"
            f"<h2>Protected person</h2><table>{_html_rows(cover.protected)}</table>"
            f"<h2>Restrained party</h2><table>{_html_rows(cover.restrained)}</table>\n"
        )
        self._write_summary()

    def _write_summary(self) -> None:
        summary = self.summary
        outside = ""
        if summary.outside_period:
            outside = (
                f'<p class="flag">{summary.outside_period} more recorded outside the order '
                "period: listed below and flagged, not counted as violations.</p>"
            )
        self.out.write(
            "<h2>Summary</h2>"
            f"<p>{summary.total - summary.outside_period} violations within the order "
            f"period.</p>{outside}"
            + _counter_table("By kind", summary.by_kind)
            + _counter_table("By severity", summary.by_severity)
            + _counter_table("By platform (of the first evidence item)", summary.by_platform)
            + f"<h2>Timeline</h2><figure>{chart_svg(summary)}<figcaption>"
            f"{html.escape(chart_caption(summary, self.cover.zone.key))}"
            "</figcaption></figure>\n<h2>Violations</h2>\n"
        )

    def add(self, entry: ViolationEntry) -> None:
        self.count += 1
        parts = [
            f'<section class="violation" id="v-{html.escape(entry.id)}">'
            f"<h3>{html.escape(_violation_title(self.count, entry))}</h3>"
        ]
        if not entry.in_order_period:
            parts.append(
                '<p class="flag">Outside the order period: recorded, not a violation '
                "of the order.</p>"
            )
        if entry.id in self.summary.dismissed:
            parts.append(
                f'<p class="flag">{html.escape(dismissed_line(self.summary.dismissed[entry.id]))}'
                "</p>"
            )
        parts.append(f"<table>{_html_rows(_violation_fields(entry, self.zone))}</table>")
        for item in entry.evidence:
            parts.append(
                f'<div class="evidence"><h4>Evidence seq {item.seq}: '
                f"{html_text(item.platform)} {html_text(item.native_id)}</h4>"
                f"<table>{_html_rows(_evidence_fields(item, self.zone))}</table>"
                f'<pre class="text" dir="auto">{html_text(item.text)}</pre></div>'
            )
        parts.append("</section>\n")
        self.out.write("".join(parts))

    def end(self) -> None:
        if self.summary.dismissed:
            rows = "".join(
                f"<tr><th>{html.escape(vid)}</th><td>{html.escape(dismissed_line(d))}</td></tr>"
                for vid, d in self.summary.dismissed.items()
            )
            self.out.write(f"<h2>{DISMISSED_TITLE}</h2><table>{rows}</table>\n")
        self.out.write(
            "<p>Hashes and the chain are explained in docs/evidence.md; evidence.json holds "
            "the exact texts and every chain link.</p></body></html>\n"
        )


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


def _field(style: ParagraphStyle, label: str, value: str | None) -> Paragraph:
    return Paragraph(f"<b>{xml_escape(label)}:</b> {pdf_text(value)}", style)


def _fields(style: ParagraphStyle, pairs: Iterable[tuple[str, str | None]]) -> Paragraph:
    """Several label/value lines as one paragraph: far fewer flowables to lay out."""
    return Paragraph(
        "<br/>".join(f"<b>{xml_escape(label)}:</b> {pdf_text(value)}" for label, value in pairs),
        style,
    )


def _text_chunks(text: str) -> Iterator[str]:
    """Cut a long text into pieces of at most ``_PDF_CHUNK`` characters, at a line
    break or space when there is one."""
    while len(text) > _PDF_CHUNK:
        cut = text.rfind("\n", 0, _PDF_CHUNK)
        if cut < _PDF_CHUNK // 2:
            cut = text.rfind(" ", 0, _PDF_CHUNK)
        if cut < _PDF_CHUNK // 2:
            cut = _PDF_CHUNK
        yield text[:cut]
        text = text[cut:]
    yield text


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

    def _front(self, width: float) -> Iterator[Flowable]:
        cover, st = self.cover, self.styles
        yield Paragraph(xml_escape(f"Evidence report — case {cover.case_id}"), st.title)
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
                "and flagged, not counted as violations.",
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
        yield PageBreak()
        yield Paragraph("Violations", st.h2)

    def violation(self, number: int, entry: ViolationEntry) -> Iterator[Flowable]:
        st = self.styles
        yield Paragraph(xml_escape(_violation_title(number, entry)), st.h3)
        if not entry.in_order_period:
            yield Paragraph(
                "Outside the order period: recorded, not a violation of the order.", st.flag
            )
        if entry.id in self.summary.dismissed:
            yield Paragraph(xml_escape(dismissed_line(self.summary.dismissed[entry.id])), st.flag)
        yield _fields(st.field, _violation_fields(entry, self.zone))
        for item in entry.evidence:
            yield Paragraph(
                f"Evidence seq {item.seq}: {pdf_text(item.platform)} {pdf_text(item.native_id)}",
                st.h3,
            )
            yield _fields(st.field, _evidence_fields(item, self.zone))
            for chunk in _text_chunks(item.text):
                yield Paragraph(pdf_text(chunk) or "&nbsp;", st.text)
        yield Spacer(1, 3 * mm)

    def build(self, out: IO[bytes], entries: Iterable[ViolationEntry]) -> None:
        def story(width: float) -> Iterator[Flowable]:
            yield from self._front(width)
            for number, entry in enumerate(entries, 1):
                yield from self.violation(number, entry)
            if self.summary.dismissed:
                yield Paragraph(DISMISSED_TITLE, self.styles.h2)
                for vid, dismissal in self.summary.dismissed.items():
                    yield _field(self.styles.field, vid, dismissed_line(dismissal))

        title = f"Evidence report — case {self.cover.case_id}"
        doc = _LazyDoc(out, pagesize=A4, title=title, author="nocontact",
                       leftMargin=18 * mm, rightMargin=18 * mm, topMargin=16 * mm,
                       bottomMargin=16 * mm, pageCompression=1,
                       source=iter(()))  # fmt: skip
        doc._source = story(doc.width)
        doc._story.append(next(doc._source))
        doc.build(doc._story, onFirstPage=self._footer, onLaterPages=self._footer)

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
