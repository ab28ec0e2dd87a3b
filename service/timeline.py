"""The timeline record and its one pager, shared by every reader of the store.

``timeline`` (CLI), ``export`` and, later, ``show`` and the web view read violations
through ``iter_entries``: a keyset pager over (first_seen, id), so no cursor stays open
and one page is in memory at a time. Each violation comes back as a typed
``ViolationEntry`` with its ``EvidenceItem``s in chain order; ``to_json`` gives the
shape of DESIGN.md "timeline --format json".

Tables for people (CSV) are written by ``write_csv`` alone: platform text is hostile,
and a spreadsheet runs a cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return as a formula, so such cells get a leading ``'``.
"""

from __future__ import annotations

import csv
import dataclasses
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import IO, Any

from sqlalchemy import exists, select, tuple_
from sqlalchemy.orm import Session

from service.evidence import format_time
from service.models import Evidence, OutboxAlert, Violation, ViolationEvidence

PAGE_SIZE = 500

# A spreadsheet runs a cell starting with these as a formula ("CSV injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclasses.dataclass(frozen=True, slots=True)
class EvidenceItem:
    """One evidence version as it belongs to one violation."""

    evidence_id: int
    seq: int
    platform: str
    native_id: str
    version: int
    kind: str
    url: str | None
    author_handle: str | None
    author_id: str | None
    author_display_name: str | None
    author_created_at: datetime | None
    posted_at: datetime | None
    captured_at: datetime
    watcher: str
    capture_method: str
    text: str
    raw_content_type: str
    raw_sha256: str
    sha256: str
    chain_sha256: str
    # Why this item belongs to the violation.
    reason: str
    # The raw payload, byte-exact; None unless the pager was asked for it (it can be
    # large and the timeline does not show it).
    raw: bytes | None = None

    @property
    def raw_file(self) -> str:
        """Path of the raw payload inside an evidence packet (``raw/…``)."""
        return raw_file_name(self.seq, self.platform, self.native_id, self.raw_content_type)

    def to_json(self) -> dict[str, Any]:
        """The contract's evidence fields, and what recomputes its hash from JSON alone
        (``author`` is ``author_handle``)."""
        return {
            "platform": self.platform,
            "native_id": self.native_id,
            "url": self.url,
            "author": self.author_handle,
            "kind": self.kind,
            "posted_at": format_time(self.posted_at),
            "captured_at": format_time(self.captured_at),
            "sha256": self.sha256,
            "text": self.text,
            "version": self.version,
            "seq": self.seq,
            "chain_sha256": self.chain_sha256,
            "author_id": self.author_id,
            "raw_sha256": self.raw_sha256,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class ViolationEntry:
    """One violation of the timeline with its evidence in chain order."""

    id: str
    case_id: str
    kind: str
    severity: str
    suspected: bool
    score: float | None
    reason: str
    first_seen: datetime
    last_seen: datetime
    in_order_period: bool
    alerted: bool
    evidence: tuple[EvidenceItem, ...]

    @property
    def platform(self) -> str:
        """A violation counts under the platform of its first evidence item."""
        return self.evidence[0].platform if self.evidence else "unknown"

    def to_json(self) -> dict[str, Any]:
        """DESIGN.md "timeline --format json", plus ``in_order_period`` and ``score``."""
        return {
            "id": self.id,
            "case": self.case_id,
            "kind": self.kind,
            "severity": self.severity,
            "suspected": self.suspected,
            "reason": self.reason,
            "first_seen": format_time(self.first_seen),
            "last_seen": format_time(self.last_seen),
            "alerted": self.alerted,
            "in_order_period": self.in_order_period,
            "score": self.score,
            "evidence": [item.to_json() for item in self.evidence],
        }


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_EXTENSIONS = {
    "application/json": "json",
    "application/xml": "xml",
    "text/xml": "xml",
    "application/rss+xml": "xml",
    "application/atom+xml": "xml",
    "message/rfc822": "eml",
    "text/html": "html",
    "text/plain": "txt",
}


def raw_file_name(seq: int, platform: str, native_id: str, content_type: str) -> str:
    """``raw/<seq>-<platform>-<native id>.<ext>``: seq makes it unique, the rest only
    helps a reader, so unsafe characters are replaced and the name is kept short."""
    safe_platform = _UNSAFE.sub("_", platform).strip("._")[:30] or "item"
    safe_id = _UNSAFE.sub("_", native_id).strip("._")[:80] or "item"
    base_type = content_type.split(";", 1)[0].strip().lower()
    ext = _EXTENSIONS.get(base_type, "bin")
    return f"raw/{seq}-{safe_platform}-{safe_id}.{ext}"


# --------------------------------------------------------------------------- the pager


_COLUMNS = (
    Evidence.id,
    Evidence.seq,
    Evidence.platform,
    Evidence.native_id,
    Evidence.version,
    Evidence.kind,
    Evidence.url,
    Evidence.author_handle,
    Evidence.author_id,
    Evidence.author_display_name,
    Evidence.author_created_at,
    Evidence.posted_at,
    Evidence.captured_at,
    Evidence.watcher,
    Evidence.capture_method,
    Evidence.text,
    Evidence.raw_content_type,
    Evidence.raw_sha256,
    Evidence.sha256,
    Evidence.chain_sha256,
)


def iter_entries(
    session: Session,
    *,
    case_id: str | None = None,
    include_outside: bool = False,
    with_raw: bool = False,
    page_size: int = PAGE_SIZE,
) -> Iterator[ViolationEntry]:
    """Violations oldest first (by first_seen, then id), a page at a time.

    ``include_outside`` adds violations outside the order period; ``with_raw`` loads
    each item's raw payload too (the evidence packet needs it)."""
    alerted = (
        exists()
        .where(OutboxAlert.violation_id == Violation.id, OutboxAlert.state == "sent")
        .label("alerted")
    )
    base = select(Violation, alerted).order_by(Violation.first_seen, Violation.id).limit(page_size)
    if case_id is not None:
        base = base.where(Violation.case_id == case_id)
    if not include_outside:
        base = base.where(Violation.in_order_period.is_(True))
    after: tuple[datetime, str] | None = None
    while True:
        query = base
        if after is not None:
            query = query.where(tuple_(Violation.first_seen, Violation.id) > tuple_(*after))
        page = session.execute(query).all()
        if not page:
            return
        evidence = _evidence_for(session, [violation.id for violation, _ in page], with_raw)
        entries = [_entry(violation, bool(was), evidence) for violation, was in page]
        after = (entries[-1].first_seen, entries[-1].id)
        # Drop the page's ORM objects so that memory does not grow with the case.
        session.expunge_all()
        yield from entries


def _entry(
    violation: Violation, alerted: bool, evidence: dict[str, list[EvidenceItem]]
) -> ViolationEntry:
    return ViolationEntry(
        id=violation.id,
        case_id=violation.case_id,
        kind=violation.kind,
        severity=violation.severity,
        suspected=violation.suspected,
        score=violation.score,
        reason=violation.reason,
        first_seen=violation.first_seen,
        last_seen=violation.last_seen,
        in_order_period=violation.in_order_period,
        alerted=alerted,
        evidence=tuple(evidence.get(violation.id, ())),
    )


def _evidence_for(
    session: Session, violation_ids: list[str], with_raw: bool
) -> dict[str, list[EvidenceItem]]:
    columns = [*_COLUMNS, Evidence.raw] if with_raw else list(_COLUMNS)
    query = (
        select(ViolationEvidence.violation_id, ViolationEvidence.reason.label("link"), *columns)
        .join(Evidence, Evidence.id == ViolationEvidence.evidence_id)
        .where(ViolationEvidence.violation_id.in_(violation_ids))
        .order_by(Evidence.seq)
    )
    grouped: dict[str, list[EvidenceItem]] = {}
    for row in session.execute(query):
        values = row._asdict()
        violation_id = values.pop("violation_id")
        values["evidence_id"] = values.pop("id")
        values["reason"] = values.pop("link")
        grouped.setdefault(violation_id, []).append(EvidenceItem(**values))
    return grouped


# --------------------------------------------------------------------------- CSV


Column = tuple[str, Callable[[ViolationEntry, EvidenceItem], object]]


def safe_cell(value: object) -> object:
    """A cell a spreadsheet shows as text: a leading ``'`` before a formula start.
    Only strings can carry one; numbers and booleans pass unchanged."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


class CsvTable:
    """A CSV table with one row per evidence item of each violation, every cell
    guarded by ``safe_cell``; violations are added as they are read."""

    def __init__(self, out: IO[str], columns: Sequence[Column]) -> None:
        self._columns = columns
        self._writer = csv.writer(out)
        self._writer.writerow([name for name, _ in columns])

    def add(self, entry: ViolationEntry) -> None:
        for item in entry.evidence:
            self._writer.writerow([safe_cell(pick(entry, item)) for _, pick in self._columns])


def write_csv(out: IO[str], columns: Sequence[Column], entries: Iterable[ViolationEntry]) -> None:
    table = CsvTable(out, columns)
    for entry in entries:
        table.add(entry)


def _time(value: datetime | None) -> str:
    return format_time(value) or ""


# ``nocontact timeline --format csv``: the contract's fields, one row per item.
TIMELINE_CSV: tuple[Column, ...] = (
    ("violation_id", lambda v, _: v.id),
    ("case", lambda v, _: v.case_id),
    ("kind", lambda v, _: v.kind),
    ("severity", lambda v, _: v.severity),
    ("suspected", lambda v, _: v.suspected),
    ("in_order_period", lambda v, _: v.in_order_period),
    ("first_seen", lambda v, _: _time(v.first_seen)),
    ("last_seen", lambda v, _: _time(v.last_seen)),
    ("alerted", lambda v, _: v.alerted),
    ("reason", lambda v, _: v.reason),
    ("platform", lambda _, e: e.platform),
    ("native_id", lambda _, e: e.native_id),
    ("url", lambda _, e: e.url),
    ("author", lambda _, e: e.author_handle),
    ("item_kind", lambda _, e: e.kind),
    ("posted_at", lambda _, e: _time(e.posted_at)),
    ("captured_at", lambda _, e: _time(e.captured_at)),
    ("version", lambda _, e: e.version),
    ("sha256", lambda _, e: e.sha256),
    ("text", lambda _, e: e.text),
)

# ``evidence.csv`` of the packet: everything but the raw bytes (see raw_file).
PACKET_CSV: tuple[Column, ...] = (
    ("violation_id", lambda v, _: v.id),
    ("violation_kind", lambda v, _: v.kind),
    ("severity", lambda v, _: v.severity),
    ("suspected", lambda v, _: v.suspected),
    ("score", lambda v, _: v.score),
    ("in_order_period", lambda v, _: v.in_order_period),
    ("alerted", lambda v, _: v.alerted),
    ("violation_reason", lambda v, _: v.reason),
    ("first_seen", lambda v, _: _time(v.first_seen)),
    ("last_seen", lambda v, _: _time(v.last_seen)),
    ("seq", lambda _, e: e.seq),
    ("platform", lambda _, e: e.platform),
    ("native_id", lambda _, e: e.native_id),
    ("version", lambda _, e: e.version),
    ("kind", lambda _, e: e.kind),
    ("url", lambda _, e: e.url),
    ("author_handle", lambda _, e: e.author_handle),
    ("author_id", lambda _, e: e.author_id),
    ("author_display_name", lambda _, e: e.author_display_name),
    ("author_created_at", lambda _, e: _time(e.author_created_at)),
    ("posted_at", lambda _, e: _time(e.posted_at)),
    ("captured_at", lambda _, e: _time(e.captured_at)),
    ("capture_method", lambda _, e: e.capture_method),
    ("watcher", lambda _, e: e.watcher),
    ("evidence_reason", lambda _, e: e.reason),
    ("text", lambda _, e: e.text),
    ("sha256", lambda _, e: e.sha256),
    ("chain_sha256", lambda _, e: e.chain_sha256),
    ("raw_sha256", lambda _, e: e.raw_sha256),
    ("raw_file", lambda _, e: e.raw_file),
)
