"""One poll of one watcher: poll → keep only new content → match → store and queue alerts.

Evidence and the alerts about it are written in one transaction by the store, before
any delivery is attempted. A failing watcher is recorded and reported; it never
raises out of here, so one platform's trouble cannot stop the others.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy.orm import Session, sessionmaker

from service.alerts import enqueue_health_alert
from service.hits import Hit
from service.matching import Matcher
from service.settings import CaseSettings, Settings
from service.store import Store, WatcherStateView
from watchers.base import (
    AccountInfo,
    AuthError,
    Observation,
    RateLimitedError,
    Targets,
    Watcher,
    WatcherError,
    WatcherSettings,
)

log = logging.getLogger(__name__)

HealthEvent = Literal["failing", "recovered", "disabled"]

FAILURE_ALERT_THRESHOLD = 3
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
        sessions: sessionmaker[Session],
        store: Store,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.store = store
        self.clock = clock
        self.matcher = Matcher(settings.cases)
        self._cases = {case.id: case for case in settings.cases}
        self._watchers: dict[str, Watcher] = {}
        self._watcher_settings = {w.display_name: w for w in settings.watchers}

    def watcher(self, name: str) -> Watcher:
        if name not in self._watchers:
            self._watchers[name] = build_watcher(self.settings, self._watcher_settings[name])
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
            new = self.store.new_observations(result.observations)
            hits = self._match(settings, watcher, new)
        except WatcherError as exc:
            return self._failed(settings, exc, _episode(view))
        except Exception as exc:  # a bug in one watcher must not stop the others
            # Its text may carry a URL with a token, so only the type is recorded.
            log.debug("watcher %s raised", name, exc_info=True)
            error = WatcherError(
                f"unexpected {type(exc).__name__} in the {settings.type} watcher "
                "(details in the log with --debug)"
            )
            return self._failed(settings, error, _episode(view))
        now = self.clock()
        recorded = self.store.record_poll(
            name,
            settings.type,
            new,
            hits,
            result.state,
            result.status_notes,
            self._cases,
            self.settings.alerts,
            now,
        )
        if view is not None and view.failing_alerted:
            log.info("watcher %s recovered", name)
            with self.sessions.begin() as session:
                enqueue_health_alert(
                    session,
                    self.settings,
                    watcher=name,
                    event="recovered",
                    message=f"watcher {name} is working again",
                    episode=_episode(view),
                    now=now,
                )
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
        case_ids = [case.id for case in self.settings.cases_for(settings)]
        lookup = _SafeLookup(watcher)
        hits: dict[int, list[Hit]] = {}
        for index, observation in enumerate(observations):
            found = self.matcher.match(observation, case_ids, account_lookup=lookup)
            if found:
                hits[index] = found
        return hits

    def _failed(self, settings: WatcherSettings, exc: WatcherError, episode: str) -> PollOutcome:
        name = settings.display_name
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        now = self.clock()
        disable = isinstance(exc, AuthError)
        failure = self.store.record_failure(name, settings.type, message, now, disable=disable)
        if failure.consecutive_failures == 1 or disable:
            # Logged once when a source starts failing; the recovery is logged once too.
            log.warning("watcher %s failing: %s", name, message)
        if disable:
            self._queue_health(
                name, "disabled", f"watcher {name} is disabled: {message}", episode, now
            )
        elif (
            failure.consecutive_failures >= FAILURE_ALERT_THRESHOLD and not failure.failing_alerted
        ):
            self._queue_health(
                name,
                "failing",
                f"watcher {name} is failing: {message} "
                f"({failure.consecutive_failures} failures in a row)",
                episode,
                now,
            )
            self.store.mark_failing_alerted(name)
        retry_after = self._backoff(settings, failure.consecutive_failures)
        if isinstance(exc, RateLimitedError) and exc.retry_after:
            retry_after = max(retry_after, timedelta(seconds=exc.retry_after))
        return PollOutcome(name, ok=False, error=message, disabled=disable, retry_after=retry_after)

    def _queue_health(
        self, watcher: str, event: HealthEvent, message: str, episode: str, now: datetime
    ) -> None:
        with self.sessions.begin() as session:
            enqueue_health_alert(
                session,
                self.settings,
                watcher=watcher,
                event=event,
                message=message,
                episode=episode,
                now=now,
            )

    @staticmethod
    def _backoff(settings: WatcherSettings, failures: int) -> timedelta:
        """Poll a failing source less often, up to an hour (or its own interval)."""
        if failures <= 1:
            return settings.every
        factor: int = 2 ** min(failures - 1, 10)
        grown: timedelta = settings.every * factor
        return min(grown, max(settings.every, MAX_BACKOFF))


def _episode(view: WatcherStateView | None) -> str:
    """Names one run of failures: the last success before it. Health alerts are keyed
    on it, so each run of failures alerts once, and its recovery once."""
    if view is None or view.last_success_at is None:
        return "never-succeeded"
    return view.last_success_at.strftime("%Y%m%dT%H%M%SZ")


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
