"""Is the service alive and are its watchers working? (``nocontact status --health``)

The running service writes a ``Heartbeat`` row per instance every ~30 s (``beat``).
Health is read from the store alone, so it works from a container HEALTHCHECK, a
cron job or another machine pointed at the same PostgreSQL database.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service.evidence import format_time
from service.models import Heartbeat, Violation, WatcherState

# The heartbeat instance of `run --once` ends with this: such a run is reported as the
# last run, never as a running service.
ONCE_SUFFIX = ":once"

# Three missed beats of a 30 s heartbeat: one slow poll or GC pause is not an outage.
DEFAULT_STALE_AFTER = timedelta(seconds=90)
DEFAULT_FAILURE_THRESHOLD = 3


@dataclasses.dataclass(frozen=True, slots=True)
class HealthReport:
    ok: bool
    lines: list[str]


def beat(
    sessions: sessionmaker[Session], instance: str, started_at: datetime, now: datetime
) -> None:
    """Record that ``instance`` is alive at ``now`` (insert or update its row)."""
    with sessions.begin() as session:
        row = session.get(Heartbeat, instance)
        if row is None:
            session.add(Heartbeat(instance=instance, beat_at=now, started_at=started_at))
        else:
            row.beat_at = now
            row.started_at = started_at


def check_health(
    sessions: sessionmaker[Session],
    *,
    now: datetime,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD,
    watcher_names: Iterable[str] | None = None,
) -> HealthReport:
    """Unhealthy when no instance has beaten within ``stale_after``, or a watcher is
    disabled or has failed ``failure_threshold`` polls in a row.

    ``watcher_names`` limits the check to the configured watchers, so that the state
    row of a watcher removed from the config cannot keep the service unhealthy."""
    with sessions() as session:
        beats = list(session.scalars(select(Heartbeat).order_by(Heartbeat.beat_at.desc())))
        states = list(session.scalars(select(WatcherState).order_by(WatcherState.name)))
    heartbeat_ok, lines = _heartbeat_lines(beats, now, stale_after)
    watchers_ok, watcher_lines = _watcher_lines(states, watcher_names, failure_threshold)
    return HealthReport(ok=heartbeat_ok and watchers_ok, lines=lines + watcher_lines)


def _ago(now: datetime, then: datetime) -> str:
    seconds = int((now - then).total_seconds())
    if seconds < 0:
        return f"{-seconds}s in the future (clock skew?)"
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


def _heartbeat_lines(
    beats: list[Heartbeat], now: datetime, stale_after: timedelta
) -> tuple[bool, list[str]]:
    if not beats:
        return False, ["UNHEALTHY heartbeat: none recorded; is `nocontact run` running?"]
    fresh = [b for b in beats if now - b.beat_at <= stale_after]
    if not fresh:
        newest = beats[0]
        return False, [
            f"UNHEALTHY heartbeat: stale; newest from {newest.instance} at "
            f"{format_time(newest.beat_at)} ({_ago(now, newest.beat_at)}, "
            f"limit {int(stale_after.total_seconds())}s)"
        ]
    return True, [_fresh_line(b, now) for b in fresh]


def _fresh_line(beat: Heartbeat, now: datetime) -> str:
    if beat.instance.endswith(ONCE_SUFFIX):
        host = beat.instance.removesuffix(ONCE_SUFFIX)
        return f"ok heartbeat: last `run --once` on {host} at {format_time(beat.beat_at)} " \
            f"({_ago(now, beat.beat_at)}); not running continuously"  # fmt: skip
    return (
        f"ok heartbeat: {beat.instance} beat {_ago(now, beat.beat_at)}, "
        f"running since {format_time(beat.started_at)}"
    )


def service_line(sessions: sessionmaker[Session], now: datetime, stale_after: timedelta) -> str:
    """One line for ``status``: is the service running (a fresh heartbeat from a
    continuous ``run``), since when, or when it last ran."""
    with sessions() as session:
        beats = list(session.scalars(select(Heartbeat).order_by(Heartbeat.beat_at.desc())))
    running = [
        b for b in beats if not b.instance.endswith(ONCE_SUFFIX) and now - b.beat_at <= stale_after
    ]
    if running:
        names = ", ".join(f"{b.instance} since {format_time(b.started_at)}" for b in running)
        return f"Service: running ({names}; last heartbeat {_ago(now, running[0].beat_at)})"
    if not beats:
        return "Service: not running; it has never run against this database"
    newest = beats[0]
    if newest.instance.endswith(ONCE_SUFFIX):
        return (
            f"Service: not running; last `run --once` at {format_time(newest.beat_at)} "
            f"({_ago(now, newest.beat_at)})"
        )
    return (
        f"Service: not running; last heartbeat from {newest.instance} at "
        f"{format_time(newest.beat_at)} ({_ago(now, newest.beat_at)})"
    )


def _watcher_lines(
    states: list[WatcherState], names: Iterable[str] | None, threshold: int
) -> tuple[bool, list[str]]:
    wanted = None if names is None else list(names)
    by_name = {s.name: s for s in states}
    order = wanted if wanted is not None else [s.name for s in states]
    ok = True
    lines: list[str] = []
    for name in order:
        state = by_name.get(name)
        if state is None:
            lines.append(f"ok watcher {name}: not polled yet")
            continue
        problem = _watcher_problem(state, threshold)
        if problem is None:
            success = format_time(state.last_success_at) or "never"
            lines.append(f"ok watcher {name}: last success {success}")
        else:
            ok = False
            lines.append(f"UNHEALTHY watcher {name}: {problem}")
    return ok, lines


def _watcher_problem(state: WatcherState, threshold: int) -> str | None:
    if state.disabled_reason:
        return f"disabled: {state.disabled_reason}"
    if state.consecutive_failures >= threshold:
        since = format_time(state.last_success_at) or "never"
        return (
            f"{state.consecutive_failures} failed polls in a row (last success {since}); "
            f"last error: {state.last_error or 'unknown'}"
        )
    return None


def recent_violations(
    sessions: sessionmaker[Session], now: datetime, case_ids: Iterable[str]
) -> dict[str, tuple[int, int]]:
    """Per case, violations within the order period first seen in the last 24 h and 7 d."""
    day, week = now - timedelta(days=1), now - timedelta(days=7)
    query = (
        select(
            Violation.case_id,
            func.count().filter(Violation.first_seen >= day),
            func.count(),
        )
        .where(Violation.in_order_period.is_(True), Violation.first_seen >= week)
        .group_by(Violation.case_id)
    )
    counts = {case_id: (0, 0) for case_id in case_ids}
    with sessions() as session:
        for case_id, last_day, last_week in session.execute(query):
            if case_id in counts:
                counts[case_id] = (int(last_day), int(last_week))
    return counts
