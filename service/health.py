"""Is the service alive and are its watchers working? (``nocontact status --health``)

The running service writes a ``Heartbeat`` row per instance every ~30 s (``beat``).
Health is read from the store alone, so it works from a container HEALTHCHECK, a
cron job or another machine pointed at the same PostgreSQL database.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.evidence import format_time
from service.models import Heartbeat, WatcherState

log = logging.getLogger(__name__)

PING_TIMEOUT_SECONDS = 10

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
    watcher_every: Mapping[str, timedelta] | None = None,
) -> HealthReport:
    """Unhealthy when no instance has beaten within ``stale_after``, or a watcher is
    disabled or has failed ``failure_threshold`` polls in a row.

    ``watcher_names`` limits the check to the configured watchers, so that the state
    row of a watcher removed from the config cannot keep the service unhealthy.
    ``watcher_every`` (name → interval) also makes a watcher unhealthy that has not
    succeeded since the running service started, once that is longer than 2 × its
    interval: a source that never works must not look healthy."""
    with sessions() as session:
        beats = list(session.scalars(select(Heartbeat).order_by(Heartbeat.beat_at.desc())))
        states = list(session.scalars(select(WatcherState).order_by(WatcherState.name)))
    heartbeat_ok, lines = _heartbeat_lines(beats, now, stale_after)
    fresh = [b.started_at for b in beats if now - b.beat_at <= stale_after]
    silent = _silent_since_start(states, watcher_every or {}, min(fresh) if fresh else None, now)
    watchers_ok, watcher_lines = _watcher_lines(states, watcher_names, failure_threshold, silent)
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
    return True, [
        f"ok heartbeat: {b.instance} beat {_ago(now, b.beat_at)}, "
        f"running since {format_time(b.started_at)}"
        for b in fresh
    ]


def _silent_since_start(
    states: list[WatcherState],
    every: Mapping[str, timedelta],
    started: datetime | None,
    now: datetime,
) -> dict[str, str]:
    """Watchers with no success since the service started, past 2 × their interval."""
    if started is None:
        return {}
    successes = {s.name: s.last_success_at for s in states}
    silent: dict[str, str] = {}
    for name, interval in every.items():
        success = successes.get(name)
        if (success is None or success < started) and now - started > 2 * interval:
            silent[name] = (
                f"no successful poll since the service started at {format_time(started)} "
                f"({_ago(now, started)}; it polls every {int(interval.total_seconds())}s)"
            )
    return silent


def _watcher_lines(
    states: list[WatcherState],
    names: Iterable[str] | None,
    threshold: int,
    silent: Mapping[str, str],
) -> tuple[bool, list[str]]:
    wanted = None if names is None else list(names)
    by_name = {s.name: s for s in states}
    order = wanted if wanted is not None else [s.name for s in states]
    ok = True
    lines: list[str] = []
    for name in order:
        state = by_name.get(name)
        if state is None and name not in silent:
            lines.append(f"ok watcher {name}: not polled yet")
            continue
        problem = (_watcher_problem(state, threshold) if state else None) or silent.get(name)
        if problem is None and state is not None:
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


def ping(url: str) -> bool:
    """GET the dead-man's switch (healthchecks.io, Uptime Kuma push): "still running".

    The URL's path and query are its secret, so only its host is ever logged."""
    host = urlsplit(url).hostname or "?"
    try:
        response = httpx.get(url, timeout=PING_TIMEOUT_SECONDS, follow_redirects=True)
    except httpx.HTTPError as exc:
        log.warning("heartbeat ping to %s failed: %s", host, type(exc).__name__)
        return False
    if response.is_error:
        log.warning("heartbeat ping to %s failed: HTTP %d", host, response.status_code)
        return False
    return True
