"""Monitoring coverage (#14 item 3, DESIGN principle 10): when each source was watched,
and every gap with its reason, recorded in the chain.

Compact: one row per watcher holds its open period (first and last successful poll of
the current unbroken run). A run breaks when two successful polls are further apart
than the watcher's tolerance (twice its interval plus a minute): then the run becomes
a ``coverage`` chain record ``{"status": "watched", "from", "to"}`` and the hole
becomes ``{"status": "gap", "from", "to", "reason"}`` — the first error seen in it, or
"not polled" when nothing ran (the service was stopped, the machine was down). An
export closes the open runs into the chain too, so that the packet's coverage is
chained up to its last poll.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from service import chain
from service.db import database_errors, session_factory
from service.evidence import format_time
from service.models import ChainRecord, CoverageState

NOT_POLLED = "not polled: the service was not running or could not reach its database"
_SLACK = timedelta(minutes=1)


def tolerance(every: timedelta) -> timedelta:
    """The longest pause between two good polls that still counts as watched."""
    return every * 2 + _SLACK


@dataclasses.dataclass(frozen=True, slots=True)
class Period:
    watcher: str
    status: str  # watched | gap
    start: datetime
    end: datetime
    reason: str | None = None
    chained: bool = True  # False for the open period not yet in the chain


@dataclasses.dataclass(frozen=True, slots=True)
class Watched:
    """A successful poll's coverage: the watcher's interval and the cases it serves."""

    every: timedelta
    cases: tuple[str, ...]


def record_success(session: Session, watcher: str, watched: Watched, now: datetime) -> None:
    """Extend the watcher's open run to ``now``, or chain the run and the gap before it
    when the pause was too long; in the caller's transaction (``Store.record_poll``
    records it with the poll's evidence)."""
    row = session.get(CoverageState, watcher, with_for_update=True)
    if row is None:
        session.add(
            CoverageState(
                watcher=watcher, period_start=now, last_success=now, cases=list(watched.cases)
            )
        )
        return
    if now - row.last_success > tolerance(watched.every):
        _close(session, row, now, end=row.last_success)
        reason = row.gap_reason or NOT_POLLED
        _append(session, row, "gap", row.last_success, now, now, reason)
        row.period_start = now
    row.last_success = now
    row.gap_reason = None
    row.cases = list(watched.cases)


class Coverage:
    """Records polls as coverage; reads a case's coverage for the packet."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._write = session_factory(engine)

    def success(self, watcher: str, every: timedelta, cases: Sequence[str], now: datetime) -> None:
        with database_errors(self.engine), self._write.begin() as session:
            record_success(session, watcher, Watched(every, tuple(cases)), now)

    def failure(self, watcher: str, message: str) -> None:
        """Remember the first error since the last good poll: a gap's reason."""
        with database_errors(self.engine), self._write.begin() as session:
            row = session.get(CoverageState, watcher, with_for_update=True)
            if row is not None and row.gap_reason is None:
                row.gap_reason = message


def close_open_periods(sessions: sessionmaker[Session], now: datetime) -> None:
    """Write every open run into the chain (at export), and start anew from its end."""
    with sessions.begin() as session:
        for row in session.scalars(select(CoverageState).with_for_update()):
            if row.last_success > row.period_start:
                _close(session, row, now, end=row.last_success)
                row.period_start = row.last_success


def case_records(session: Session, case_id: str) -> list[ChainRecord]:
    """The coverage chain records of the case's watchers, for the packet."""
    return [
        row
        for row in chain.iter_records(session, "coverage")
        if case_id in json.loads(row.data).get("cases", [])
    ]


def _close(session: Session, row: CoverageState, now: datetime, *, end: datetime) -> None:
    if end > row.period_start:
        _append(session, row, "watched", row.period_start, end, now, None)


def _append(
    session: Session,
    row: CoverageState,
    status: str,
    start: datetime,
    end: datetime,
    now: datetime,
    reason: str | None,
) -> None:
    data: dict[str, object] = {
        "watcher": row.watcher,
        "cases": sorted(row.cases),
        "status": status,
        "from": format_time(start),
        "to": format_time(end),
    }
    if reason is not None:
        data["reason"] = reason
    chain.append(session, "coverage", data, now)


def periods_for_case(session: Session, case_id: str) -> list[Period]:
    """The case's watchers' coverage: chained periods and gaps, then the open runs."""
    found: list[Period] = []
    for row in chain.iter_records(session, "coverage"):
        data = json.loads(row.data)
        if case_id not in data.get("cases", []):
            continue
        found.append(
            Period(
                watcher=str(data["watcher"]),
                status=str(data["status"]),
                start=datetime.fromisoformat(data["from"].replace("Z", "+00:00")),
                end=datetime.fromisoformat(data["to"].replace("Z", "+00:00")),
                reason=data.get("reason"),
            )
        )
    for state in session.scalars(select(CoverageState).order_by(CoverageState.watcher)):
        if case_id in state.cases and state.last_success > state.period_start:
            found.append(
                Period(
                    state.watcher, "watched", state.period_start, state.last_success, chained=False
                )
            )
    return sorted(found, key=lambda p: (p.watcher, p.start, p.status))


def gap_days(periods: Iterable[Period], zone: ZoneInfo) -> set[date]:
    """Local days touched by a gap, for shading the chart."""
    days: set[date] = set()
    for period in periods:
        if period.status != "gap":
            continue
        day = period.start.astimezone(zone).date()
        last = period.end.astimezone(zone).date()
        while day <= last:
            days.add(day)
            day += timedelta(days=1)
    return days
