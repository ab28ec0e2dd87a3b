"""The evidence store: evidence with its hash chain, the violation timeline, the alert
outbox and the watchers' state.

Writes of one poll happen in one transaction (``Store.record_poll``): evidence rows,
the violations they join or open, and the alerts the planner (``service.planner``)
queues about them are committed together, or not at all. Appending to the hash chain
locks the single ``chain_head`` row (``SELECT … FOR UPDATE`` on PostgreSQL,
``BEGIN IMMEDIATE`` on SQLite), so replicas append one after another and never store
the same item twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.orm import Session

from service import deletions, evidence
from service.coverage import Watched, record_success
from service.db import StoreError, database_errors, session_factory
from service.evidence_rows import (
    ItemKey,
    StoredItem,
    evidence_ids,
    evidence_row,
    observation_content_sha256,
    stored_items,
)
from service.grouping import NewEvidence, PollWrite
from service.hits import Hit
from service.marks import MARK_PLATFORM, MarkKind, mark_native_id, mark_row
from service.models import (
    Case,
    ChainHead,
    Evidence,
    OutboxAlert,
    WatcherState,
    utcnow,
)
from service.outbox import dialect_insert, insert_ignore
from service.planner import AlertPlanner, WatcherFailure, episode
from service.retention import remember_markers, unmarked
from service.settings import CaseSettings
from service.timeline import ViolationEntry, iter_entries
from watchers.base import Gone, Observation

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- views returned


@dataclasses.dataclass(frozen=True, slots=True)
class WatcherStateView:
    """A detached copy of one watcher's state row."""

    name: str
    type: str
    cursor: dict[str, Any]
    consecutive_failures: int
    failing_alerted: bool
    disabled_reason: str | None
    last_poll_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    status_notes: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class RecordResult:
    """What one ``record_poll`` stored.

    ``new_evidence`` counts first versions of items, ``new_versions`` later versions
    (edits); ``joined_violations`` counts violations that existed before this poll
    and gained evidence. ``recovered`` is True when the watcher had been failing and
    its "failing" alert had gone out, so a "recovered" alert is due.
    """

    new_evidence: int = 0
    new_versions: int = 0
    new_violations: int = 0
    joined_violations: int = 0
    queued_alerts: int = 0
    recovered: bool = False
    # Of new_violations, those outside the order period: kept, but not violations.
    new_outside_period: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class PollRecord:
    """One successful poll of one watcher, as ``Store.record_poll`` stores it."""

    watcher: str
    watcher_type: str
    observations: Sequence[Observation]
    # An index into ``observations`` → that observation's hits.
    hits: Mapping[int, Sequence[Hit]]
    # The watcher's new cursor and status notes.
    state: Mapping[str, Any]
    status_notes: Sequence[str]
    now: datetime
    # Captured items the platform announced deleted (chained by service.deletions).
    gone: Sequence[Gone] = ()
    # Markers of the uninvolved observations (service.retention), and the poll's
    # coverage (service.coverage): stored in the same transaction, so a poll costs the
    # database one commit (#15).
    markers: Sequence[str] = ()
    watched: Watched | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Screened:
    """A poll's observations as ``Store.screen`` found them."""

    fresh: list[Observation]  # not stored yet, not remembered as uninvolved
    held: frozenset[tuple[str, str]]  # (platform, native id) of items with evidence


@dataclasses.dataclass(frozen=True, slots=True)
class FailureView:
    consecutive_failures: int
    failing_alerted: bool
    disabled_reason: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class OutboxSummary:
    pending: int
    due_now: int
    # Pending alerts whose delivery has failed at least once.
    failing: int
    oldest_pending_at: datetime | None


# ---------------------------------------------------------------- content identity


def _require_aware(now: datetime) -> None:
    # A naive time would be read as local time and silently shift every evidence time.
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("the store needs aware UTC datetimes, got a naive one")


def _unstored(
    observations: Sequence[Observation], stored: Mapping[ItemKey, StoredItem]
) -> list[Observation]:
    """The observations whose content is not among ``stored``, in order, without repeats."""
    fresh: list[Observation] = []
    seen: set[tuple[str, str, str]] = set()
    for obs in observations:
        content = observation_content_sha256(obs)
        item = stored.get((obs.platform, obs.native_id))
        key = (obs.platform, obs.native_id, content)
        if (item is None or content not in item.contents) and key not in seen:
            seen.add(key)
            fresh.append(obs)
    return fresh


def _state_view(row: WatcherState) -> WatcherStateView:
    return WatcherStateView(
        name=row.name,
        type=row.type,
        cursor=dict(row.cursor or {}),
        consecutive_failures=row.consecutive_failures,
        failing_alerted=row.failing_alerted,
        disabled_reason=row.disabled_reason,
        last_poll_at=row.last_poll_at,
        last_success_at=row.last_success_at,
        last_error=row.last_error,
        last_error_at=row.last_error_at,
        status_notes=tuple(row.status_notes or ()),
    )


# Cases per executemany batch of ``Store.sync_cases`` (each row holds a case's definition).
_CASES_PER_BATCH = 1000


def _case_values(case: CaseSettings, now: datetime) -> dict[str, Any]:
    return {
        "id": case.id,
        "reference": case.order.reference,
        "effective": case.order.effective,
        "expires": case.order.expires,
        "definition": case.model_dump(mode="json"),
        "updated_at": now,
    }


# ---------------------------------------------------------------- the store


class Store:
    """All reads and writes of the evidence store (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        *,
        cases: Iterable[CaseSettings] = (),
        planner: AlertPlanner | None = None,
    ) -> None:
        """``cases`` are the configured cases (violations are grouped by their
        settings); ``planner`` queues the alerts of each change, and without one
        nothing is queued (the read-only commands and benchmarks)."""
        self.engine = engine
        self._cases = {case.id: case for case in cases}
        self._planner = planner
        self._write = session_factory(engine)
        self._read = session_factory(engine, readonly=True)
        # Case rows known to be stored (synced or ensured by a committed transaction).
        self._stored_cases: set[str] = set()

    def _errors(self) -> contextlib.AbstractContextManager[None]:
        return database_errors(self.engine)

    # -- config

    def sync_cases(self, cases: Sequence[CaseSettings], now: datetime) -> None:
        """Insert or update the Case rows from config (config is the source of truth)."""
        _require_aware(now)
        # One upsert statement for all the cases (executemany), in id order so that
        # replicas starting together lock rows in the same order: a clinic's 10,000
        # cases were 10,000 statements at every start (#15).
        rows = sorted((_case_values(case, now) for case in cases), key=lambda row: row["id"])
        with self._errors(), self._write.begin() as session:
            if rows:
                statement = dialect_insert(session, Case.__table__)  # type: ignore[arg-type]
                update = {key: statement.excluded[key] for key in rows[0] if key != "id"}
                upsert = statement.on_conflict_do_update(index_elements=["id"], set_=update)
                for start in range(0, len(rows), _CASES_PER_BATCH):
                    session.execute(upsert, rows[start : start + _CASES_PER_BATCH])
        self._stored_cases.update(case.id for case in cases)

    # -- watchers

    def watcher_state(self, name: str) -> WatcherStateView | None:
        with self._errors(), self._read() as session:
            row = session.get(WatcherState, name)
            return _state_view(row) if row is not None else None

    def watcher_statuses(self) -> list[WatcherStateView]:
        with self._errors(), self._read() as session:
            rows = session.scalars(select(WatcherState).order_by(WatcherState.name))
            return [_state_view(row) for row in rows]

    def _locked_state(self, session: Session, name: str, watcher_type: str) -> WatcherState:
        row = session.get(WatcherState, name, with_for_update=True, populate_existing=True)
        if row is None:
            # The first poll of this watcher; another replica may be adding it too.
            insert_ignore(
                session,
                WatcherState.__table__,  # type: ignore[arg-type]
                {
                    "name": name,
                    "type": watcher_type,
                    "cursor": {},
                    "consecutive_failures": 0,
                    "failing_alerted": False,
                    "status_notes": [],
                },
                "name",
            )
            row = session.get(WatcherState, name, with_for_update=True, populate_existing=True)
        if row is None:  # inserted just above; only a broken database lands here
            raise StoreError(f"watcher state row {name!r} vanished")
        row.type = watcher_type
        return row

    def record_failure(
        self, watcher: str, watcher_type: str, message: str, now: datetime, *, disable: bool
    ) -> FailureView:
        """Count a failed poll, and queue the health alert it calls for in the same
        transaction; the cursor stays, so nothing is skipped on recovery."""
        _require_aware(now)
        with self._errors(), self._write.begin() as session:
            row = self._locked_state(session, watcher, watcher_type)
            row.consecutive_failures += 1
            row.last_poll_at = now
            row.last_error = message
            row.last_error_at = now
            if disable:
                row.disabled_reason = message
            if self._planner is not None:
                failure = WatcherFailure(
                    watcher=watcher,
                    message=message,
                    consecutive_failures=row.consecutive_failures,
                    failing_alerted=row.failing_alerted,
                    disabled=disable,
                    episode=episode(row.last_success_at),
                )
                if self._planner.watcher_failed(session, failure, now):
                    row.failing_alerted = True
            return FailureView(row.consecutive_failures, row.failing_alerted, row.disabled_reason)

    def record_service_error(self, watcher: str, message: str, kind: str, now: datetime) -> int:
        """Tell the operator, once per ``kind``, that storing or matching a watcher's
        poll failed (the watcher's own state is left alone: it did not fail)."""
        _require_aware(now)
        if self._planner is None:
            return 0
        with self._errors(), self._write.begin() as session:
            return self._planner.queue_health(
                session,
                watcher=watcher,
                event="service_error",
                message=message,
                episode=kind,
                now=now,
            )

    def tick(self, now: datetime) -> int:
        """Queue what the clock calls for (daily digests), in one transaction."""
        _require_aware(now)
        if self._planner is None:
            return 0
        with self._errors(), self._write.begin() as session:
            return self._planner.tick(session, now)

    # -- observations

    def new_observations(self, observations: Sequence[Observation]) -> list[Observation]:
        """The observations whose content is not stored yet, in order, without repeats."""
        if not observations:
            return []
        with self._errors(), self._read() as session:
            stored = stored_items(session, ((o.platform, o.native_id) for o in observations))
        return _unstored(observations, stored)

    def screen(self, observations: Sequence[Observation]) -> Screened:
        """``new_observations`` without those remembered as uninvolved (service.retention),
        and which items have evidence already, read in one transaction (#15)."""
        if not observations:
            return Screened([], frozenset())
        with self._errors(), self._read() as session:
            stored = stored_items(session, ((o.platform, o.native_id) for o in observations))
            fresh = unmarked(session, _unstored(observations, stored))
        return Screened(fresh, frozenset(stored))

    def record_poll(self, poll: PollRecord) -> RecordResult:
        """Store one successful poll in one transaction: new evidence (chained), the
        violations its hits open or join, the alerts the planner queues for them and
        for a recovered watcher, and the watcher's new state.

        Hits of observations already stored are ignored (they were handled when first
        stored).
        """
        now = poll.now
        _require_aware(now)
        with self._errors(), self._write.begin() as session:
            # Markers (sorted), then the coverage row, then the chain head: the order in
            # which every transaction takes these locks, so replicas never deadlock.
            remember_markers(session, poll.markers, now)
            if poll.watched is not None:
                record_success(session, poll.watcher, poll.watched, now)
            stored, fresh = self._append_evidence(
                session, poll.watcher, poll.observations, now, linked=poll.hits.keys()
            )
            deletions.record_gone(session, poll.watcher, poll.gone, now)
            write = PollWrite(session, self._cases, now)
            cases = self._ensure_cases(session, poll.hits, fresh, now)
            write.add_hits(poll.hits, fresh)
            queued = 0
            if self._planner is not None:
                queued = self._planner.violations_changed(session, write.changes(), now)
            row = self._locked_state(session, poll.watcher, poll.watcher_type)
            recovered = row.consecutive_failures > 0 and row.failing_alerted
            if recovered and self._planner is not None:
                self._planner.watcher_recovered(
                    session, poll.watcher, episode(row.last_success_at), now
                )
            _record_success(row, poll)
            versions = sum(1 for version in stored if version > 1)
            result = RecordResult(
                new_evidence=len(stored) - versions,
                new_versions=versions,
                new_violations=len(write.created),
                joined_violations=len(write.joined),
                queued_alerts=queued,
                recovered=recovered,
                new_outside_period=sum(
                    1 for violation in write.created.values() if not violation.in_order_period
                ),
            )
        self._stored_cases.update(cases)  # committed now
        return result

    def _append_evidence(
        self,
        session: Session,
        watcher: str,
        observations: Sequence[Observation],
        now: datetime,
        linked: Container[int] | None = None,
    ) -> tuple[list[int], list[NewEvidence]]:
        """Insert the observations not stored yet; returns their versions, and handles
        of those of them whose index is in ``linked`` (all when None): what violations
        will link to."""
        if not observations:
            return [], []
        head = session.scalars(
            select(ChainHead).where(ChainHead.id == 1).with_for_update()
        ).one_or_none()
        if head is None:
            raise StoreError("the evidence chain head is missing; was the database migrated?")
        # Checked only now, under the lock: another replica may just have stored them.
        stored = stored_items(session, ((o.platform, o.native_id) for o in observations))
        captured_at = evidence.truncate_to_second(now)
        seq, chain = head.seq, head.chain_sha256
        rows: list[dict[str, Any]] = []
        hit_rows: list[tuple[int, dict[str, Any]]] = []
        for index, obs in enumerate(observations):
            content = observation_content_sha256(obs)
            item = stored.setdefault((obs.platform, obs.native_id), StoredItem(set(), 0))
            if content in item.contents:
                continue
            item.contents.add(content)
            item.max_version += 1
            seq += 1
            row = evidence_row(obs, watcher, item.max_version, seq, captured_at)
            row["content_sha256"] = content
            row["chain_sha256"] = chain = evidence.chain_sha256(chain, row["sha256"])
            rows.append(row)
            if linked is None or index in linked:
                hit_rows.append((index, row))
        if not rows:
            return [], []
        head.seq, head.chain_sha256 = seq, chain
        # A Core executemany without RETURNING runs as the driver's own executemany
        # (SQLite's C loop, psycopg's pipeline of one prepared statement); an ordered
        # RETURNING made SQLAlchemy send SQLite one INSERT per row and psycopg a long
        # multi-VALUES text it parses again every poll (#15). Each row's seq is known, so
        # the ids the violation links need are read back by seq, in one query.
        session.execute(insert(Evidence.__table__), rows)  # type: ignore[arg-type]
        ids = evidence_ids(session, [row["seq"] for _, row in hit_rows])
        fresh = [
            NewEvidence(
                index=index,
                evidence_id=ids[row["seq"]],
                platform=row["platform"],
                fingerprint=row["text_fingerprint"] if row["text"].strip() else None,
                moment=row["posted_at"] or captured_at,
            )
            for index, row in hit_rows
        ]
        return [row["version"] for row in rows], fresh

    def _ensure_cases(
        self,
        session: Session,
        hits: Mapping[int, Sequence[Hit]],
        fresh: Sequence[NewEvidence],
        now: datetime,
    ) -> set[str]:
        """Violations refer to Case rows; add any the caller has not synced yet. Returns
        the ids ensured, which the caller remembers once committed (a Case row is never
        deleted, so this store asks only once per case)."""
        wanted = {hit.case_id for item in fresh for hit in hits.get(item.index, ())}
        ensured: set[str] = set()
        for case_id in sorted(wanted - self._stored_cases):
            case = self._cases.get(case_id)
            if case is not None:
                insert_ignore(session, Case.__table__, _case_values(case, now), "id")  # type: ignore[arg-type]
                ensured.add(case_id)
        return ensured

    # -- reading

    def timeline(
        self, case_id: str | None = None, include_outside: bool = False
    ) -> list[dict[str, Any]]:
        """Violations, oldest first, in the shape of DESIGN.md "timeline --format json"
        (``ViolationEntry.to_json``)."""
        return list(self.iter_timeline(case_id, include_outside))

    def iter_timeline(
        self, case_id: str | None = None, include_outside: bool = False, *, page_size: int = 500
    ) -> Iterator[dict[str, Any]]:
        """``timeline`` a page of violations at a time, for big stores."""
        for entry in self.entries(case_id, include_outside, page_size=page_size):
            yield entry.to_json()

    def entries(
        self, case_id: str | None = None, include_outside: bool = False, *, page_size: int = 500
    ) -> Iterator[ViolationEntry]:
        """The timeline's typed entries, through the one pager (``service.timeline``)."""
        with self._errors(), self._read() as session:
            yield from iter_entries(
                session, case_id=case_id, include_outside=include_outside, page_size=page_size
            )

    def record_mark(
        self, violation_id: str, kind: MarkKind, *, reason: str, by: str, now: datetime
    ) -> int:
        """Append a dismissal (or its withdrawal) of a violation to the hash chain and,
        for a dismissal, cancel the violation's pending alerts. Returns the record's seq."""
        _require_aware(now)
        with self._errors(), self._write.begin() as session:
            head = session.scalars(
                select(ChainHead).where(ChainHead.id == 1).with_for_update()
            ).one()
            native_id = mark_native_id(violation_id)
            version = session.scalar(
                select(func.count()).where(
                    Evidence.platform == MARK_PLATFORM, Evidence.native_id == native_id
                )
            )
            at = evidence.truncate_to_second(now)
            row = mark_row(violation_id, kind, reason, by, (version or 0) + 1, head.seq + 1, at)
            row["chain_sha256"] = evidence.chain_sha256(head.chain_sha256, row["sha256"])
            head.seq, head.chain_sha256 = row["seq"], row["chain_sha256"]
            session.execute(insert(Evidence), [row])
            if kind == "dismissal":
                session.execute(
                    update(OutboxAlert)
                    .where(OutboxAlert.violation_id == violation_id, OutboxAlert.state == "pending")
                    .values(state="cancelled", last_error=f"violation dismissed: {reason}")
                )
            return int(row["seq"])

    def outbox_summary(self, now: datetime | None = None) -> OutboxSummary:
        moment = now if now is not None else utcnow()
        pending = OutboxAlert.state == "pending"
        with self._errors(), self._read() as session:
            row = session.execute(
                select(
                    func.count(),
                    func.count().filter(OutboxAlert.next_attempt_at <= moment),
                    func.count().filter(OutboxAlert.attempts > 0),
                    func.min(OutboxAlert.created_at),
                ).where(pending)
            ).one()
        return OutboxSummary(
            pending=row[0], due_now=row[1], failing=row[2], oldest_pending_at=row[3]
        )


def _record_success(row: WatcherState, poll: PollRecord) -> None:
    row.cursor = dict(poll.state)
    row.status_notes = list(poll.status_notes)
    row.last_poll_at = poll.now
    row.last_success_at = poll.now
    row.last_error = None
    row.last_error_at = None
    row.consecutive_failures = 0
    row.failing_alerted = False
    row.disabled_reason = None
