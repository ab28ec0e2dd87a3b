"""The evidence store: evidence with its hash chain, the violation timeline, the alert
outbox and the watchers' state.

Writes of one poll happen in one transaction (``Store.record_poll``): evidence rows,
the violations they join or open, and the alerts about them are committed together,
or not at all. Appending to the hash chain locks the single ``chain_head`` row
(``SELECT … FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so replicas
append one after another and never store the same item twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Table, and_, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from service import evidence
from service.db import StoreError, database_errors, session_factory
from service.hits import Hit
from service.marks import MARK_PLATFORM, MARK_WATCHER, MarkKind, mark_native_id, mark_payload
from service.models import (
    Case,
    ChainHead,
    Evidence,
    OutboxAlert,
    Violation,
    ViolationEvidence,
    WatcherState,
    utcnow,
)
from service.settings import SEVERITY_RANK, CaseSettings, Route
from service.timeline import ViolationEntry, iter_entries
from watchers.base import Observation

log = logging.getLogger(__name__)

# Violation kinds from least to most serious; a joined violation takes the most serious.
KIND_RANK: dict[str, int] = {"mention": 1, "third_party": 1, "suspected_alt": 2, "contact": 3}
_CHUNK = 500

_ItemKey = tuple[str, str]  # (platform, native_id)


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


def observation_content_sha256(obs: Observation) -> str:
    """Identity of one version of a platform item: what the platform says about it.

    Neither the raw payload (a feed's XML changes with every poll) nor the capture
    time is included, so re-polling an unchanged item never makes a new version.
    ``addressed_to`` is sorted: the order in which a platform lists recipients is not
    an edit.
    """
    return evidence.content_sha256(
        {
            "kind": obs.kind,
            "url": obs.url,
            "author_handle": obs.author_handle,
            "author_id": obs.author_id,
            "author_display_name": obs.author_display_name,
            "text": obs.text,
            "posted_at": evidence.format_time(obs.posted_at),
            "addressed_to": sorted(obs.addressed_to),
        }
    )


def _require_aware(now: datetime) -> None:
    # A naive time would be read as local time and silently shift every evidence time.
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("the store needs aware UTC datetimes, got a naive one")


@dataclasses.dataclass(slots=True)
class _StoredItem:
    contents: set[str]
    max_version: int


def _stored_items(session: Session, keys: Iterable[_ItemKey]) -> dict[_ItemKey, _StoredItem]:
    """The stored content hashes and newest version of each (platform, native_id)."""
    by_platform: dict[str, set[str]] = {}
    for platform, native_id in keys:
        by_platform.setdefault(platform, set()).add(native_id)
    found: dict[_ItemKey, _StoredItem] = {}
    for platform, native_ids in by_platform.items():
        ordered = sorted(native_ids)
        for start in range(0, len(ordered), _CHUNK):
            rows = session.execute(
                select(Evidence.native_id, Evidence.content_sha256, Evidence.version).where(
                    Evidence.platform == platform,
                    Evidence.native_id.in_(ordered[start : start + _CHUNK]),
                )
            )
            for native_id, content, version in rows:
                item = found.setdefault((platform, native_id), _StoredItem(set(), 0))
                item.contents.add(content)
                item.max_version = max(item.max_version, version)
    return found


# ---------------------------------------------------------------- dialect helpers


def _dialect_insert(session: Session, table: Table) -> Any:
    """An INSERT that supports ``on_conflict_do_*`` on the session's backend."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return pg_insert(table)
    if name == "sqlite":
        return sqlite_insert(table)
    raise StoreError(f"unsupported database backend {name!r}: use sqlite or postgresql")


def _insert_ignore(session: Session, table: Table, values: Mapping[str, Any], key: str) -> bool:
    """Insert a row unless one with the same ``key`` exists; True when inserted."""
    statement = _dialect_insert(session, table).values(**values)
    statement = statement.on_conflict_do_nothing(index_elements=[key]).returning(table.c[key])
    # RETURNING, not rowcount: drivers disagree on rowcount for INSERT … ON CONFLICT.
    return session.connection().execute(statement).first() is not None


def enqueue_alert(
    session: Session,
    *,
    dedup_key: str,
    route: str,
    category: str,
    severity: str,
    title: str | None,
    body: str | None,
    now: datetime,
    due_at: datetime | None = None,
    violation_id: str | None = None,
) -> bool:
    """Queue one alert unless an alert with ``dedup_key`` was ever queued (exactly-once
    per key, across replicas and restarts). Returns True when a row was added."""
    _require_aware(now)
    due = due_at if due_at is not None else now
    # Unflushed violations must reach the database before an alert refers to them.
    session.flush()
    return _insert_ignore(
        session,
        OutboxAlert.__table__,  # type: ignore[arg-type]
        {
            "dedup_key": dedup_key,
            "route": route,
            "category": category,
            "violation_id": violation_id,
            "severity": severity,
            "title": title,
            "body": body,
            "created_at": now,
            "due_at": due,
            "next_attempt_at": due,
            "attempts": 0,
            "state": "pending",
        },
        "dedup_key",
    )


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


def _case_values(case: CaseSettings, now: datetime) -> dict[str, Any]:
    return {
        "id": case.id,
        "reference": case.order.reference,
        "effective": case.order.effective,
        "expires": case.order.expires,
        "definition": case.model_dump(mode="json"),
        "updated_at": now,
    }


# ---------------------------------------------------------------- one poll's write


@dataclasses.dataclass(slots=True)
class _NewEvidence:
    index: int  # into the poll's observations, which index the hits
    evidence_id: int
    platform: str
    fingerprint: str | None  # None for empty text, which must never join by content
    moment: datetime  # posted_at, else captured_at


@dataclasses.dataclass(slots=True)
class _PollWrite:
    """The state of one ``record_poll`` transaction."""

    session: Session
    cases: Mapping[str, CaseSettings]
    routes: Mapping[str, Route]
    now: datetime
    created: dict[str, Violation] = dataclasses.field(default_factory=dict)
    joined: dict[str, Violation] = dataclasses.field(default_factory=dict)
    severity_before: dict[str, str] = dataclasses.field(default_factory=dict)
    links: set[tuple[str, int]] = dataclasses.field(default_factory=set)
    queued: int = 0

    def add_hit(self, hit: Hit, item: _NewEvidence) -> None:
        case = self.cases.get(hit.case_id)
        if case is None:
            # A bug upstream; failing the poll would lose the evidence, so keep it.
            log.error("hit for case %s, which is not in the config; evidence kept", hit.case_id)
            return
        violation = self._find_violation(case, hit, item)
        if violation is None:
            violation = self._open_violation(hit, item.moment)
        else:
            self._widen(violation, hit, item.moment)
        if (violation.id, item.evidence_id) not in self.links:
            self.links.add((violation.id, item.evidence_id))
            self.session.add(
                ViolationEvidence(
                    violation_id=violation.id, evidence_id=item.evidence_id, reason=hit.reason
                )
            )

    def _find_violation(self, case: CaseSettings, hit: Hit, item: _NewEvidence) -> Violation | None:
        """The violation this hit joins, if any.

        "Near" means the item's time lies within the case's ``group_window`` of the
        violation's span [first_seen, last_seen] (so items that arrive out of order
        still join), in the same case and on the same side of the order period.
        """
        window = case.group_window
        near = and_(
            Violation.case_id == case.id,
            Violation.in_order_period == hit.in_order_period,
            Violation.first_seen <= item.moment + window,
            Violation.last_seen >= item.moment - window,
        )
        if item.fingerprint is not None:
            # The same words on another platform at about the same time: one post seen
            # through two sources (a mirror and the API). Same-platform items with equal
            # text are distinct posts; they may still group by author below.
            same_content = (
                select(Violation)
                .join(ViolationEvidence, ViolationEvidence.violation_id == Violation.id)
                .join(Evidence, Evidence.id == ViolationEvidence.evidence_id)
                .where(
                    near,
                    Evidence.text_fingerprint == item.fingerprint,
                    Evidence.platform != item.platform,
                )
                .order_by(Violation.last_seen.desc())
                .limit(1)
            )
            found = self.session.scalars(same_content).first()
            if found is not None:
                return found
        same_author = (
            select(Violation)
            .where(near, Violation.author_key == hit.author_key)
            .order_by(Violation.last_seen.desc())
            .limit(1)
        )
        return self.session.scalars(same_author).first()

    def _open_violation(self, hit: Hit, moment: datetime) -> Violation:
        violation = Violation(
            id=str(uuid.uuid4()),
            case_id=hit.case_id,
            kind=hit.kind,
            severity=hit.severity,
            suspected=hit.suspected,
            score=hit.score,
            reason=hit.reason,
            author_key=hit.author_key,
            first_seen=moment,
            last_seen=moment,
            created_at=self.now,
            in_order_period=hit.in_order_period,
        )
        self.session.add(violation)
        self.created[violation.id] = violation
        return violation

    def _widen(self, violation: Violation, hit: Hit, moment: datetime) -> None:
        if violation.id not in self.created and violation.id not in self.joined:
            self.joined[violation.id] = violation
            self.severity_before[violation.id] = violation.severity
        violation.first_seen = min(violation.first_seen, moment)
        violation.last_seen = max(violation.last_seen, moment)
        more_serious = KIND_RANK[hit.kind] > KIND_RANK[violation.kind]
        if more_serious:
            violation.kind = hit.kind
        if SEVERITY_RANK[hit.severity] > SEVERITY_RANK[violation.severity]:
            violation.severity = hit.severity
            more_serious = True
        if more_serious:
            violation.reason = hit.reason
        # A violation is only "suspected" while every hit in it is.
        violation.suspected = violation.suspected and hit.suspected
        if hit.score is not None:
            violation.score = max(violation.score or 0.0, hit.score)

    def queue_alerts(self) -> None:
        """Alerts for new violations, and for joined ones whose severity rose past a
        route's ``min_severity`` (the dedup key keeps each route to one alert)."""
        for violation in self.created.values():
            self._alert_routes(violation)
        for violation_id, violation in self.joined.items():
            before = self.severity_before[violation_id]
            if SEVERITY_RANK[violation.severity] > SEVERITY_RANK[before]:
                self._alert_routes(violation)

    def _alert_routes(self, violation: Violation) -> None:
        if not violation.in_order_period:
            return
        case = self.cases[violation.case_id]
        for name in case.alert:
            route = self.routes.get(name)
            if route is None:
                # Config validation rejects this; never fail the evidence over it.
                log.error("case %s names unknown alert route %s; alert not queued", case.id, name)
                continue
            if (
                not route.urls
                or SEVERITY_RANK[route.min_severity] > SEVERITY_RANK[violation.severity]
            ):
                continue  # a route whose only URL is an unset ${VAR:-} sends nothing
            due = self.now + route.group_wait
            if enqueue_alert(
                self.session,
                dedup_key=f"violation:{violation.id}:{name}",
                route=name,
                category="violation",
                severity=violation.severity,
                title=None,
                body=None,
                now=self.now,
                due_at=due,
                violation_id=violation.id,
            ):
                self.queued += 1


# ---------------------------------------------------------------- the store


class Store:
    """All reads and writes of the evidence store (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._write = session_factory(engine)
        self._read = session_factory(engine, readonly=True)

    def _errors(self) -> contextlib.AbstractContextManager[None]:
        return database_errors(self.engine)

    # -- config

    def sync_cases(self, cases: Sequence[CaseSettings], now: datetime) -> None:
        """Insert or update the Case rows from config (config is the source of truth)."""
        _require_aware(now)
        with self._errors(), self._write.begin() as session:
            for case in cases:
                values = _case_values(case, now)
                statement = _dialect_insert(session, Case.__table__)  # type: ignore[arg-type]
                statement = statement.values(**values)
                update = {k: v for k, v in values.items() if k != "id"}
                session.execute(statement.on_conflict_do_update(index_elements=["id"], set_=update))

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
        _insert_ignore(
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
        """Count a failed poll; the cursor stays, so nothing is skipped on recovery."""
        _require_aware(now)
        with self._errors(), self._write.begin() as session:
            row = self._locked_state(session, watcher, watcher_type)
            row.consecutive_failures += 1
            row.last_poll_at = now
            row.last_error = message
            row.last_error_at = now
            if disable:
                row.disabled_reason = message
            return FailureView(row.consecutive_failures, row.failing_alerted, row.disabled_reason)

    def mark_failing_alerted(self, watcher: str) -> None:
        with self._errors(), self._write.begin() as session:
            row = session.get(WatcherState, watcher, with_for_update=True)
            if row is None:
                raise StoreError(f"no state for watcher {watcher!r}")
            row.failing_alerted = True

    # -- alerts

    def enqueue_alert(
        self,
        session: Session | None = None,
        *,
        dedup_key: str,
        route: str,
        category: str,
        severity: str,
        title: str | None,
        body: str | None,
        now: datetime,
        due_at: datetime | None = None,
        violation_id: str | None = None,
    ) -> bool:
        """``enqueue_alert`` in the caller's transaction, or in its own one."""
        values: dict[str, Any] = {
            "dedup_key": dedup_key,
            "route": route,
            "category": category,
            "severity": severity,
            "title": title,
            "body": body,
            "now": now,
            "due_at": due_at,
            "violation_id": violation_id,
        }
        if session is not None:
            with self._errors():
                return enqueue_alert(session, **values)
        with self._errors(), self._write.begin() as own:
            return enqueue_alert(own, **values)

    # -- observations

    def new_observations(self, observations: Sequence[Observation]) -> list[Observation]:
        """The observations whose content is not stored yet, in order, without repeats."""
        if not observations:
            return []
        with self._errors(), self._read() as session:
            stored = _stored_items(session, ((o.platform, o.native_id) for o in observations))
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

    def record_poll(
        self,
        watcher: str,
        watcher_type: str,
        observations: Sequence[Observation],
        hits: Mapping[int, Sequence[Hit]],
        new_state: Mapping[str, Any],
        status_notes: Sequence[str],
        cases: Mapping[str, CaseSettings],
        routes: Mapping[str, Route],
        now: datetime,
    ) -> RecordResult:
        """Store one successful poll in one transaction: new evidence (chained), the
        violations its hits open or join, their alerts, and the watcher's new state.

        ``hits`` maps an index into ``observations`` to that observation's hits; hits of
        observations already stored are ignored (they were handled when first stored).
        """
        _require_aware(now)
        with self._errors(), self._write.begin() as session:
            stored, fresh = self._append_evidence(session, watcher, observations, now)
            write = _PollWrite(session, cases, routes, now)
            self._ensure_cases(session, hits, fresh, cases, now)
            for item in fresh:
                for hit in hits.get(item.index, ()):
                    write.add_hit(hit, item)
            write.queue_alerts()
            recovered = self._record_success(
                session, watcher, watcher_type, new_state, status_notes, now
            )
            versions = sum(1 for version in stored if version > 1)
            return RecordResult(
                new_evidence=len(stored) - versions,
                new_versions=versions,
                new_violations=len(write.created),
                joined_violations=len(write.joined),
                queued_alerts=write.queued,
                recovered=recovered,
                new_outside_period=sum(
                    1 for violation in write.created.values() if not violation.in_order_period
                ),
            )

    def _append_evidence(
        self,
        session: Session,
        watcher: str,
        observations: Sequence[Observation],
        now: datetime,
    ) -> tuple[list[int], list[_NewEvidence]]:
        """Insert the observations not stored yet; returns their versions and handles."""
        if not observations:
            return [], []
        head = session.scalars(
            select(ChainHead).where(ChainHead.id == 1).with_for_update()
        ).one_or_none()
        if head is None:
            raise StoreError("the evidence chain head is missing; was the database migrated?")
        # Checked only now, under the lock: another replica may just have stored them.
        stored = _stored_items(session, ((o.platform, o.native_id) for o in observations))
        captured_at = evidence.truncate_to_second(now)
        rows: list[dict[str, Any]] = []
        indexes: list[int] = []
        for index, obs in enumerate(observations):
            content = observation_content_sha256(obs)
            item = stored.setdefault((obs.platform, obs.native_id), _StoredItem(set(), 0))
            if content in item.contents:
                continue
            item.contents.add(content)
            item.max_version += 1
            row = _evidence_row(obs, watcher, item.max_version, head.seq + 1, captured_at)
            row["content_sha256"] = content
            row["chain_sha256"] = evidence.chain_sha256(head.chain_sha256, row["sha256"])
            head.seq = row["seq"]
            head.chain_sha256 = row["chain_sha256"]
            rows.append(row)
            indexes.append(index)
        if not rows:
            return [], []
        ids = session.scalars(
            insert(Evidence).returning(Evidence.id, sort_by_parameter_order=True), rows
        ).all()
        fresh = [
            _NewEvidence(
                index=index,
                evidence_id=evidence_id,
                platform=row["platform"],
                fingerprint=row["text_fingerprint"] if row["text"].strip() else None,
                moment=row["posted_at"] or captured_at,
            )
            for index, evidence_id, row in zip(indexes, ids, rows, strict=True)
        ]
        return [row["version"] for row in rows], fresh

    @staticmethod
    def _ensure_cases(
        session: Session,
        hits: Mapping[int, Sequence[Hit]],
        fresh: Sequence[_NewEvidence],
        cases: Mapping[str, CaseSettings],
        now: datetime,
    ) -> None:
        """Violations refer to Case rows; add any the caller has not synced yet."""
        wanted = {hit.case_id for item in fresh for hit in hits.get(item.index, ())}
        for case_id in sorted(wanted):
            case = cases.get(case_id)
            if case is not None:
                _insert_ignore(session, Case.__table__, _case_values(case, now), "id")  # type: ignore[arg-type]

    def _record_success(
        self,
        session: Session,
        watcher: str,
        watcher_type: str,
        new_state: Mapping[str, Any],
        status_notes: Sequence[str],
        now: datetime,
    ) -> bool:
        row = self._locked_state(session, watcher, watcher_type)
        recovered = row.consecutive_failures > 0 and row.failing_alerted
        row.cursor = dict(new_state)
        row.status_notes = list(status_notes)
        row.last_poll_at = now
        row.last_success_at = now
        row.last_error = None
        row.last_error_at = None
        row.consecutive_failures = 0
        row.failing_alerted = False
        row.disabled_reason = None
        return recovered

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
            row = _mark_row(violation_id, kind, reason, by, (version or 0) + 1, head.seq + 1, at)
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


def _mark_row(
    violation_id: str, kind: MarkKind, reason: str, by: str, version: int, seq: int, at: datetime
) -> dict[str, Any]:
    raw = mark_payload(violation_id, kind, reason, by, at)
    canonical = {
        "seq": seq,
        "platform": MARK_PLATFORM,
        "native_id": mark_native_id(violation_id),
        "version": version,
        "url": None,
        "author_handle": by,
        "author_id": None,
        "posted_at": evidence.format_time(at),
        "captured_at": evidence.format_time(at),
        "text": reason,
        "raw_sha256": evidence.sha256_hex(raw),
    }
    return {
        **canonical,
        "posted_at": at,
        "captured_at": at,
        "kind": kind,
        "addressed_to": [],
        "watcher": MARK_WATCHER,
        "capture_method": f"nocontact {kind.removesuffix('al')} (command line)",
        "raw": raw,
        "raw_content_type": "application/json",
        "content_sha256": evidence.sha256_hex(raw),
        "text_fingerprint": evidence.text_fingerprint(""),
        "sha256": evidence.record_sha256(canonical),
    }


def _evidence_row(
    obs: Observation, watcher: str, version: int, seq: int, captured_at: datetime
) -> dict[str, Any]:
    raw_sha256 = evidence.sha256_hex(obs.raw)
    canonical = {
        "seq": seq,
        "platform": obs.platform,
        "native_id": obs.native_id,
        "version": version,
        "url": obs.url,
        "author_handle": obs.author_handle,
        "author_id": obs.author_id,
        "posted_at": evidence.format_time(obs.posted_at),
        "captured_at": evidence.format_time(captured_at),
        "text": obs.text,
        "raw_sha256": raw_sha256,
    }
    return {
        **canonical,
        "posted_at": obs.posted_at,
        "captured_at": captured_at,
        "kind": obs.kind,
        "author_display_name": obs.author_display_name,
        "author_created_at": obs.author_created_at,
        "addressed_to": list(obs.addressed_to),
        "watcher": watcher,
        "capture_method": obs.capture_method,
        "raw": obs.raw,
        "raw_content_type": obs.raw_content_type,
        "text_fingerprint": evidence.text_fingerprint(obs.text),
        "sha256": evidence.record_sha256(canonical),
    }
