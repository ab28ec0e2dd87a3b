"""What the CLI prints for people: the timeline as one line per violation, one
violation whole, and the parsing of ``--since``. Pure functions of the records."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from service.evidence import format_time
from service.marks import Dismissal
from service.show import Detail
from service.timeline import EvidenceItem, ViolationEntry
from watchers.base import _parse_duration

SHORT_ID = 8
DATE_HINT = "write dates as YYYY-MM-DD, e.g. 2026-03-01, or a duration like 7d or 12h"
_DAYS = re.compile(r"^\s*(\d+)\s*d(ays?)?\s*$")


def parse_since(text: str, now: datetime, zone: ZoneInfo) -> datetime:
    """``--since``: a date (midnight in ``zone``) or a duration back from ``now``."""
    try:
        return datetime.combine(date.fromisoformat(text.strip()), time(), zone).astimezone(UTC)
    except ValueError:
        pass
    days = _DAYS.match(text)
    if days:
        return now - timedelta(days=int(days.group(1)))
    try:
        span = _parse_duration(text)
    except ValueError:
        raise ValueError(f"--since {text!r}: {DATE_HINT}") from None
    assert isinstance(span, timedelta)  # noqa: S101 - _parse_duration returns one
    return now - span


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    if width <= 0:
        return ""
    return text if len(text) <= width else text[: width - 1] + "…"


# (title, width); the reason takes what is left of the line.
_COLUMNS = (("ID", SHORT_ID), ("WHEN (local)", 16), ("KIND", 15), ("PLATFORM", 8),
            ("AUTHOR", 12))  # fmt: skip


def timeline_lines(
    entries: Iterable[ViolationEntry],
    dismissed: Mapping[str, Dismissal],
    zones: Mapping[str, ZoneInfo],
    width: int,
) -> list[str]:
    """One line per violation, never wider than ``width`` (80 on a pipe); a wider
    terminal leaves more room for the reason."""
    fixed = sum(w + 1 for _, w in _COLUMNS)
    reason_width = max(10, width - fixed)
    header = " ".join(title.ljust(w) for title, w in _COLUMNS) + " REASON"
    lines = [header[:width]]
    for entry in entries:
        zone = zones.get(entry.case_id, ZoneInfo("UTC"))
        authors = sorted({e.author_handle for e in entry.evidence if e.author_handle})
        flags = []
        if entry.id in dismissed:
            flags.append("[dismissed]")
        if not entry.in_order_period:
            flags.append("[outside order]")
        if entry.suspected:
            flags.append("[suspected]")
        cells = (
            entry.id[:SHORT_ID],
            entry.first_seen.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
            entry.kind,
            entry.platform,
            ", ".join(authors) or "?",
        )
        row = " ".join(_cut(cell, w).ljust(w) for cell, (_, w) in zip(cells, _COLUMNS, strict=True))
        lines.append(f"{row} {_cut(' '.join([*flags, entry.reason]), reason_width)}")
    return lines


def show_text(detail: Detail, zone: ZoneInfo) -> str:
    """Everything about one violation, as plain text (nothing cut)."""
    entry = detail.entry

    def when(value: datetime | None) -> str:
        if value is None:
            return "unknown"
        local = value.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")
        return f"{format_time(value)} ({local})"

    out = [
        f"Violation {entry.id}",
        f"  case:       {entry.case_id}",
        f"  kind:       {entry.kind}{' (suspected)' if entry.suspected else ''}, "
        f"severity {entry.severity}"
        + (f", score {entry.score:.0f}" if entry.score is not None else ""),
        f"  reason:     {entry.reason}",
        f"  first seen: {when(entry.first_seen)}",
        f"  last seen:  {when(entry.last_seen)}",
        f"  in order period: {'yes' if entry.in_order_period else 'no (kept, not a violation)'}",
    ]
    if detail.dismissal is not None:
        d = detail.dismissal
        out.append(f"  DISMISSED by {d.by} at {when(d.at)}: {d.reason} (chain record {d.seq})")
    for number, item in enumerate(entry.evidence, 1):
        out += _evidence_text(number, item, when)
    out += _deletions_text(detail, when)
    out += ["", "Alerts:" if detail.deliveries else "Alerts: none queued"]
    for delivery in detail.deliveries:
        out.append(
            f"  route {delivery.route}: {delivery.state}"
            + (f" at {when(delivery.sent_at)}" if delivery.sent_at else "")
            + (f"; last error: {delivery.last_error}" if delivery.last_error else "")
        )
        for at, target, ok, error in delivery.attempts:
            out.append(f"    {format_time(at)} {target}: {'delivered' if ok else 'FAILED'}"
                       + (f": {error}" if error else ""))  # fmt: skip
    if detail.content_views:
        out += ["", "Content viewed through the web view:"]
        out += [f"  {when(view.at)} {view.username}: {view.action}"
                + (f" (chain record {view.evidence_seq})" if view.evidence_seq else "")
                for view in detail.content_views]  # fmt: skip
    return "\n".join(out)


def _deletions_text(detail: Detail, when: Callable[[datetime | None], str]) -> list[str]:
    """The items found gone since capture (a re-check or the platform's delete event)."""
    if not detail.deletions:
        return []
    out = ["", "Found gone since capture:"]
    for gone in detail.deletions:
        start, end = (datetime.fromisoformat(t) for t in gone.deleted_between)
        out += [
            f"  {gone.platform} {gone.native_id}: {gone.outcome.upper()} ({gone.detail})",
            f"    between {when(start)}",
            f"    and     {when(end)} (chain record {gone.seq})",
        ]
    return out


def _evidence_text(
    number: int, item: EvidenceItem, when: Callable[[datetime | None], str]
) -> list[str]:
    return [
        "",
        f"Evidence {number}: {item.platform} {item.native_id} version {item.version} "
        f"(chain record {item.seq})",
        f"  author:   {item.author_handle or 'unknown'}"
        + (f" ({item.author_display_name})" if item.author_display_name else ""),
        f"  kind:     {item.kind}",
        f"  url:      {item.url or 'none'}",
        f"  posted:   {when(item.posted_at)}",
        f"  captured: {when(item.captured_at)} via {item.capture_method or item.watcher}",
        f"  why:      {item.reason}",
        f"  sha256:   {item.sha256}",
        f"  chain:    {item.chain_sha256}",
        f"  raw:      {item.raw_sha256} ({item.raw_content_type})",
        "  text:",
        *(f"    {line}" for line in (item.text or "(no text)").splitlines()),
    ]


class LazyProgress:
    """A progress bar that appears with the first step, so an export refused at once
    prints its error alone."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._progress: Progress | None = None
        self._task: Any = None

    def advance(self, done: int, total: int) -> None:
        if self._progress is None:
            self._progress = Progress(
                TextColumn("Building the evidence packet"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self._console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("export", total=total)
        self._progress.update(self._task, completed=done, total=total)

    def __enter__(self) -> LazyProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def watcher_state_text(view: Any) -> str:
    if view is None:
        return "not polled yet"
    if view.disabled_reason:
        return f"DISABLED: {view.disabled_reason}"
    parts: list[str] = []
    if view.consecutive_failures:
        parts.append(f"FAILING ({view.consecutive_failures} in a row): {view.last_error}")
    else:
        parts.append("ok")
    parts.extend(view.status_notes or [])
    return "; ".join(parts)


def when_utc(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value else "never"


def duration_text(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
