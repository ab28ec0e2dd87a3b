"""One poller per watcher across replicas: a lease row per watcher in the store.

A replica polls a watcher only while it holds that watcher's lease. It takes or renews
the lease with one conditional UPDATE (the database serialises it, on SQLite and
PostgreSQL alike); a lease lasts ``LEASE_FACTOR`` × the watcher's ``every``, so the
holder renews it at every poll and, when the holder dies, another replica takes the
watcher over within that time. A free lease is taken only by a replica that holds
fewer than its fair share (watchers ÷ live replicas, by the heartbeat rows), unless it
has stayed free for a whole ``every``: so the watchers spread across the replicas and
none is left unpolled. A clean stop releases its leases at once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from service.models import Heartbeat, WatcherLease

LEASE_FACTOR = 2
# A replica whose heartbeat is older than this is not counted in the fair share.
LIVE = timedelta(seconds=90)


class Leases:
    def __init__(self, sessions: sessionmaker[Session], holder: str, watchers: int) -> None:
        self._sessions = sessions
        self.holder = holder
        self._watchers = watchers

    def claim(self, name: str, every: timedelta, now: datetime) -> bool:
        """Take or renew the lease on watcher ``name``; False while another live
        replica holds it, or while it is free and this replica has its fair share."""
        until = now + every * LEASE_FACTOR
        with self._sessions.begin() as session:
            renewed = session.execute(
                update(WatcherLease)
                .where(WatcherLease.name == name, WatcherLease.holder == self.holder)
                .values(until=until)
            )
            if renewed.rowcount:  # type: ignore[attr-defined]
                return True
            if not self._may_take(session, name, every, now):
                return False
            taken = session.execute(
                update(WatcherLease)
                .where(WatcherLease.name == name, WatcherLease.until < now)
                .values(holder=self.holder, until=until)
            )
            if taken.rowcount:  # type: ignore[attr-defined]
                return True
        try:
            with self._sessions.begin() as session:
                session.execute(
                    insert(WatcherLease).values(name=name, holder=self.holder, until=until)
                )
        except IntegrityError:
            return False  # another replica holds it (or took it a moment ago)
        return True

    def _may_take(self, session: Session, name: str, every: timedelta, now: datetime) -> bool:
        free_since = session.scalar(select(WatcherLease.until).where(WatcherLease.name == name))
        if free_since is not None and free_since > now:
            return False  # held by another live replica
        if free_since is not None and free_since < now - every:
            return True  # nobody else took it for a whole interval
        live = session.scalar(
            select(func.count()).select_from(Heartbeat).where(Heartbeat.beat_at >= now - LIVE)
        )
        held = session.scalar(
            select(func.count())
            .select_from(WatcherLease)
            .where(WatcherLease.holder == self.holder, WatcherLease.until >= now)
        )
        return (held or 0) < math.ceil(self._watchers / max(1, live or 0))

    def release(self, names: Iterable[str]) -> None:
        """Give up these watchers' leases so another replica takes them at once."""
        with self._sessions.begin() as session:
            session.execute(
                delete(WatcherLease).where(
                    WatcherLease.holder == self.holder, WatcherLease.name.in_(list(names))
                )
            )
