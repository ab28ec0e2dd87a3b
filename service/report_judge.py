"""The parts of the report written for a judge (#14 item 6): the violation log table
that comes first, the numbering (violations 1..n; items outside the order period in
Appendix A as A1..), plain-text reasons, the "How to verify this packet" page and a
custodian's certification template (in the style of US FRE 902(13)/(14)).

The log is read in one light pass before the detailed one (violation columns and the
first 200 characters of each violation's first evidence text), so it costs little
even for thousands of violations.
"""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import Callable, Iterator, Sequence
from xml.sax.saxutils import escape as xml_escape
from zoneinfo import ZoneInfo

from reportlab.lib.styles import ParagraphStyle
from reportlab.platypus import Flowable, Paragraph
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.models import Evidence, Violation, ViolationEvidence
from service.packet_timestamps import TokenInfo
from service.report_pdf_block import Look
from service.report_pdf_table import LogTable, Pieces
from watchers.toolkit.text import one_line

APPENDIX = "Appendix A: recorded outside the order period"
APPENDIX_NOTE = (
    "These items were recorded before the order took effect or after it expired. They "
    "are kept as context and are not violations of the order."
)
_EXCERPT = 90
_TICKED = re.compile(r"`([^`]*)`")


def plain(text: str) -> str:
    """A reason as plain text: nocontact's `handle` quoting becomes “handle”."""
    return _TICKED.sub("“\\1”", text)


@dataclasses.dataclass(frozen=True, slots=True)
class LogRow:
    label: str  # "3" or "A1"
    when: str  # local date and time
    platform: str
    account: str
    kind: str
    excerpt: str


@dataclasses.dataclass(slots=True)
class ViolationLog:
    rows: list[LogRow] = dataclasses.field(default_factory=list)
    appendix: list[LogRow] = dataclasses.field(default_factory=list)
    labels: dict[str, str] = dataclasses.field(default_factory=dict)

    def title(self, violation_id: str, fallback: int) -> str:
        label = self.labels.get(violation_id, str(fallback))
        if label.startswith("A"):
            return f"Appendix item {label} (outside the order period)"
        return f"Violation {label}"


def build_log(session: Session, case_id: str, zone: ZoneInfo) -> ViolationLog:
    query = (
        select(
            Violation.id,
            Violation.kind,
            Violation.severity,
            Violation.in_order_period,
            Violation.first_seen,
            Evidence.platform,
            Evidence.author_handle,
            func.substr(Evidence.text, 1, 200),
        )
        .outerjoin(ViolationEvidence, ViolationEvidence.violation_id == Violation.id)
        .outerjoin(Evidence, Evidence.id == ViolationEvidence.evidence_id)
        .where(Violation.case_id == case_id)
        .order_by(Violation.first_seen, Violation.id, Evidence.seq)
        .execution_options(yield_per=1000)
    )
    log = ViolationLog()
    previous: str | None = None
    for vid, kind, severity, in_period, first_seen, platform, author, text in session.execute(
        query
    ):
        if vid == previous:
            continue  # the first evidence item speaks for the violation
        previous = vid
        target = log.rows if in_period else log.appendix
        label = str(len(target) + 1) if in_period else f"A{len(target) + 1}"
        log.labels[vid] = label
        target.append(
            LogRow(
                label=label,
                when=first_seen.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
                platform=platform or "unknown",
                account=author or "unknown",
                kind=f"{kind} ({severity})",
                excerpt=one_line(text or "", _EXCERPT),
            )
        )
    return log


_HEAD = ("No.", "Local date and time", "Platform", "Account", "Kind", "Excerpt")
_WIDTHS = (28.0, 78.0, 50.0, 70.0, 78.0, None)  # the excerpt takes the rest


def html_log(log: ViolationLog, zone_name: str, text: object) -> str:
    """The log tables; ``text`` is report.html_text (escapes and marks controls)."""
    escape = text if callable(text) else html.escape

    def table(rows: Sequence[LogRow]) -> str:
        head = "".join(f"<th>{h}</th>" for h in _HEAD)
        body = "".join(
            "<tr>"
            + "".join(
                f"<td>{escape(value)}</td>"
                for value in (r.label, r.when, r.platform, r.account, r.kind, r.excerpt)
            )
            + "</tr>"
            for r in rows
        )
        return f'<table class="log"><tr>{head}</tr>{body}</table>'

    parts = [
        f"<h2>Violation log</h2><p>{len(log.rows)} violations within the order period, "
        f"oldest first; times in {html.escape(zone_name)}. Each is detailed below under its "
        "number.</p>",
        table(log.rows) if log.rows else "<p>No violations within the order period.</p>",
    ]
    if log.appendix:
        parts.append(f"<p>{len(log.appendix)} more items outside the order period are in "
                     f"{APPENDIX.split(':')[0]}.</p>")  # fmt: skip
    return "".join(parts) + "\n"


def pdf_log(
    log: ViolationLog,
    zone_name: str,
    text: Callable[[str], list[Pieces]],
    styles: tuple[ParagraphStyle, ...],
) -> Iterator[Flowable]:
    """``styles`` = (heading, body, cell); ``text`` is report.pdf_lines (marks controls)."""
    heading, body, cell = styles
    yield Paragraph("Violation log", heading)
    yield Paragraph(
        f"{len(log.rows)} violations within the order period, oldest first; times in "
        f"{xml_escape(zone_name)}. Each is detailed below under its number.",
        body,
    )
    if not log.rows:
        yield Paragraph("No violations within the order period.", body)
    else:
        rows = [(r.label, r.when, r.platform, r.account, r.kind, r.excerpt) for r in log.rows]
        yield LogTable(_HEAD, rows, _WIDTHS, Look.of(cell), text)
    if log.appendix:
        yield Paragraph(
            f"{len(log.appendix)} more items outside the order period are in Appendix A.", body
        )


# ---------------------------------------------------------------- verifying, certifying

VERIFY_TITLE = "How to verify this packet"
CERTIFY_TITLE = "Custodian's certification (template)"


def verify_steps(tokens: Sequence[TokenInfo]) -> list[str]:
    steps = [
        "1. Files. In the packet's folder run: sha256sum -c MANIFEST.sha256 — every line must "
        "say OK. MANIFEST.sha256 lists the SHA-256 of every other file in the packet.",
        "2. Records and chain. evidence.json holds every evidence record with its canonical "
        "fields, and every link of the hash chain up to the last record of this case. The "
        "method is published (nocontact's docs/evidence.md, with a 30-line Python script); "
        "anyone can recompute each record's SHA-256 from its fields, each link from the "
        "one before it, and each raw payload's SHA-256 from its file in raw/.",
        "3. A head noted elsewhere. If the chain head was written down or sent to someone "
        "earlier, compare it with the link of the same seq in evidence.json: equal means "
        "nothing before it was changed since.",
    ]
    if tokens:
        steps.append(
            "4. Trusted timestamps. Each token in timestamps/ is an independent timestamp "
            "authority's signature over a chain head. Check one with its command from the "
            "section Trusted timestamps, e.g.: " + tokens[-1].verify_command()
        )
    else:
        steps.append(
            "4. Trusted timestamps. None in this packet (evidence.timestamping was not set)."
        )
    return steps


def certification_lines(
    case_id: str, head: tuple[int, str] | None, tokens: Sequence[TokenInfo]
) -> list[str]:
    head_text = f"seq {head[0]}, SHA-256 {head[1]}" if head else "(none)"
    token_text = "; ".join(f"{t.token_file} ({t.tsa}, {t.gen_time})" for t in tokens) or "none"
    return [
        "I, ______________________ (name), declare:",
        "1. I am the custodian of the records in this packet, or am otherwise qualified, and "
        "I am familiar with how they were made and kept.",
        f"2. The records of case {case_id} were made by nocontact, a program that reads the "
        "platforms named in each record through their published interfaces, stores each "
        "item as received with its capture time, and links every record by SHA-256 into a "
        "hash chain, at or near the time of each capture, as a regular practice.",
        f"3. The chain head at the case's last record is {head_text}. The SHA-256 of "
        "MANIFEST.sha256 of this packet is: ________________________________________________",
        f"4. Trusted timestamps in the packet: {token_text}.",
        "5. I verified this packet as described on the page How to verify this packet on "
        "____________ (date), and every check passed.",
        "I declare under penalty of perjury under the laws of ____________ that the "
        "foregoing is true and correct.",
        "Signed: ______________________   Date: ____________   Place: ____________",
    ]


def html_closing(case_id: str, head: tuple[int, str] | None, tokens: Sequence[TokenInfo]) -> str:
    steps = "".join(f"<p>{html.escape(line)}</p>" for line in verify_steps(tokens))
    lines = "".join(
        f"<p>{html.escape(line)}</p>" for line in certification_lines(case_id, head, tokens)
    )
    return f"<h2>{VERIFY_TITLE}</h2>{steps}<h2>{html.escape(CERTIFY_TITLE)}</h2>{lines}\n"


def pdf_closing(
    case_id: str,
    head: tuple[int, str] | None,
    tokens: Sequence[TokenInfo],
    styles: tuple[ParagraphStyle, ParagraphStyle],
) -> Iterator[Flowable]:
    heading, body = styles
    yield Paragraph(VERIFY_TITLE, heading)
    for line in verify_steps(tokens):
        yield Paragraph(xml_escape(line), body)
    yield Paragraph(xml_escape(CERTIFY_TITLE), heading)
    for line in certification_lines(case_id, head, tokens):
        yield Paragraph(xml_escape(line), body)
