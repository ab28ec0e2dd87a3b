"""The running service: APScheduler jobs for watchers, alert delivery and the heartbeat.

Each watcher is its own job at its own ``every`` with jitter, coalesced and never
overlapping itself; a failing or rate-limited watcher has its next run pushed back.
SIGTERM / SIGINT stop the scheduler after the polls in flight have been stored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
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
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import update

from service.alerts import AlertDispatcher, DeliveryReport
from service.concurrency import HostLimiter, hosts, run_bounded
from service.config import LoadedConfig
from service.db import make_engine, migrate, session_factory
from service.evidence_settings import RecheckSettings
from service.health import ONCE_SUFFIX, beat, ping
from service.leases import Leases
from service.models import WatcherState
from service.pipeline import Pipeline, PollOutcome
from service.planner import AlertPlanner
from service.recheck import Change, Rechecker
from service.store import Store
from watchers.base import Watcher

log = logging.getLogger(__name__)

ALERT_INTERVAL = timedelta(seconds=15)
HEARTBEAT_INTERVAL = timedelta(seconds=30)


# How often due re-checks are looked for; each item's own schedule decays (1 h … 30 d).
# Delivery, heartbeat, re-check and timestamping: each has a thread of its own in the
# service pool, apart from the polls, so none waits behind a stuck source.
SERVICE_JOBS = 4
RECHECK_INTERVAL = timedelta(minutes=15)


def utcnow() -> datetime:
    return datetime.now(UTC)


# Polls one slot of the pool is assumed to start per second at the least (a poll is a
# round trip or two and its storing): what sizes the first polls' spread below.
POLLS_PER_SLOT_SECOND = 2.0
MISFIRE_GRACE = timedelta(minutes=5)


def first_poll_spread(watchers: int, every: timedelta, slots: int = 16) -> float:
    """Seconds over which the first polls are spread, so that a restart does not hit
    every platform in the same second: none for one watcher (it polls at once, #15),
    a tenth of a second per further watcher, at most five seconds; but when the pool's
    ``slots`` cannot start them all in that time, over as long as they need, up to the
    watcher's ``every``. Otherwise a clinic's 50,000 watchers would all be due at once
    and those still waiting in the pool after ``MISFIRE_GRACE`` would be dropped as
    missed, every interval again (#15)."""
    quick = min(5.0, 0.1 * max(0, watchers - 1))
    needed = max(0, watchers - 1) / (max(1, slots) * POLLS_PER_SLOT_SECOND)
    return min(max(quick, needed), every.total_seconds())


@dataclasses.dataclass(frozen=True, slots=True)
class OnceReport:
    polls: list[PollOutcome]
    delivery: DeliveryReport


class Service:
    """The store, pipeline and dispatcher for one config, built once per process."""

    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        clock: Callable[[], datetime] = utcnow,
        intervals: tuple[timedelta, timedelta] = (ALERT_INTERVAL, HEARTBEAT_INTERVAL),
    ) -> None:
        """``intervals`` are (alert delivery, heartbeat); tests shorten them."""
        self.loaded = loaded
        self.settings = loaded.settings
        self.clock = clock
        self.engine = make_engine(
            self.settings.database,
            loaded.base_dir,
            connections=self.settings.max_concurrent_polls + SERVICE_JOBS,
        )
        migrate(self.engine)
        self.sessions = session_factory(self.engine)
        self.planner = AlertPlanner.from_settings(self.settings)
        self.store = Store(self.engine, cases=self.settings.cases, planner=self.planner)
        self.store.sync_cases(self.settings.cases, clock())
        self._enable_watchers_again()
        self.pipeline = Pipeline(self.settings, self.store, clock=clock)
        self.timestamping = self.settings.evidence.timestamping
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self.dispatcher = AlertDispatcher(self.settings, self.sessions, instance=self.instance)
        self.limiter = HostLimiter()
        self.hosts = hosts(self.settings.watchers)
        self.leases = Leases(self.sessions, self.instance, len(self.settings.watchers))
        self.started_at = clock()
        # Watchers asked to poll again early, and those polling now (see ``_wake``).
        self._woken: set[str] = set()
        self._polling: set[str] = set()
        self._wake_lock = threading.Lock()
        self.alert_interval, self.heartbeat_interval = intervals
        # Set by a good poll, cleared by the ping it earns: the dead-man's switch is
        # pinged only while polls succeed, never when every watcher fails.
        self._good_poll = threading.Event()

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

    def heartbeat(self, *, instance: str | None = None) -> None:
        beat(self.sessions, instance or self.instance, self.started_at, self.clock())
        url = self.settings.heartbeat_url
        if url and self._good_poll.is_set():
            self._good_poll.clear()
            ping(url)

    def run_once(self) -> OnceReport:
        """Every watcher once, then every queued alert, without waiting out group_wait."""
        polls = run_bounded(
            lambda w: self.pipeline.poll(w.display_name),
            self.settings.watchers,
            max_workers=self.settings.max_concurrent_polls,
            limiter=self.limiter,
        )
        if any(poll.ok for poll in polls):
            self._good_poll.set()
        # One row per host for --once runs: `status` reports them as the last run.
        self.heartbeat(instance=self.instance.rsplit(":", 1)[0] + ONCE_SUFFIX)
        now = self.clock()
        self.store.tick(now)
        delivery = self.dispatcher.deliver_due(now, ignore_group_wait=True)
        self.stamp()
        return OnceReport(polls=polls, delivery=delivery)

    def recheck(self, *, case_id: str | None = None, every_item: bool = False) -> list[Change]:
        """Re-check captured items that are due (or all of them) for deletions and edits."""
        settings = self.settings.evidence.recheck or RecheckSettings()
        names = {w.display_name for w in self.settings.watchers}

        def watcher_for(name: str) -> Watcher | None:
            return self.pipeline.watcher(name) if name in names else None

        rechecker = Rechecker(self.sessions, self.store, watcher_for, clock=self.clock)
        return rechecker.run(settings.for_, case_id=case_id, every_item=every_item)

    def _recheck_job(self) -> None:
        changes = self.recheck()
        if changes:
            # Listed, not pushed: a deletion is evidence, not an emergency.
            log.info("re-check: %d item(s) changed on their platform", len(changes))

    def stamp(self) -> None:
        """Stamp the chain head if it changed (a TSA's failure is logged, retried at the
        next round, and never stops capture)."""
        if self.timestamping is None:
            return
        # Here, not at the top: the RFC 3161 stack (cryptography) is loaded only when a
        # config asks for timestamps (#15).
        from service.timestamping import stamp_now

        try:
            stamp_now(self.sessions, self.timestamping, clock=self.clock, force=False)
        except Exception:  # stamping is a bonus on top of capture: never let it stop a run
            log.warning("timestamping failed; retried at the next round", exc_info=True)

    def _scheduler(self) -> BackgroundScheduler:
        """Every job of the running service: one per watcher, delivery, heartbeat, and
        the evidence jobs when configured."""
        scheduler = BackgroundScheduler(
            timezone=UTC,
            # Polls in their own pool; delivery and the heartbeat in another, so that
            # however many polls are stuck, neither waits behind them.
            executors={
                "default": ThreadPoolExecutor(
                    max(1, min(self.settings.max_concurrent_polls, len(self.settings.watchers)))
                ),
                "service": ThreadPoolExecutor(SERVICE_JOBS),
            },
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": int(MISFIRE_GRACE.total_seconds()),
            },
        )
        # APScheduler runs on the wall clock; the injected clock dates what is recorded.
        now = utcnow()
        count, slots = len(self.settings.watchers), self.settings.max_concurrent_polls
        for watcher in self.settings.watchers:
            every = watcher.every.total_seconds()
            spread = first_poll_spread(count, watcher.every, slots)
            scheduler.add_job(
                self._poll_job,
                IntervalTrigger(seconds=every, jitter=min(every * 0.1, 60)),
                args=[scheduler, watcher.display_name, watcher.every],
                id=_job_id(watcher.display_name),
                name=f"poll {watcher.display_name}",
                next_run_time=now + timedelta(seconds=random.uniform(0, spread)),  # noqa: S311
            )
        self._service_jobs(scheduler, now)
        return scheduler

    def _service_jobs(self, scheduler: BackgroundScheduler, now: datetime) -> None:
        def every(interval: timedelta) -> IntervalTrigger:
            return IntervalTrigger(seconds=interval.total_seconds())

        scheduler.add_job(
            self._deliver_job,
            IntervalTrigger(seconds=self.alert_interval.total_seconds()),
            id="deliver-alerts",
            executor="service",
            next_run_time=now,
        )
        if self.settings.evidence.recheck is not None:
            scheduler.add_job(
                self._recheck_job,
                every(RECHECK_INTERVAL),
                id="recheck",
                executor="service",
                next_run_time=now + timedelta(minutes=1),
            )
        if self.timestamping is not None:
            scheduler.add_job(
                self.stamp,
                every(self.timestamping.every),
                id="timestamp",
                executor="service",
                next_run_time=now + timedelta(seconds=10),
            )
        scheduler.add_job(
            self.heartbeat,
            IntervalTrigger(seconds=self.heartbeat_interval.total_seconds()),
            id="heartbeat",
            executor="service",
            next_run_time=now,
        )

    def run_forever(self, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        scheduler = self._scheduler()

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
        self.pipeline.wakeup = functools.partial(self._wake, scheduler)
        scheduler.start()
        try:
            stop.wait()
        finally:
            # Polls in flight finish and commit; nothing half-written is left behind.
            scheduler.shutdown(wait=True)
            self.leases.release(w.display_name for w in self.settings.watchers)
            log.info("nocontact stopped")

    def _wake(self, scheduler: BackgroundScheduler, name: str) -> None:
        """A watcher's stream saw something new: poll it now. A poll in flight is not
        doubled (it could miss what came after it read): it polls again when done."""
        with self._wake_lock:
            self._woken.add(name)
            if name in self._polling:
                return
        job = scheduler.get_job(_job_id(name))
        # A paused job is a disabled watcher: a wake must not resume it.
        if job is not None and job.next_run_time is not None:
            with contextlib.suppress(JobLookupError):
                scheduler.modify_job(_job_id(name), next_run_time=self.clock())

    def _poll_job(self, scheduler: BackgroundScheduler, name: str, every: timedelta) -> None:
        if not self.leases.claim(name, every, self.clock()):
            log.debug("watcher %s: polled by another replica", name)
            return
        with self._wake_lock:
            self._woken.discard(name)
            self._polling.add(name)
        try:
            with self.limiter.slot(self.hosts.get(name, name)):
                outcome = self.pipeline.poll(name)
        finally:
            with self._wake_lock:
                self._polling.discard(name)
                again = name in self._woken
        if again and outcome.ok:
            with contextlib.suppress(JobLookupError):
                scheduler.modify_job(_job_id(name), next_run_time=self.clock())
        if outcome.ok:
            self._good_poll.set()
            if outcome.new_evidence:
                log.info(
                    "watcher %s: %d new evidence item(s), %d new violation(s)",
                    name,
                    outcome.new_evidence,
                    outcome.new_violations,
                )
            return
        if outcome.retry_after is not None and not outcome.disabled:
            scheduler.modify_job(_job_id(name), next_run_time=utcnow() + outcome.retry_after)
        if outcome.disabled:
            scheduler.pause_job(_job_id(name))

    def _deliver_job(self) -> None:
        now = self.clock()
        self.store.tick(now)  # digests due by the clock
        report = self.dispatcher.deliver_due(now)
        if report.sent or report.failed:
            log.info("alerts: %d sent, %d failed", report.sent, report.failed)


def _job_id(name: str) -> str:
    return f"watch:{name}"
