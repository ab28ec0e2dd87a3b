"""Report sections about the packet's own trustworthiness (#14): the verification at
export, per-record flags and notes, and the trusted timestamps with the command that
checks each one. Kept apart from ``service.report`` so that the report's layout and
these facts change independently.

Everything shown here is nocontact's own output (hashes, times, masked URLs, verify
lines naming platform ids), escaped all the same.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Iterator, Mapping
from xml.sax.saxutils import escape as xml_escape

from reportlab.lib.styles import ParagraphStyle
from reportlab.platypus import Flowable, Paragraph

from service.coverage import Period
from service.evidence import format_time
from service.export_check import FAILED, Verification
from service.packet_timestamps import TokenInfo
from service.report_judge import ViolationLog


@dataclasses.dataclass(frozen=True, slots=True)
class PacketFacts:
    """What the export knows about the packet beyond the violations."""

    verification: Verification | None = None
    tokens: tuple[TokenInfo, ...] = ()
    # evidence seq → "existed by … (token …)"
    timestamp_notes: Mapping[int, str] = dataclasses.field(default_factory=dict)
    # The case's watchers' monitoring periods and gaps (service.coverage).
    coverage: tuple[Period, ...] = ()
    # evidence seq → what a re-check found (service.deletions)
    recheck_notes: Mapping[int, str] = dataclasses.field(default_factory=dict)
    # The violation log and numbering (service.report_judge); None: plain numbering.
    log: ViolationLog | None = None
    # The chain link at the packet's last seq, named in the certification.
    head: tuple[int, str] | None = None

    def record_lines(self, seq: int) -> tuple[list[str], list[str]]:
        """(flags, notes) shown with the evidence record ``seq``."""
        flag = self.verification.record_flag(seq) if self.verification else None
        flags = [line for line in (flag, self.recheck_notes.get(seq)) if line]
        note = self.timestamp_notes.get(seq)
        return flags, ([f"Trusted timestamp: {note}"] if note else [])


TIMESTAMPS_TITLE = "Trusted timestamps (RFC 3161)"
TIMESTAMPS_INTRO = (
    "Each token below is an independent timestamp authority's signature over the chain "
    "head (the 64 hex digits in the head file). It proves that the head, and so every "
    "record up to it, existed at the token's time, whatever this computer's clock said. "
    "Check a token offline with the command shown, run in the packet's folder."
)


def html_verification(verification: Verification | None) -> str:
    if verification is None:
        return ""
    if verification.ok:
        return f"<p>Verification at export: {html.escape(verification.summary)}</p>"
    problems = "".join(f"<li>{html.escape(line)}</li>" for line in verification.problems)
    return (
        f'<div class="flag"><p><strong>{FAILED}</strong>: '
        f"{html.escape(verification.summary)}</p><ul>{problems}</ul></div>"
    )


def html_record(facts: PacketFacts, seq: int) -> str:
    flags, notes = facts.record_lines(seq)
    return "".join(f'<p class="flag"><strong>{html.escape(f)}</strong></p>' for f in flags) + (
        "".join(f"<p>{html.escape(n)}</p>" for n in notes)
    )


def html_timestamps(facts: PacketFacts) -> str:
    if not facts.tokens:
        return ""
    rows = "".join(
        f"<tr><td>{token.seq}</td><td>{html.escape(token.tsa)}</td>"
        f"<td>{html.escape(token.gen_time)}</td><td>{token.stamped_seq}</td>"
        f"<td><code>{html.escape(token.verify_command())}</code></td></tr>"
        for token in facts.tokens
    )
    return (
        f"<h2>{html.escape(TIMESTAMPS_TITLE)}</h2><p>{html.escape(TIMESTAMPS_INTRO)}</p>"
        "<table><tr><th>Token seq</th><th>Authority</th><th>Time (UTC)</th>"
        f"<th>Head seq</th><th>Check</th></tr>{rows}</table>\n"
    )


def pdf_verification(
    verification: Verification | None, flag: ParagraphStyle, body: ParagraphStyle
) -> Iterator[Flowable]:
    if verification is None:
        return
    if verification.ok:
        yield Paragraph(xml_escape(f"Verification at export: {verification.summary}"), body)
        return
    yield Paragraph(f"<b>{FAILED}</b>: {xml_escape(verification.summary)}", flag)
    for line in verification.problems:
        yield Paragraph(xml_escape(line), flag)


def pdf_timestamps(
    facts: PacketFacts, heading: ParagraphStyle, body: ParagraphStyle, mono: ParagraphStyle
) -> Iterator[Flowable]:
    if not facts.tokens:
        return
    yield Paragraph(xml_escape(TIMESTAMPS_TITLE), heading)
    yield Paragraph(xml_escape(TIMESTAMPS_INTRO), body)
    for token in facts.tokens:
        yield Paragraph(
            xml_escape(
                f"Token seq {token.seq}: {token.tsa}, {token.gen_time} UTC, "
                f"chain head at seq {token.stamped_seq}"
            ),
            body,
        )
        yield Paragraph(xml_escape(token.verify_command()), mono)


COVERAGE_TITLE = "Monitoring coverage"
COVERAGE_INTRO = (
    "When each source was watched, and every gap with its reason. No violation can have "
    "been seen during a gap: silence in a gap does not mean there was no contact. Gaps "
    "are shaded in the chart above."
)


def coverage_lines(facts: PacketFacts) -> list[tuple[str, list[tuple[bool, str]]]]:
    """(watcher, [(is_gap, line)]) per watcher, in time order."""
    by_watcher: dict[str, list[tuple[bool, str]]] = {}
    for period in facts.coverage:
        span = f"{format_time(period.start)} – {format_time(period.end)}"
        if period.status == "gap":
            line = f"GAP {span}: {period.reason or 'reason unknown'}"
        else:
            line = f"watched {span}" + ("" if period.chained else " (up to the last poll)")
        by_watcher.setdefault(period.watcher, []).append((period.status == "gap", line))
    return sorted(by_watcher.items())


def html_coverage(facts: PacketFacts) -> str:
    parts = [f"<h2>{COVERAGE_TITLE}</h2><p>{html.escape(COVERAGE_INTRO)}</p>"]
    watchers = coverage_lines(facts)
    if not watchers:
        parts.append("<p>No monitoring coverage has been recorded for this case yet.</p>")
    for watcher, lines in watchers:
        flagged = ' class="flag"'
        items = "".join(
            f"<li{flagged if gap else ''}>{html.escape(line)}</li>" for gap, line in lines
        )
        parts.append(f"<h3>Source {html.escape(watcher)}</h3><ul>{items}</ul>")
    return "".join(parts) + "\n"


def pdf_coverage(
    facts: PacketFacts, heading: ParagraphStyle, body: ParagraphStyle, flag: ParagraphStyle
) -> Iterator[Flowable]:
    yield Paragraph(COVERAGE_TITLE, heading)
    yield Paragraph(xml_escape(COVERAGE_INTRO), body)
    watchers = coverage_lines(facts)
    if not watchers:
        yield Paragraph("No monitoring coverage has been recorded for this case yet.", body)
    for watcher, lines in watchers:
        yield Paragraph(f"<b>Source {xml_escape(watcher)}</b>", body)
        for gap, line in lines:
            yield Paragraph(xml_escape(line), flag if gap else body)
