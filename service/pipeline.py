"""One poll of one watcher: poll → keep only new content → match → store.

Evidence and the alerts about it are written in one transaction by the store (its
alert planner decides the alerts), before any delivery is attempted. A failing
watcher is recorded and reported; it never raises out of here, so one platform's
trouble cannot stop the others.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from service.coverage import Coverage
from service.hits import Hit
from service.matching import Matcher
from service.retention import Retention, Split
from service.settings import CaseSettings, Settings
from service.store import PollRecord, Store
from watchers.base import (
    AccountInfo,
    AuthError,
    Observation,
    RateLimitedError,
    Targets,
    Wakeable,
    Watcher,
    WatcherError,
    WatcherSettings,
)

log = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(hours=1)


@dataclasses.dataclass(frozen=True, slots=True)
class PollOutcome:
    watcher: str
    ok: bool
    observations: int = 0
    new_evidence: int = 0
    new_violations: int = 0
    queued_alerts: int = 0
    new_outside_period: int = 0
    error: str | None = None
    disabled: bool = False
    # When the next poll should happen at the earliest (rate limits, backoff).
    retry_after: timedelta | None = None


def targets_for(platform: str, cases: list[CaseSettings]) -> Targets:
    """What a watcher on ``platform`` should look for, merged over its cases."""

    def collect(pick: Callable[[CaseSettings], Mapping[str, list[str]]]) -> frozenset[str]:
        return frozenset(h for case in cases for h in pick(case).get(platform, []))

    return Targets(
        protected_handles=collect(lambda c: c.protected.handles),
        protected_names=frozenset(
            n for c in cases for n in (*c.protected.names, *c.protected.aliases)
        ),
        restrained_handles=collect(lambda c: c.restrained.handles),
        associate_handles=collect(lambda c: c.restrained.associates),
        restrained_names=frozenset(
            n for c in cases for n in (*c.restrained.names, *c.restrained.aliases)
        ),
    )


def build_watcher(settings: Settings, watcher_settings: WatcherSettings) -> Watcher:
    from service.registry import watcher_class

    cls = watcher_class(watcher_settings.type)
    targets = targets_for(cls.platform, settings.cases_for(watcher_settings))
    factory: Any = cls
    watcher: Watcher = factory(watcher_settings, targets)
    return watcher


class Pipeline:
    """Everything a poll needs, built once per process."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.store = store
        self.retention = Retention(store.engine)
        self.coverage = Coverage(store.engine)
        self.clock = clock
        self.matcher = Matcher(settings.cases)
        self._watchers: dict[str, Watcher] = {}
        self._watcher_settings = {w.display_name: w for w in settings.watchers}
        # Set by the long-running scheduler: asks for an early poll of the named watcher
        # (a stream saw something new). Left unset, watchers simply poll (``--once``).
        self.wakeup: Callable[[str], None] | None = None

    def watcher(self, name: str) -> Watcher:
        if name not in self._watchers:
            watcher = build_watcher(self.settings, self._watcher_settings[name])
            self._watchers[name] = watcher
            if self.wakeup is not None and isinstance(watcher, Wakeable):
                try:
                    watcher.set_wakeup(functools.partial(self.wakeup, name))
                except WatcherError as exc:
                    # Push is a bonus: polling at ``every`` goes on regardless.
                    log.warning("watcher %s: push unavailable, polling only: %s", name, exc)
        return self._watchers[name]

    def close(self) -> None:
        for watcher in self._watchers.values():
            watcher.close()
        self._watchers.clear()

    def poll(self, name: str) -> PollOutcome:
        settings = self._watcher_settings[name]
        view = self.store.watcher_state(name)
        if view is not None and view.disabled_reason:
            return PollOutcome(name, ok=False, error=view.disabled_reason, disabled=True)
        try:
            watcher = self.watcher(name)
            result = watcher.poll(dict(view.cursor) if view is not None else {})
            new = self.retention.unmarked(self.store.new_observations(result.observations))
            hits = self._match(settings, watcher, new)
            kept = self._keep_the_case(settings, watcher, new, hits)
        except WatcherError as exc:
            return self._failed(settings, exc)
        except Exception as exc:  # a bug in one watcher must not stop the others
            # Its text may carry a URL with a token, so only the type is recorded.
            log.debug("watcher %s raised", name, exc_info=True)
            error = WatcherError(
                f"unexpected {type(exc).__name__} in the {settings.type} watcher "
                "(details in the log with --debug)"
            )
            return self._failed(settings, error)
        now = self.clock()
        self.retention.remember(kept.markers, now)
        recorded = self.store.record_poll(
            PollRecord(
                watcher=name,
                watcher_type=settings.type,
                observations=kept.kept,
                hits=kept.hits,
                state=result.state,
                status_notes=result.status_notes,
                now=now,
            )
        )
        served = [case.id for case in self.settings.cases_for(settings)]
        self.coverage.success(name, settings.every, served, now)
        return PollOutcome(
            name,
            ok=True,
            observations=len(result.observations),
            new_evidence=recorded.new_evidence + recorded.new_versions,
            new_violations=recorded.new_violations,
            queued_alerts=recorded.queued_alerts,
            new_outside_period=recorded.new_outside_period,
        )

    def _match(
        self, settings: WatcherSettings, watcher: Watcher, observations: list[Observation]
    ) -> dict[int, list[Hit]]:
        # Resolved once per poll, not per observation (thousands of case ids, #15).
        case_ids = self.matcher.case_filter(case.id for case in self.settings.cases_for(settings))
        lookup = _SafeLookup(watcher)
        hits: dict[int, list[Hit]] = {}
        for index, observation in enumerate(observations):
            found = self.matcher.match(observation, case_ids, account_lookup=lookup)
            if found:
                hits[index] = found
        return hits

    def _keep_the_case(
        self,
        settings: WatcherSettings,
        watcher: Watcher,
        new: list[Observation],
        hits: dict[int, list[Hit]],
    ) -> Split:
        """What becomes evidence; the rest only leaves a marker (service.retention)."""
        case_ids = self.matcher.case_filter(case.id for case in self.settings.cases_for(settings))
        lookup = _SafeLookup(watcher)
        return self.retention.split(
            new, hits, lambda obs: self.matcher.involved(obs, case_ids, account_lookup=lookup)
        )

    def _failed(self, settings: WatcherSettings, exc: WatcherError) -> PollOutcome:
        """Record a failed poll; the store's planner queues any health alert with it."""
        name = settings.display_name
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        disable = isinstance(exc, AuthError)
        now = self.clock()
        failure = self.store.record_failure(name, settings.type, message, now, disable=disable)
        self.coverage.failure(name, message)
        if failure.consecutive_failures == 1 or disable:
            # Logged once when a source starts failing; the recovery is logged once too.
            log.warning("watcher %s failing: %s", name, message)
        retry_after = self._backoff(settings, failure.consecutive_failures)
        if isinstance(exc, RateLimitedError) and exc.retry_after:
            retry_after = max(retry_after, timedelta(seconds=exc.retry_after))
        return PollOutcome(name, ok=False, error=message, disabled=disable, retry_after=retry_after)

    @staticmethod
    def _backoff(settings: WatcherSettings, failures: int) -> timedelta:
        """Poll a failing source less often, up to an hour (or its own interval)."""
        if failures <= 1:
            return settings.every
        factor: int = 2 ** min(failures - 1, 10)
        grown: timedelta = settings.every * factor
        return min(grown, max(settings.every, MAX_BACKOFF))


class _SafeLookup:
    """Account lookups are a bonus for scoring look-alikes: their failure must not
    lose the observation, so it is logged and the hit is scored without the age."""

    def __init__(self, watcher: Watcher) -> None:
        self._watcher = watcher

    def __call__(self, handle: str) -> AccountInfo | None:
        try:
            return self._watcher.lookup_account(handle)
        except WatcherError as exc:
            log.info("account lookup for %s failed: %s", handle, exc)
            return None
