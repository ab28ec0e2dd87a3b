"""What the pages read from the store, in one place.

``timeline_page`` reads the shared timeline record (``service.timeline``) through the
store's one pager and hands the pages ``TimelineRow``s. The violation page and the
access log read the ORM directly.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service.marks import Dismissal, dismissals
from service.models import (
    ContentAccess,
    DeliveryAttempt,
    Evidence,
    OutboxAlert,
    Violation,
    ViolationEvidence,
)
from service.store import Store
from service.timeline import ViolationEntry


@dataclasses.dataclass(frozen=True, slots=True)
class Filters:
    since: datetime | None = None
    kind: str | None = None
    platform: str | None = None
    include_outside: bool = False
    include_dismissed: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class TimelineRow:
    id: str
    case_id: str
    kind: str
    severity: str
    suspected: bool
    reason: str
    first_seen: datetime
    platforms: tuple[str, ...]
    authors: tuple[str, ...]
    items: int
    alerted: bool
    in_order_period: bool
    dismissed: bool

    @property
    def key(self) -> str:
        """Where the next page starts: the pager's own order, (first_seen, id)."""
        return f"{self.first_seen.isoformat()}|{self.id}"


def _parse_key(key: str) -> tuple[datetime, str] | None:
    moment, _, violation_id = key.partition("|")
    try:
        parsed = datetime.fromisoformat(moment)
    except ValueError:
        return None
    return (parsed, violation_id) if parsed.tzinfo is not None else None


def _row(entry: ViolationEntry, dismissed: bool) -> TimelineRow:
    return TimelineRow(
        id=entry.id,
        case_id=entry.case_id,
        kind=entry.kind,
        severity=entry.severity,
        suspected=entry.suspected,
        reason=entry.reason,
        first_seen=entry.first_seen,
        platforms=tuple(dict.fromkeys(item.platform for item in entry.evidence)),
        authors=tuple(dict.fromkeys(item.author_handle or "?" for item in entry.evidence)),
        items=len(entry.evidence),
        alerted=entry.alerted,
        in_order_period=entry.in_order_period,
        dismissed=dismissed,
    )


def _matches(row: TimelineRow, filters: Filters) -> bool:
    return (
        (filters.include_dismissed or not row.dismissed)
        and (filters.since is None or row.first_seen >= filters.since)
        and (filters.kind is None or row.kind == filters.kind)
        and (filters.platform is None or filters.platform in row.platforms)
    )


def timeline_page(
    store: Store,
    sessions: sessionmaker[Session],
    case_id: str,
    filters: Filters,
    after: str | None,
    limit: int,
) -> tuple[list[TimelineRow], str | None]:
    """Up to ``limit`` violations after the key ``after``, oldest first, and the key
    of the next page (None on the last page). Dismissed ones only when asked, as in
    ``nocontact timeline``."""
    with sessions() as session:
        dismissed = set(dismissals(session))
    rows: list[TimelineRow] = []
    start = _parse_key(after) if after else None
    entries = store.entries(case_id, filters.include_outside)
    # closing(): leaving after one page must end the pager's read transaction now.
    with contextlib.closing(entries):  # type: ignore[type-var]
        for entry in entries:
            row = _row(entry, entry.id in dismissed)
            if (start and (row.first_seen, row.id) <= start) or not _matches(row, filters):
                continue
            if len(rows) == limit:
                return rows, rows[-1].key
            rows.append(row)
    return rows, None


@dataclasses.dataclass(frozen=True, slots=True)
class CaseSummary:
    case_id: str
    total: int
    last_7_days: int
    dismissed: int
    last_violation: datetime | None
    last_violation_id: str | None


def case_summaries(
    sessions: sessionmaker[Session], case_ids: Sequence[str], now: datetime
) -> list[CaseSummary]:
    """Violations in the order period per case; dismissed ones are counted apart."""
    week_ago = now - timedelta(days=7)
    found: list[CaseSummary] = []
    with sessions() as session:
        dismissed = set(dismissals(session))
        for case_id in case_ids:
            rows = session.execute(
                select(Violation.id, Violation.first_seen, Violation.last_seen).where(
                    Violation.case_id == case_id, Violation.in_order_period.is_(True)
                )
            ).all()
            kept = [row for row in rows if row.id not in dismissed]
            last = max(kept, key=lambda row: row.last_seen, default=None)
            found.append(
                CaseSummary(
                    case_id,
                    total=len(kept),
                    last_7_days=sum(1 for row in kept if row.first_seen >= week_ago),
                    dismissed=len(rows) - len(kept),
                    last_violation=last.last_seen if last else None,
                    last_violation_id=last.id if last else None,
                )
            )
    return found


@dataclasses.dataclass(frozen=True, slots=True)
class Delivery:
    route: str
    state: str
    created_at: datetime
    sent_at: datetime | None
    attempts: list[DeliveryAttempt]


@dataclasses.dataclass(frozen=True, slots=True)
class ViolationDetail:
    violation: Violation
    # Each item linked to the violation, with every stored version of that item.
    items: list[tuple[Evidence, list[Evidence]]]
    deliveries: list[Delivery]
    accesses: list[ContentAccess]
    dismissal: Dismissal | None


def violation_case(sessions: sessionmaker[Session], violation_id: str) -> str | None:
    with sessions() as session:
        found: str | None = session.scalar(
            select(Violation.case_id).where(Violation.id == violation_id)
        )
        return found


def violation_detail(sessions: sessionmaker[Session], violation_id: str) -> ViolationDetail | None:
    with sessions() as session:
        violation = session.get(Violation, violation_id)
        if violation is None:
            return None
        linked = list(
            session.scalars(
                select(Evidence)
                .join(ViolationEvidence, ViolationEvidence.evidence_id == Evidence.id)
                .where(ViolationEvidence.violation_id == violation_id)
                .order_by(Evidence.seq)
            )
        )
        return ViolationDetail(
            violation=violation,
            items=_with_versions(session, linked),
            deliveries=_deliveries(session, violation_id),
            dismissal=dismissals(session, [violation_id]).get(violation_id),
            accesses=list(
                session.scalars(
                    select(ContentAccess)
                    .where(ContentAccess.violation_id == violation_id)
                    .order_by(ContentAccess.at.desc())
                    .limit(50)
                )
            ),
        )


def _with_versions(
    session: Session, linked: Sequence[Evidence]
) -> list[tuple[Evidence, list[Evidence]]]:
    # Versions of one item are shown once, under the first version linked.
    shown: dict[tuple[str, str], list[Evidence]] = {}
    for item in linked:
        key = (item.platform, item.native_id)
        if key not in shown:
            shown[key] = list(
                session.scalars(
                    select(Evidence)
                    .where(Evidence.platform == item.platform, Evidence.native_id == item.native_id)
                    .order_by(Evidence.version)
                )
            )
    first: dict[tuple[str, str], Evidence] = {}
    for item in linked:
        first.setdefault((item.platform, item.native_id), item)
    return [(item, shown[key]) for key, item in first.items()]


def _deliveries(session: Session, violation_id: str) -> list[Delivery]:
    outbox = list(
        session.scalars(
            select(OutboxAlert)
            .where(OutboxAlert.violation_id == violation_id)
            .order_by(OutboxAlert.created_at)
        )
    )
    attempts: dict[int, list[DeliveryAttempt]] = {row.id: [] for row in outbox}
    for attempt in session.scalars(
        select(DeliveryAttempt)
        .where(DeliveryAttempt.outbox_id.in_(list(attempts)))
        .order_by(DeliveryAttempt.attempted_at)
    ):
        attempts[attempt.outbox_id].append(attempt)
    return [
        Delivery(row.route, row.state, row.created_at, row.sent_at, attempts[row.id])
        for row in outbox
    ]


def evidence_in_violation(
    sessions: sessionmaker[Session], violation_id: str, seq: int
) -> Evidence | None:
    """The evidence record ``seq`` if it is (a version of) an item of the violation."""
    with sessions() as session:
        item = session.scalars(select(Evidence).where(Evidence.seq == seq)).first()
        if item is None:
            return None
        linked = session.scalar(
            select(func.count())
            .select_from(ViolationEvidence)
            .join(Evidence, Evidence.id == ViolationEvidence.evidence_id)
            .where(
                ViolationEvidence.violation_id == violation_id,
                Evidence.platform == item.platform,
                Evidence.native_id == item.native_id,
            )
        )
        return item if linked else None
