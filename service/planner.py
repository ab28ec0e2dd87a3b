"""The alert planner: the one place that decides which routes get which alert, and when.

The store records evidence, violations and watcher state, and tells the planner what
changed, inside its own transaction; the planner queues outbox rows in that same
transaction (``service.outbox.queue_alert``), so evidence and the alerts about it are
committed together (DESIGN principles 2 and 4). ``service.alerts`` only delivers.

Decisions made here:

- violation alerts: a new violation, or a joined one whose severity rose, goes to
  each route of its case whose ``min_severity`` it reaches, due after ``group_wait``;
  one alert per (violation, route) ever, by the outbox's dedup key;
- watcher health: a source is "failing" after ``FAILURE_ALERT_THRESHOLD`` failed polls
  in a row (once per run of failures), "disabled" when its credentials are rejected,
  "recovered" on the first good poll after a "failing" alert; these go to the routes
  marked ``operator``, or to every route when none is.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from sqlalchemy.orm import Session

from service.evidence import format_time
from service.outbox import queue_alert
from service.settings import SEVERITY_RANK, CaseSettings, Route

if TYPE_CHECKING:
    from service.models import Violation
    from service.settings import Settings

log = logging.getLogger(__name__)

HealthEvent = Literal["failing", "recovered", "disabled"]

# Failed polls in a row before a source is reported failing: one timeout is no outage.
FAILURE_ALERT_THRESHOLD = 3

_HEALTH_PHRASES: dict[str, str] = {
    "failing": "is failing",
    "recovered": "has recovered",
    "disabled": "is disabled",
}


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


class AlertPlanner:
    """Built once per process from the cases and routes of the config."""

    def __init__(self, cases: Iterable[CaseSettings], routes: Mapping[str, Route]) -> None:
        self._cases = {case.id: case for case in cases}
        self._routes = dict(routes)

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertPlanner:
        return cls(settings.cases, settings.alerts)

    def operator_routes(self) -> list[str]:
        """Routes that receive watcher-health alerts: those marked, else all."""
        marked = [name for name, route in self._routes.items() if route.operator]
        return marked or list(self._routes)

    # -- violations

    def violations_changed(
        self, session: Session, changes: Sequence[ViolationChange], now: datetime
    ) -> int:
        """Queue the alerts a poll's violation changes call for; returns how many."""
        queued = 0
        for change in changes:
            rose = SEVERITY_RANK[change.violation.severity] > SEVERITY_RANK[change.severity_before]
            if change.new or rose:
                queued += self._alert_routes(session, change.violation, now)
        return queued

    def _alert_routes(self, session: Session, violation: Violation, now: datetime) -> int:
        if not violation.in_order_period:
            return 0
        case = self._cases.get(violation.case_id)
        if case is None:
            return 0
        queued = 0
        for name in case.alert:
            route = self._routes.get(name)
            if route is None:
                # Config validation rejects this; never fail the evidence over it.
                log.error("case %s names unknown alert route %s; alert not queued", case.id, name)
                continue
            if SEVERITY_RANK[route.min_severity] > SEVERITY_RANK[violation.severity]:
                continue
            queued += queue_alert(
                session,
                dedup_key=f"violation:{violation.id}:{name}",
                route=name,
                category="violation",
                severity=violation.severity,
                now=now,
                due_at=now + route.group_wait,
                violation_id=violation.id,
            )
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
        title, body = _render_health(watcher, event, message, now)
        severity = "low" if event == "recovered" else "high"
        queued = 0
        for route in self.operator_routes():
            queued += queue_alert(
                session,
                dedup_key=f"health:{watcher}:{event}:{episode}:{route}",
                route=route,
                category="health",
                severity=severity,
                title=title,
                body=body,
                now=now,
                due_at=now,
            )
        return queued


def _render_health(
    watcher: str, event: HealthEvent, message: str, now: datetime
) -> tuple[str, str]:
    title = f"nocontact: watcher {watcher} {_HEALTH_PHRASES[event]}"
    body = "\n".join(
        [
            f"Watcher {watcher} {_HEALTH_PHRASES[event]}.",
            message,
            f"At: {format_time(now)}",
            "Details: nocontact status",
        ]
    )
    return title, body
