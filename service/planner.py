"""The alert planner: the one place that decides which routes get which alert, and when.

The store records evidence, violations and watcher state, and tells the planner what
changed, inside its own transaction; the planner queues outbox rows in that same
transaction (``service.outbox.queue_alert``), so evidence and the alerts about it are
committed together (DESIGN principles 2 and 4). ``service.alerts`` only delivers, and
``service.messages`` words every message.

Each outbox row has a dedup key saying what it is about (``violation:``, ``followup:``,
``health:``, ``digest:``), which makes it exactly once across replicas and restarts, and
a lane (``category``) saying how it goes out: ``violation``, ``followup``, ``health`` and
``digest`` as they come due; ``held`` (quiet hours) and ``folded`` (flood control), all
of a route's due rows in one message. Decisions made here:

- a new violation, or one whose severity rose, goes to each route of its case whose
  ``min_severity`` it reaches, due after ``group_wait``;
- follow-ups (Alertmanager's ``group_interval``): an alerted violation that gains
  evidence gets one update after ``group_interval``; a new kind or a higher severity
  goes out at once;
- flood control: past ``max_per_hour`` alerts in a clock hour, a route's alerts are
  folded into one message at the end of the hour, except contact by the restrained
  party and the first alert of a kind in that hour;
- quiet hours (``quiet_hours`` in the case's time zone): alerts below ``break_through``
  wait for the end and go out as one message;
- watcher health: a source is "failing" after ``FAILURE_ALERT_THRESHOLD`` failed polls
  in a row (once per run of failures), "disabled" when its credentials are rejected,
  "recovered" on the first good poll after a "failing" alert. Their severity is
  ``operator``; they go to the routes marked ``operator``, or to every route when none
  is, and wait out quiet hours like any alert below ``break_through``;
- the daily digest (``digest``): queued by ``tick`` once per local day at its time.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.messages import render_health
from service.models import OutboxAlert, Violation
from service.outbox import queue_alert
from service.settings import SEVERITY_RANK, CaseSettings, Route

if TYPE_CHECKING:
    from service.settings import Settings

log = logging.getLogger(__name__)

HealthEvent = Literal["failing", "recovered", "disabled", "service_error"]

# Failed polls in a row before a source is reported failing: one timeout is no outage.
FAILURE_ALERT_THRESHOLD = 3
FLOOD_WINDOW = timedelta(hours=1)
# A digest is sent at its time, or this much later after downtime; never at a random
# hour of the first start.
DIGEST_CATCH_UP = timedelta(hours=1)
# Kinds whose alerts are never folded: the restrained party in person.
NEVER_FOLDED = frozenset({"contact"})


@dataclasses.dataclass(frozen=True, slots=True)
class ViolationChange:
    """A violation a poll opened or joined, as the store left it (in its session)."""

    violation: Violation
    new: bool
    # Before this poll; equal to the current values for a new violation.
    severity_before: str
    kind_before: str
    # Evidence items this poll linked to it.
    added: int


@dataclasses.dataclass(frozen=True, slots=True)
class WatcherFailure:
    """One failed poll, counted by the store under the watcher's row lock."""

    watcher: str
    message: str
    consecutive_failures: int
    # Whether the "failing" alert of this run of failures already went out.
    failing_alerted: bool
    disabled: bool
    episode: str


def episode(last_success_at: datetime | None) -> str:
    """Names one run of failures: the last success before it. Health alerts are keyed
    on it, so each run of failures alerts once, and its recovery once."""
    if last_success_at is None:
        return "never-succeeded"
    return last_success_at.strftime("%Y%m%dT%H%M%SZ")


def route_timezone(cases: Iterable[CaseSettings], route: str) -> ZoneInfo:
    """A route's own time zone (health alerts, digests): that of its first case."""
    return next((case.timezone for case in cases if route in case.alert), ZoneInfo("UTC"))


def quiet_until(
    quiet: tuple[time, time] | None, zone: ZoneInfo, moment: datetime
) -> datetime | None:
    """The end of the quiet period ``moment`` falls in (aware UTC), or None."""
    if quiet is None:
        return None
    start, end = quiet
    local = moment.astimezone(zone)
    now = local.timetz().replace(tzinfo=None)
    if start < end:
        inside, day = start <= now < end, local.date()
    else:  # over midnight, "22:00-07:00"
        inside = now >= start or now < end
        day = local.date() + timedelta(days=1) if now >= start else local.date()
    if not inside:
        return None
    return datetime.combine(day, end, tzinfo=zone).astimezone(UTC)


@dataclasses.dataclass(slots=True)
class _FloodWindow:
    """A route's alerts in the current clock hour: how many went out unfolded, and
    of which kinds."""

    start: datetime
    count: int
    kinds: set[str]

    @property
    def end(self) -> datetime:
        return self.start + FLOOD_WINDOW


@dataclasses.dataclass(frozen=True, slots=True)
class _Target:
    name: str
    route: Route
    zone: ZoneInfo


class AlertPlanner:
    """Built once per process from the cases and routes of the config."""

    def __init__(self, cases: Iterable[CaseSettings], routes: Mapping[str, Route]) -> None:
        self._cases = {case.id: case for case in cases}
        self._routes = dict(routes)
        self._route_zones = {
            name: route_timezone(self._cases.values(), name) for name in self._routes
        }

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertPlanner:
        return cls(settings.cases, settings.alerts)

    def operator_routes(self) -> list[str]:
        """Routes that receive watcher-health alerts: those marked, else all."""
        marked = [name for name, route in self._routes.items() if route.operator]
        # A route with no URL (an unset ${VAR:-}) sends nothing, so nothing is queued.
        return [name for name in marked or list(self._routes) if self._routes[name].urls]

    def route_zone(self, name: str) -> ZoneInfo:
        return self._route_zones.get(name, ZoneInfo("UTC"))

    # -- violations

    def violations_changed(
        self, session: Session, changes: Sequence[ViolationChange], now: datetime
    ) -> int:
        """Queue the alerts a poll's violation changes call for; returns how many."""
        floods: dict[str, _FloodWindow] = {}
        queued = 0
        for change in changes:
            violation = change.violation
            case = self._cases.get(violation.case_id)
            if not violation.in_order_period or case is None:
                continue
            for target in self._case_targets(case):
                if SEVERITY_RANK[target.route.min_severity] > SEVERITY_RANK[violation.severity]:
                    continue
                flood = floods.get(target.name)
                if flood is None:
                    flood = floods[target.name] = _flood_window(session, target.name, now)
                queued += self._plan_route(session, change, target, flood, now)
        return queued

    def _case_targets(self, case: CaseSettings) -> list[_Target]:
        targets = []
        for name in case.alert:
            route = self._routes.get(name)
            if route is None:
                # Config validation rejects this; never fail the evidence over it.
                log.error("case %s names unknown alert route %s; alert not queued", case.id, name)
                continue
            if not route.urls:
                continue  # an unset ${VAR:-}: the route sends nothing, so nothing waits
            targets.append(_Target(name, route, case.timezone))
        return targets

    def _plan_route(
        self,
        session: Session,
        change: ViolationChange,
        target: _Target,
        flood: _FloodWindow,
        now: datetime,
    ) -> int:
        violation = change.violation
        rose = SEVERITY_RANK[violation.severity] > SEVERITY_RANK[change.severity_before]
        escalated = rose or violation.kind != change.kind_before
        if change.new or rose:
            due = now + target.route.group_wait
            key = f"violation:{violation.id}:{target.name}"
            if self._queue_violation(session, violation, key, target, flood, due, now):
                return 1
        if change.new or not (change.added or escalated):
            return 0
        return self._follow_up(session, violation, target, flood, escalated, now)

    def _follow_up(
        self,
        session: Session,
        violation: Violation,
        target: _Target,
        flood: _FloodWindow,
        escalated: bool,
        now: datetime,
    ) -> int:
        """One update per ``group_interval`` about an alerted violation; a pending alert
        or update will show the new evidence anyway, so it is only pulled forward when
        the violation escalated."""
        rows = session.execute(
            select(OutboxAlert.id, OutboxAlert.dedup_key, OutboxAlert.state).where(
                OutboxAlert.violation_id == violation.id, OutboxAlert.route == target.name
            )
        ).all()
        if not any(key.startswith("violation:") for _, key, _ in rows):
            return 0  # never alerted on this route (below min_severity until now)
        pending = [row_id for row_id, _, state in rows if state == "pending"]
        if pending:
            # An escalation goes out at once, unless quiet hours hold it.
            followups = [row_id for row_id, key, _ in rows if key.startswith("followup:")]
            lane, _ = _quiet(target, violation.severity, "followup", now)
            if escalated and lane != "held":
                _pull_forward(session, [r for r in pending if r in followups], now)
            return 0
        number = sum(1 for _, key, _ in rows if key.startswith("followup:")) + 1
        due = now if escalated else now + target.route.group_interval
        key = f"followup:{violation.id}:{target.name}:{number}"
        return int(self._queue_violation(session, violation, key, target, flood, due, now))

    def _queue_violation(
        self,
        session: Session,
        violation: Violation,
        key: str,
        target: _Target,
        flood: _FloodWindow,
        due: datetime,
        now: datetime,
    ) -> bool:
        lane = key.split(":", 1)[0]
        folds = (
            flood.count >= target.route.max_per_hour
            and violation.kind not in NEVER_FOLDED
            and violation.kind in flood.kinds
        )
        if folds:
            lane, due = "folded", max(due, flood.end)
        lane, due = _quiet(target, violation.severity, lane, due)
        queued = queue_alert(
            session,
            dedup_key=key,
            route=target.name,
            category=lane,
            severity=violation.severity,
            now=now,
            due_at=due,
            violation_id=violation.id,
        )
        if queued and not folds:
            flood.count += 1
            flood.kinds.add(violation.kind)
        return queued

    # -- watcher health

    def watcher_failed(self, session: Session, failure: WatcherFailure, now: datetime) -> bool:
        """Queue the health alert a failed poll calls for. Returns True when this
        failure is the one that reports the run of failures as "failing"."""
        name = failure.watcher
        if failure.disabled:
            message = f"watcher {name} is disabled: {failure.message}"
            self.queue_health(
                session,
                watcher=name,
                event="disabled",
                message=message,
                episode=failure.episode,
                now=now,
            )
            return False
        if failure.failing_alerted or failure.consecutive_failures < FAILURE_ALERT_THRESHOLD:
            return False
        message = (
            f"watcher {name} is failing: {failure.message} "
            f"({failure.consecutive_failures} failures in a row)"
        )
        self.queue_health(
            session,
            watcher=name,
            event="failing",
            message=message,
            episode=failure.episode,
            now=now,
        )
        return True

    def watcher_recovered(
        self, session: Session, watcher: str, episode_name: str, now: datetime
    ) -> int:
        """A good poll after a "failing" alert: say so once."""
        log.info("watcher %s recovered", watcher)
        return self.queue_health(
            session,
            watcher=watcher,
            event="recovered",
            message=f"watcher {watcher} is working again",
            episode=episode_name,
            now=now,
        )

    def queue_health(
        self,
        session: Session,
        *,
        watcher: str,
        event: HealthEvent,
        message: str,
        episode: str,
        now: datetime,
    ) -> int:
        """One health alert per operator route, in the caller's transaction; exactly
        once per (watcher, event, episode, route). Returns how many were new."""
        title, body = render_health(watcher, event, message, now)
        queued = 0
        for name in self.operator_routes():
            target = _Target(name, self._routes[name], self.route_zone(name))
            lane, due = _quiet(target, "operator", "health", now)
            queued += queue_alert(
                session,
                dedup_key=f"health:{watcher}:{event}:{episode}:{name}",
                route=name,
                category=lane,
                severity="operator",
                title=title,
                body=body,
                now=now,
                due_at=due,
            )
        return queued

    # -- the clock

    def tick(self, session: Session, now: datetime) -> int:
        """Alerts the clock calls for: each route's daily digest, once per local day."""
        queued = 0
        for name, route in self._routes.items():
            if route.digest is None:
                continue
            local = now.astimezone(self.route_zone(name))
            moment = datetime.combine(local.date(), route.digest, tzinfo=local.tzinfo)
            if not moment <= local < moment + DIGEST_CATCH_UP:
                continue
            queued += queue_alert(
                session,
                dedup_key=f"digest:{name}:{local.date().isoformat()}",
                route=name,
                category="digest",
                severity="low",
                now=now,
                due_at=now,
            )
        return queued


def _quiet(target: _Target, severity: str, lane: str, due: datetime) -> tuple[str, datetime]:
    """Below ``break_through``, an alert due in quiet hours waits for their end."""
    if SEVERITY_RANK[severity] >= SEVERITY_RANK[target.route.break_through]:
        return lane, due
    until = quiet_until(target.route.quiet_hours, target.zone, due)
    return ("held", until) if until is not None else (lane, due)


def _flood_window(session: Session, route: str, now: datetime) -> _FloodWindow:
    start = now.replace(minute=0, second=0, microsecond=0)
    rows = session.execute(
        select(Violation.kind)
        .join(OutboxAlert, OutboxAlert.violation_id == Violation.id)
        .where(
            OutboxAlert.route == route,
            OutboxAlert.created_at >= start,
            OutboxAlert.category != "folded",
        )
    ).all()
    return _FloodWindow(start, len(rows), {kind for (kind,) in rows})


def _pull_forward(session: Session, row_ids: Sequence[int], now: datetime) -> None:
    """Make pending follow-ups due now, as follow-ups (no longer folded or held). A
    row being sent or waiting for a retry (its next_attempt_at moved off due_at) is
    left alone: it goes out anyway."""
    if not row_ids:
        return
    session.execute(
        update(OutboxAlert)
        .where(
            OutboxAlert.id.in_(row_ids),
            OutboxAlert.state == "pending",
            OutboxAlert.next_attempt_at == OutboxAlert.due_at,
            OutboxAlert.due_at > now,
        )
        .values(due_at=now, next_attempt_at=now, category="followup")
        .execution_options(synchronize_session=False)
    )
