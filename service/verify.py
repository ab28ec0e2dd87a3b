"""Recompute every evidence hash and the hash chain (``nocontact verify``).

The algorithm is the one in ``docs/evidence.md`` and ``service.evidence``. Records are
read in ``seq`` order a page at a time (keyset pagination), so memory stays bounded
whatever the size of the store. A chain can only be checked from its start, so the
whole chain is always verified; ``case_id`` only says which problems touch that case.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from cryptography import x509
from sqlalchemy import Row, func, select
from sqlalchemy.orm import Session, sessionmaker

from service import chain
from service.evidence import (
    GENESIS_CHAIN,
    chain_sha256,
    format_time,
    record_sha256,
    sha256_hex,
)
from service.models import ChainHead, ChainRecord, Evidence, Violation, ViolationEvidence
from service.record_checks import check_record

PAGE_SIZE = 500
_SHORT = 12  # hex digits shown per hash in a one-line message


@dataclasses.dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with one record (or with a range of missing records)."""

    seq: int | None
    evidence_id: int | None
    platform: str | None
    native_id: str | None
    what: str
    # Set when verifying for a case and the record is part of that case's evidence.
    touches_case: bool = False

    def line(self) -> str:
        where = f"seq {self.seq}" if self.seq is not None else "link"
        if self.evidence_id is not None and self.platform is not None:
            where += f" (evidence {self.evidence_id}, {self.platform} {self.native_id})"
        elif self.evidence_id is not None:
            where += f" (evidence {self.evidence_id})"
        mark = " [case]" if self.touches_case else ""
        return f"{where}{mark}: {self.what}"


@dataclasses.dataclass(slots=True)
class VerifyReport:
    records: int = 0
    head_seq: int = 0
    head_chain: str = GENESIS_CHAIN
    problems: list[Problem] = dataclasses.field(default_factory=list)
    case_id: str | None = None
    case_records: int = 0
    # Chain records that are not platform items (timestamps, coverage, re-checks).
    chain_records: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary_line(self) -> str:
        scope = ""
        if self.case_id is not None:
            scope = f" ({self.case_records} of case {self.case_id})"
        others = f" and {self.chain_records} other chain records" if self.chain_records else ""
        if self.ok:
            state = "chain intact" if self.records or self.chain_records else "chain empty"
            return (
                f"verified {self.records} evidence records{scope}{others}, {state}, "
                f"head {self.head_chain[:_SHORT]}…"
            )
        touching = ""
        if self.case_id is not None:
            count = sum(1 for p in self.problems if p.touches_case)
            touching = f" ({count} touch case {self.case_id})"
        return (
            f"{len(self.problems)} problem(s){touching} in {self.records} evidence "
            f"records{scope}: the evidence chain is NOT intact"
        )

    def problem_lines(self) -> list[str]:
        return [problem.line() for problem in self.problems]


def _short(digest: str) -> str:
    return digest[:_SHORT] + "…"


def canonical_record(row: Any) -> dict[str, Any]:
    """The canonical fields of one stored evidence row: an ``Evidence`` object or any
    row with those attributes."""
    get = row.__getitem__ if isinstance(row, Mapping) else lambda name: getattr(row, name)
    return {
        "seq": get("seq"),
        "platform": get("platform"),
        "native_id": get("native_id"),
        "version": get("version"),
        "url": get("url"),
        "author_handle": get("author_handle"),
        "author_id": get("author_id"),
        "posted_at": format_time(get("posted_at")),
        "captured_at": format_time(get("captured_at")),
        "text": get("text"),
        "raw_sha256": get("raw_sha256"),
    }


_COLUMNS = (
    Evidence.id,
    Evidence.seq,
    Evidence.platform,
    Evidence.native_id,
    Evidence.version,
    Evidence.url,
    Evidence.author_handle,
    Evidence.author_id,
    Evidence.posted_at,
    Evidence.captured_at,
    Evidence.text,
    Evidence.raw,
    Evidence.raw_sha256,
    Evidence.sha256,
    Evidence.chain_sha256,
)


def _iter_rows(session: Session) -> Iterator[Row[Any]]:  # rows of _COLUMNS
    """Every evidence row in seq order, one page in memory at a time."""
    last_seq: int | None = None
    while True:
        query = select(*_COLUMNS).order_by(Evidence.seq).limit(PAGE_SIZE)
        if last_seq is not None:
            query = query.where(Evidence.seq > last_seq)
        page: list[Row[Any]] = list(session.execute(query))
        if not page:
            return
        yield from page
        last_seq = page[-1].seq
        session.expunge_all()


class _ChainWalker:
    """Checks one record after another against the previous link."""

    def __init__(self, report: VerifyReport) -> None:
        self.report = report
        self.expected_seq = 1
        self.prev_chain = GENESIS_CHAIN
        self.last_seq = 0

    def _problem(self, row: Row[Any], what: str) -> None:
        platform, native_id = getattr(row, "platform", None), getattr(row, "native_id", None)
        self.report.problems.append(Problem(row.seq, row.id, platform, native_id, what))

    def check_record(self, row: ChainRecord, problems: list[str]) -> None:
        """A chain record that is not a platform item (service.chain); ``problems`` are
        what its own kind found wrong (a timestamp token that does not verify…)."""
        self.report.chain_records += 1
        after_gap = self._check_position(row)  # type: ignore[arg-type]
        where = f"{row.record} record"
        recomputed = chain.record_sha256(row)
        if recomputed != row.sha256:
            problems.append(
                f"fields changed: stored sha256 {_short(row.sha256)} != recomputed "
                f"{_short(recomputed)}"
            )
        link = chain_sha256(self.prev_chain, row.sha256)
        if not after_gap and link != row.chain_sha256:
            problems.append(
                f"chain broken: stored chain_sha256 {_short(row.chain_sha256)} != "
                f"sha256(previous link + sha256) {_short(link)}"
            )
        for what in problems:
            self.report.problems.append(Problem(row.seq, None, None, None, f"{where}: {what}"))
        self.prev_chain = row.chain_sha256
        self.last_seq = row.seq

    def check(self, row: Row[Any]) -> None:
        self.report.records += 1
        after_gap = self._check_position(row)
        raw_hash = sha256_hex(row.raw)
        if raw_hash != row.raw_sha256:
            self._problem(
                row,
                f"raw payload changed: stored raw_sha256 {_short(row.raw_sha256)} "
                f"!= recomputed {_short(raw_hash)}",
            )
        recomputed = record_sha256(canonical_record(row))
        link_of_recomputed = chain_sha256(self.prev_chain, recomputed)
        if recomputed != row.sha256:
            if not after_gap and link_of_recomputed == row.chain_sha256:
                what = (
                    f"stored sha256 edited: {_short(row.sha256)} != recomputed "
                    f"{_short(recomputed)} (the fields still match the chain link)"
                )
            else:
                what = (
                    f"text or fields changed: stored sha256 {_short(row.sha256)} "
                    f"!= recomputed {_short(recomputed)}"
                )
            self._problem(row, what)
        # After missing records the previous link is unknown: the gap is the problem.
        if not after_gap:
            expected_link = chain_sha256(self.prev_chain, row.sha256)
            if expected_link != row.chain_sha256 and link_of_recomputed != row.chain_sha256:
                self._problem(
                    row,
                    f"chain broken: stored chain_sha256 {_short(row.chain_sha256)} != "
                    f"sha256(previous link + sha256) {_short(expected_link)} "
                    "(this record or the one before it was changed or moved)",
                )
        self.prev_chain = row.chain_sha256
        self.last_seq = row.seq

    def _check_position(self, row: Row[Any]) -> bool:
        """Report records missing before this one; True if there was a gap."""
        seq: int = row.seq
        if seq < self.expected_seq:
            # Only possible for seq < 1, since seq is unique and read in order.
            self._problem(row, f"inserted record: seq {seq} is before the first (1)")
            return True
        gap = seq > self.expected_seq
        if gap:
            first, last = self.expected_seq, seq - 1
            span = f"seq {first}" if first == last else f"seq {first}–{last}"
            self.report.problems.append(
                Problem(first, None, None, None, f"missing record(s) {span}")
            )
        self.expected_seq = seq + 1
        return gap


def _check_head(session: Session, walker: _ChainWalker) -> None:
    report = walker.report
    head = session.get(ChainHead, 1)
    if head is None:
        if report.records:
            report.problems.append(Problem(None, None, None, None, "chain head row is missing"))
        return
    report.head_seq = head.seq
    report.head_chain = head.chain_sha256
    if head.seq != walker.last_seq:
        report.problems.append(
            Problem(
                head.seq,
                None,
                None,
                None,
                f"chain head says seq {head.seq} but the last record is seq "
                f"{walker.last_seq} (records removed from or added at the end)",
            )
        )
    elif head.chain_sha256 != walker.prev_chain:
        report.problems.append(
            Problem(
                head.seq,
                None,
                None,
                None,
                f"chain head mismatch: head {_short(head.chain_sha256)} != last link "
                f"{_short(walker.prev_chain)}",
            )
        )


def _check_links(session: Session) -> list[Problem]:
    """Violations whose evidence row has disappeared (a deletion the seq gap may hide
    when the last record was removed)."""
    query = (
        select(ViolationEvidence.evidence_id, ViolationEvidence.violation_id)
        .outerjoin(Evidence, Evidence.id == ViolationEvidence.evidence_id)
        .where(Evidence.id.is_(None))
        .order_by(ViolationEvidence.evidence_id)
    )
    return [
        Problem(
            None,
            evidence_id,
            None,
            None,
            f"evidence {evidence_id} of violation {violation_id} is missing from the store",
        )
        for evidence_id, violation_id in session.execute(query)
    ]


def _mark_case(session: Session, report: VerifyReport, case_id: str) -> None:
    case_evidence = (
        select(ViolationEvidence.evidence_id)
        .join(Violation, Violation.id == ViolationEvidence.violation_id)
        .where(Violation.case_id == case_id)
    )
    report.case_records = (
        session.scalar(select(func.count()).where(Evidence.id.in_(case_evidence))) or 0
    )
    ids = {p.evidence_id for p in report.problems if p.evidence_id is not None}
    touched: set[int] = set()
    if ids:
        touched = set(
            session.scalars(case_evidence.where(ViolationEvidence.evidence_id.in_(sorted(ids))))
        )
    report.problems = [
        dataclasses.replace(p, touches_case=p.evidence_id in touched)
        if p.evidence_id is not None
        else p
        for p in report.problems
    ]


def _seq(row: Any) -> int:
    seq: int = row.seq
    return seq


def verify_store(
    sessions: sessionmaker[Session],
    case_id: str | None = None,
    *,
    tsa_roots: Sequence[x509.Certificate] = (),
) -> VerifyReport:
    """Recompute raw hashes, record hashes, every chain link and the chain head; check
    timestamp tokens (their signatures up to ``tsa_roots`` when given)."""
    report = VerifyReport(case_id=case_id)
    walker = _ChainWalker(report)
    with sessions() as session:
        rows: Iterator[Any] = heapq.merge(
            _iter_rows(session), chain.iter_records(session), key=_seq
        )
        for row in rows:
            if isinstance(row, ChainRecord):
                walker.check_record(row, check_record(session, row, tsa_roots))
            else:
                walker.check(row)
        _check_head(session, walker)
        report.problems.extend(_check_links(session))
        if case_id is not None:
            _mark_case(session, report, case_id)
    return report
