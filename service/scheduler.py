"""The running service: APScheduler jobs for watchers, alert delivery and the heartbeat.

Each watcher is its own job at its own ``every`` with jitter, coalesced and never
overlapping itself; a failing or rate-limited watcher has its next run pushed back.
SIGTERM / SIGINT stop the scheduler after the polls in flight have been stored.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import signal
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import FrameType

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import update

from service.alerts import AlertDispatcher, DeliveryReport
from service.config import LoadedConfig
from service.db import make_engine, migrate, session_factory
from service.health import ONCE_SUFFIX, beat
from service.models import WatcherState
from service.pipeline import Pipeline, PollOutcome
from service.store import Store

log = logging.getLogger(__name__)

ALERT_INTERVAL = timedelta(seconds=15)
HEARTBEAT_INTERVAL = timedelta(seconds=30)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class OnceReport:
    polls: list[PollOutcome]
    delivery: DeliveryReport


class Service:
    """The store, pipeline and dispatcher for one config, built once per process."""

    def __init__(self, loaded: LoadedConfig, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.loaded = loaded
        self.settings = loaded.settings
        self.clock = clock
        self.engine = make_engine(self.settings.database, loaded.base_dir)
        migrate(self.engine)
        self.sessions = session_factory(self.engine)
        self.store = Store(self.engine)
        self.store.sync_cases(self.settings.cases, clock())
        self._enable_watchers_again()
        self.pipeline = Pipeline(self.settings, self.sessions, self.store, clock=clock)
        self.dispatcher = AlertDispatcher(self.settings, self.sessions)
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self.started_at = clock()

    def _enable_watchers_again(self) -> None:
        """A watcher disabled for bad credentials gets one new try per start, so that
        fixing the environment and restarting is all a user has to do."""
        names = [w.display_name for w in self.settings.watchers]
        with self.sessions.begin() as session:
            session.execute(
                update(WatcherState)
                .where(WatcherState.name.in_(names), WatcherState.disabled_reason.is_not(None))
                .values(disabled_reason=None)
            )

    def close(self) -> None:
        self.pipeline.close()
        self.engine.dispose()

    def heartbeat(self) -> None:
        beat(self.sessions, self.instance, self.started_at, self.clock())

    def run_once(self) -> OnceReport:
        """Every watcher once, then every queued alert, without waiting out group_wait."""
        # One row per host for --once runs: `status` reports them as the last run.
        host = self.instance.rsplit(":", 1)[0]
        beat(self.sessions, host + ONCE_SUFFIX, self.started_at, self.clock())
        polls = [self.pipeline.poll(w.display_name) for w in self.settings.watchers]
        delivery = self.dispatcher.deliver_due(self.clock(), ignore_group_wait=True)
        return OnceReport(polls=polls, delivery=delivery)

    def run_forever(self, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(max(4, len(self.settings.watchers) + 2))},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
        )
        now = self.clock()
        for watcher in self.settings.watchers:
            every = watcher.every.total_seconds()
            scheduler.add_job(
                self._poll_job,
                IntervalTrigger(seconds=every, jitter=min(every * 0.1, 60)),
                args=[scheduler, watcher.display_name],
                id=_job_id(watcher.display_name),
                name=f"poll {watcher.display_name}",
                # Spread the first polls a little so a restart does not hit every
                # platform in the same second.
                next_run_time=now + timedelta(seconds=random.uniform(0, 5)),  # noqa: S311
            )
        scheduler.add_job(
            self._deliver_job,
            IntervalTrigger(seconds=ALERT_INTERVAL.total_seconds()),
            id="deliver-alerts",
            next_run_time=now,
        )
        scheduler.add_job(
            self.heartbeat,
            IntervalTrigger(seconds=HEARTBEAT_INTERVAL.total_seconds()),
            id="heartbeat",
            next_run_time=now,
        )

        def request_stop(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s, stopping", signal.Signals(signum).name)
            stop.set()

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, request_stop)
            signal.signal(signal.SIGINT, request_stop)
        log.info(
            "nocontact running: %d watcher(s), %d case(s)",
            len(self.settings.watchers),
            len(self.settings.cases),
        )
        scheduler.start()
        try:
            stop.wait()
        finally:
            # Polls in flight finish and commit; nothing half-written is left behind.
            scheduler.shutdown(wait=True)
            log.info("nocontact stopped")

    def _poll_job(self, scheduler: BackgroundScheduler, name: str) -> None:
        outcome = self.pipeline.poll(name)
        if outcome.ok:
            if outcome.new_evidence:
                log.info(
                    "watcher %s: %d new evidence item(s), %d new violation(s)",
                    name,
                    outcome.new_evidence,
                    outcome.new_violations,
                )
            return
        if outcome.retry_after is not None and not outcome.disabled:
            scheduler.modify_job(_job_id(name), next_run_time=self.clock() + outcome.retry_after)
        if outcome.disabled:
            scheduler.pause_job(_job_id(name))

    def _deliver_job(self) -> None:
        report = self.dispatcher.deliver_due(self.clock())
        if report.sent or report.failed:
            log.info("alerts: %d sent, %d failed", report.sent, report.failed)


def _job_id(name: str) -> str:
    return f"watch:{name}"
