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
import html
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta
from typing import IO
from xml.sax.saxutils import escape as xml_escape
from zoneinfo import ZoneInfo

from service.chart import CHART_TITLE as CHART_TITLE
from service.chart import chart_caption, chart_svg
from service.evidence import format_time
from service.marks import Dismissal
from service.report_judge import (
    APPENDIX,
    APPENDIX_NOTE,
    html_closing,
    html_log,
    plain,
)
from service.report_sections import (
    PacketFacts,
    html_coverage,
    html_record,
    html_timestamps,
    html_verification,
)
from service.timeline import EvidenceItem, ViolationEntry
from watchers.mail.provenance import summary as dkim_summary

# Characters that are invisible or change the direction of text around them. A post
# could use U+202E (right-to-left override) to make "gpj.exe" read as "exe.jpg" or to
# flip the report's own text, so each is shown as a visible mark instead.
_CONTROL = re.compile(
    "[\x00-\x08\x0b\x0c\x0d\x0e-\x1f\x7f-\x9f\u061c\u200b\u200e\u200f\u2028\u2029"
    "\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\ufff9-\ufffb]"
)


# Spans longer than this are drawn as weekly bars; at most this many violations as points.
WEEKLY_AFTER_DAYS = 120
FEW_POINTS = 40


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
    # Verification at export, trusted timestamps (service.report_sections).
    facts: PacketFacts = dataclasses.field(default_factory=PacketFacts)


@dataclasses.dataclass(slots=True)
class Summary:
    """Counts over the case's violations; days are local days in the case's zone."""

    total: int = 0
    outside_period: int = 0
    by_kind: Counter[str] = dataclasses.field(default_factory=Counter)
    by_severity: Counter[str] = dataclasses.field(default_factory=Counter)
    by_platform: Counter[str] = dataclasses.field(default_factory=Counter)
    per_day: dict[date, Counter[str]] = dataclasses.field(default_factory=dict)
    # Local days with a monitoring gap of one of the case's sources (shaded in charts).
    gap_days: set[date] = dataclasses.field(default_factory=set)
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

    @property
    def weekly(self) -> bool:
        """A long span is drawn as weekly bars: daily ones would be hairlines."""
        return len(self.days()) > WEEKLY_AFTER_DAYS

    @property
    def few(self) -> bool:
        """Few violations are drawn as one point each, readable however long the span."""
        return 0 < self.total - self.outside_period <= FEW_POINTS

    def buckets(self) -> list[tuple[date, Counter[str]]]:
        """(first day, counts by platform) per day, or per week (from Monday)."""
        days = self.days()
        if not self.weekly:
            return [(day, self.per_day.get(day, Counter())) for day in days]
        weeks: dict[date, Counter[str]] = {}
        for day in days:
            start = day - timedelta(days=day.weekday())
            weeks.setdefault(start, Counter()).update(self.per_day.get(day, Counter()))
        return sorted(weeks.items())

    def has_gap(self, start: date) -> bool:
        width = 7 if self.weekly else 1
        return any(start + timedelta(days=n) in self.gap_days for n in range(width))

    def days(self) -> list[date]:
        if not self.per_day:
            return []
        first = min(min(self.per_day), min(self.gap_days, default=date.max))
        last = max(max(self.per_day), max(self.gap_days, default=date.min))
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


def pdf_lines(text: str | None) -> list[list[tuple[str, bool]]]:
    """Platform text as plain lines of (piece, is_mark) for the PDF's own text blocks:
    the same visible marks as ``pdf_text``; nothing is parsed, so nothing to escape."""
    if text is None:
        return [[("—", False)]]
    lines: list[list[tuple[str, bool]]] = [[]]
    for piece, control in split_controls(text):
        if control:
            lines[-1].append((piece, True))
            continue
        first, *more = piece.split("\n")
        lines[-1].append((first, False))
        lines.extend([(part, False)] for part in more)
    return lines


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
        ("Reason", plain(item.reason)),
        ("SHA-256", item.sha256),
        ("Chain SHA-256", item.chain_sha256),
        ("Raw payload", f"{item.raw_file} ({item.raw_content_type}, {len(item.raw or b'')} bytes)"),
        ("Raw SHA-256", item.raw_sha256),
        *_provenance_fields(item),
    ]


def _provenance_fields(item: EvidenceItem) -> list[tuple[str, str | None]]:
    if not item.provenance or "dkim" not in item.provenance:
        return []
    arc = item.provenance.get("arc") or {}
    return [
        ("Signature at capture", f"{dkim_summary(item.provenance)}; ARC: {arc.get('result')}"),
        ("Signature record", provenance_file_name(item.raw_file)),
    ]


def provenance_file_name(raw_file: str) -> str:
    """``raw/<seq>-…-<id>.provenance.json``, beside the raw payload it describes."""
    return raw_file.rsplit(".", 1)[0] + ".provenance.json"


DISMISSED_TITLE = "Dismissed as not violations"


def dismissed_line(dismissal: Dismissal) -> str:
    return (
        f"Dismissed by {dismissal.by} at {format_time(dismissal.at)}: {dismissal.reason} "
        f"(chain record {dismissal.seq})"
    )


def _violation_title(name: str, entry: ViolationEntry) -> str:
    suspected = ", suspected" if entry.suspected else ""
    score = f", score {entry.score:.0f}" if entry.score is not None else ""
    return f"{name}: {entry.kind} ({entry.severity}{suspected}{score})"


def _name(facts: PacketFacts, number: int, entry: ViolationEntry) -> str:
    """ "Violation 3", or "Appendix item A1 (…)" for one outside the order period."""
    return facts.log.title(entry.id, number) if facts.log else f"Violation {number}"


def _violation_fields(entry: ViolationEntry, zone: ZoneInfo) -> list[tuple[str, str | None]]:
    return [
        ("Violation id", entry.id),
        ("First seen", f"{utc_time(entry.first_seen)} — {local_time(entry.first_seen, zone)}"),
        ("Last seen", f"{utc_time(entry.last_seen)} — {local_time(entry.last_seen, zone)}"),
        ("Reason", plain(entry.reason)),
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
            f"<h1>{html.escape(title)}</h1>{html_verification(cover.facts.verification)}"
            f"<h2>Order</h2><table>{_html_rows(order)}</table>"
            f"<h2>Protected person</h2><table>{_html_rows(cover.protected)}</table>"
            f"<h2>Restrained party</h2><table>{_html_rows(cover.restrained)}</table>\n"
        )
        if cover.facts.log is not None:
            self.out.write(html_log(cover.facts.log, cover.zone.key, html_text))
        self._write_summary()

    def _write_summary(self) -> None:
        summary = self.summary
        outside = ""
        if summary.outside_period:
            outside = (
                f'<p class="flag">{summary.outside_period} more recorded outside the order '
                "period: listed in Appendix A, not counted as violations.</p>"
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
            "</figcaption></figure>\n" + html_coverage(self.cover.facts) + "<h2>Violations</h2>\n"
        )

    def add(self, entry: ViolationEntry, *, appendix: bool = False) -> None:
        if not entry.in_order_period and not appendix and self.cover.facts.log is not None:
            return  # in Appendix A (``end``)
        self.count += 1
        name = _name(self.cover.facts, self.count, entry)
        parts = [
            f'<section class="violation" id="v-{html.escape(entry.id)}">'
            f"<h3>{html.escape(_violation_title(name, entry))}</h3>"
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
                f"{html_record(self.cover.facts, item.seq)}"
                f"<table>{_html_rows(_evidence_fields(item, self.zone))}</table>"
                f'<pre class="text" dir="auto">{html_text(item.text)}</pre></div>'
            )
        parts.append("</section>\n")
        self.out.write("".join(parts))

    def end(self, appendix: Iterable[ViolationEntry] = ()) -> None:
        facts = self.cover.facts
        if facts.log is not None and facts.log.appendix:
            self.out.write(f"<h2>{APPENDIX}</h2><p>{APPENDIX_NOTE}</p>\n")
            for entry in appendix:
                self.add(entry, appendix=True)
        if self.summary.dismissed:
            rows = "".join(
                f"<tr><th>{html.escape(vid)}</th><td>{html.escape(dismissed_line(d))}</td></tr>"
                for vid, d in self.summary.dismissed.items()
            )
            self.out.write(f"<h2>{DISMISSED_TITLE}</h2><table>{rows}</table>\n")
        self.out.write(
            html_timestamps(facts)
            + html_closing(self.cover.case_id, facts.head, facts.tokens)
            + "<p>Hashes and the chain are explained in docs/evidence.md; evidence.json holds "
            "the exact texts and every chain link.</p></body></html>\n"
        )


# The PDF report lives in service.report_pdf; these names are part of this module's
# interface (the export and the chart use them from here).
from service.report_pdf import Fonts as Fonts  # noqa: E402
from service.report_pdf import PdfReport as PdfReport  # noqa: E402
from service.report_pdf import pdf_fonts as pdf_fonts  # noqa: E402
