"""Turn claimed outbox rows into the message a route's targets receive.

What a row is about comes from its dedup key (``violation:``, ``followup:``,
``health:``, ``digest:``); how it goes out from its lane (``category``, see
``service.planner``): rows of the ``held`` and ``folded`` lanes that come due together
are one message, folded to counts when there are many. The words are
``service.messages``'.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from service import deletions, models
from service.evidence import truncate_to_second
from service.health import DEFAULT_FAILURE_THRESHOLD
from service.messages import (
    Block,
    Message,
    SourceHealth,
    combine,
    fold,
    render_digest,
    render_followup,
    render_violation,
)
from service.planner import route_timezone
from service.settings import CaseSettings, Route, Settings

log = logging.getLogger(__name__)

# Beyond this many rows one message gets unreadable on a phone: send several, or,
# for held and folded alerts, one message of counts.
MAX_ROWS_PER_MESSAGE = 20
# Lanes whose due rows of a route always go out as one message.
ONE_MESSAGE_LANES = frozenset({"held", "folded"})
DIGEST_PERIOD = timedelta(hours=24)


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    """What composing needs of one claimed outbox row."""

    id: int
    dedup_key: str
    severity: str
    violation_id: str | None
    title: str | None
    body: str | None
    created_at: datetime

    @property
    def about(self) -> str:
        return self.dedup_key.split(":", 1)[0]


@dataclasses.dataclass(slots=True)
class Rendered:
    """Each row rendered once for a route; a row that cannot be is in ``errors``."""

    blocks: dict[int, Block] = dataclasses.field(default_factory=dict)
    violations: dict[int, models.Violation] = dataclasses.field(default_factory=dict)
    errors: dict[int, str] = dataclasses.field(default_factory=dict)


class Composer:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def render(
        self, session: Session, route_name: str, route: Route, rows: Sequence[Row], now: datetime
    ) -> Rendered:
        rendered = Rendered()
        wanted = [row.violation_id for row in rows if row.violation_id]
        violations = _violations(session, wanted)
        for row in rows:
            if row.about == "digest":
                rendered.blocks[row.id] = self._digest(session, route_name, now)
                continue
            if row.violation_id is None:
                title = row.title or "nocontact: alert"
                rendered.blocks[row.id] = Block(title, row.body or title, row.severity, None)
                continue
            violation = violations.get(row.violation_id)
            if violation is None:
                rendered.errors[row.id] = f"violation {row.violation_id} not found in the store"
                continue
            rendered.violations[row.id] = violation
            rendered.blocks[row.id] = self._violation_block(session, row, violation, route)
        return rendered

    def compose(self, lane: str, route: Route, rows: Sequence[Row], rendered: Rendered) -> Message:
        """The message for ``rows`` (all rendered, at least one)."""
        blocks = [rendered.blocks[row.id] for row in rows]
        many = lane in ONE_MESSAGE_LANES and len(rows) > MAX_ROWS_PER_MESSAGE
        if lane != "folded" and not many:
            return combine(blocks)
        why = (
            "quiet hours" if lane == "held" else f"more than {route.max_per_hour} alerts in an hour"
        )
        violations = [rendered.violations[row.id] for row in rows if row.id in rendered.violations]
        others = [rendered.blocks[row.id] for row in rows if row.id not in rendered.violations]
        return fold(violations, others, why=why, public_url=self._settings.public_url)

    def _violation_block(
        self, session: Session, row: Row, violation: models.Violation, route: Route
    ) -> Block:
        case, reference = self._case(session, violation.case_id)
        public_url = self._settings.public_url
        if row.about == "followup":
            title, body = render_followup(
                violation,
                case,
                truncate_to_second(row.created_at),
                include_content=route.include_content,
                public_url=public_url,
            )
        else:
            title, body = render_violation(
                violation,
                case,
                reference,
                include_content=route.include_content,
                public_url=public_url,
            )
        return Block(title, body, violation.severity, violation.case_id)

    def _case(self, session: Session, case_id: str) -> tuple[CaseSettings | None, str | None]:
        try:
            case = self._settings.case(case_id)
        except KeyError:
            # Removed from config since: the stored copy still names the order.
            stored = session.get(models.Case, case_id)
            return None, stored.reference if stored is not None else None
        return case, case.order.reference

    def _digest(self, session: Session, route_name: str, now: datetime) -> Block:
        cases = [case.id for case in self._settings.cases if route_name in case.alert]
        kinds = session.scalars(
            select(models.Violation.kind).where(
                models.Violation.case_id.in_(cases),
                models.Violation.in_order_period.is_(True),
                models.Violation.created_at > now - DIGEST_PERIOD,
            )
        )
        every = {w.display_name: w.every for w in self._settings.watchers}
        names = list(every)
        states = {
            state.name: state
            for state in session.scalars(
                select(models.WatcherState).where(models.WatcherState.name.in_(names))
            )
        }
        sources = [_source_health(name, states.get(name), every[name]) for name in names]
        zone = route_timezone(self._settings.cases, route_name)
        deleted = deletions.recent(session, cases, now - DIGEST_PERIOD)
        message = render_digest(route_name, Counter(kinds), sources, now, zone, deleted)
        return Block(message.title, message.body, message.severity, None)


def _violations(session: Session, ids: Sequence[str]) -> dict[str, models.Violation]:
    evidence = selectinload(models.Violation.evidence_links).selectinload(
        models.ViolationEvidence.evidence
    )
    found: dict[str, models.Violation] = {}
    unique = sorted(set(ids))
    # Chunks: a flood can bring thousands of rows, beyond a backend's parameter limit.
    for start in range(0, len(unique), 500):
        query = (
            select(models.Violation)
            .where(models.Violation.id.in_(unique[start : start + 500]))
            .options(evidence.defer(models.Evidence.raw))
        )
        found.update((v.id, v) for v in session.scalars(query))
    return found


def _source_health(name: str, state: models.WatcherState | None, every: timedelta) -> SourceHealth:
    if state is None:
        return SourceHealth(name, None, "not polled yet", every)
    problem = None
    if state.disabled_reason:
        problem = f"disabled: {state.disabled_reason}"
    elif state.consecutive_failures >= DEFAULT_FAILURE_THRESHOLD:
        problem = f"failing: {state.last_error or 'unknown error'}"
    return SourceHealth(name, state.last_success_at, problem, every)
