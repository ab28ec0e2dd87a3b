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
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from service.coverage import Coverage, Watched
from service.db import StoreError
from service.hits import Hit
from service.logsetup import settings_secrets
from service.matching import Matcher
from service.retention import Retention, Split
from service.settings import CaseSettings, Settings
from service.store import PollRecord, Store
from watchers.base import (
    AccountInfo,
    AuthError,
    Observation,
    PollResult,
    RateLimitedError,
    Targets,
    Wakeable,
    Watcher,
    WatcherError,
    WatcherSettings,
)
from watchers.toolkit.redact import Redactor

log = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(hours=1)
# The least deadline of a whole poll (fetch, parse, match); see ``_poll_deadline``.
POLL_DEADLINE = timedelta(seconds=120)
ERROR_LIMIT = 300


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
    # A store or matcher error: the service's fault, not the watcher's.
    service_error: bool = False
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
        monotonic: Callable[[], float] = time.monotonic,
        poll_deadline: timedelta | None = None,
    ) -> None:
        """``poll_deadline`` overrides every watcher's whole-poll deadline (tests)."""
        self.settings = settings
        self._monotonic = monotonic
        self.poll_deadline = poll_deadline
        self.store = store
        self.retention = Retention(store.engine)
        self.coverage = Coverage(store.engine)
        self.clock = clock
        self.matcher = Matcher(settings.cases)
        # The one redaction step for every error line that leaves a watcher (stored in
        # watcher_state.last_error, printed, alerted): the config's secrets, those the
        # watchers registered, credential patterns, URLs masked.
        self._redactor = Redactor(settings_secrets(settings), apprise_urls=True, registered=True)
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
        """One poll; never raises. Only the watcher's own call is a watcher failure:
        a store or matcher error is a service error (``_service_error``)."""
        settings = self._watcher_settings[name]
        deadline = _Deadline(self._poll_deadline(settings), self._monotonic)
        try:
            view = self.store.watcher_state(name)
        except Exception as exc:  # noqa: BLE001 -- a service error, reported by _service_error
            return self._service_error(settings, "reading its state", exc)
        if view is not None and view.disabled_reason:
            return PollOutcome(name, ok=False, error=view.disabled_reason, disabled=True)
        try:
            watcher = self.watcher(name)
            result = watcher.poll(dict(view.cursor) if view is not None else {})
            deadline.check("fetching and parsing")
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
        try:
            return self._store(settings, watcher, result, deadline)
        except PollDeadlineError as exc:
            return self._failed(settings, exc)
        except Exception as exc:  # noqa: BLE001 -- a service error, reported by _service_error
            return self._service_error(settings, "storing its results", exc)

    def _store(
        self, settings: WatcherSettings, watcher: Watcher, result: PollResult, deadline: _Deadline
    ) -> PollOutcome:
        name = settings.display_name
        screened = self.store.screen(result.observations)
        new = screened.fresh
        hits = self._match(settings, watcher, new, deadline)
        kept = self._keep_the_case(settings, watcher, new, hits, screened.held)
        now = self.clock()
        served = tuple(case.id for case in self.settings.cases_for(settings))
        recorded = self.store.record_poll(
            PollRecord(
                watcher=name,
                watcher_type=settings.type,
                observations=kept.kept,
                hits=kept.hits,
                state=result.state,
                status_notes=result.status_notes,
                now=now,
                gone=result.gone,
                markers=kept.markers,
                watched=Watched(settings.every, served),
            )
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

    def _poll_deadline(self, settings: WatcherSettings) -> float:
        """The whole poll's deadline: the fetch's own deadline, when the watcher has
        one, and as long again for parsing and matching."""
        if self.poll_deadline is not None:
            return self.poll_deadline.total_seconds()
        fetch = getattr(settings, "deadline", None)
        seconds = fetch.total_seconds() if isinstance(fetch, timedelta) else 0.0
        return max(2 * seconds, POLL_DEADLINE.total_seconds())

    def _match(
        self,
        settings: WatcherSettings,
        watcher: Watcher,
        observations: list[Observation],
        deadline: _Deadline,
    ) -> dict[int, list[Hit]]:
        # Resolved once per poll, not per observation (thousands of case ids, #15).
        case_ids = self.matcher.case_filter(case.id for case in self.settings.cases_for(settings))
        lookup = _lookup(watcher)
        hits: dict[int, list[Hit]] = {}
        for index, observation in enumerate(observations):
            deadline.check("matching")
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
        held: frozenset[tuple[str, str]],
    ) -> Split:
        """What becomes evidence; the rest only leaves a marker (service.retention)."""
        case_ids = self.matcher.case_filter(case.id for case in self.settings.cases_for(settings))
        lookup = _lookup(watcher)
        return self.retention.split(
            new,
            hits,
            lambda obs: self.matcher.involved(obs, case_ids, account_lookup=lookup),
            held=held,
        )

    def _service_error(self, settings: WatcherSettings, stage: str, exc: Exception) -> PollOutcome:
        """A store or matcher error: not the watcher's fault, so never counted as a
        watcher failure. Logged with its cause, alerted to the operator once per kind."""
        name = settings.display_name
        cause = str(exc) if isinstance(exc, StoreError) else "details in the log"
        message = self._redactor.one_line(
            f"service error while {stage} for watcher {name}: {type(exc).__name__} ({cause})",
            ERROR_LIMIT,
        )
        log.error("%s", message)
        log.error("cause of the service error in watcher %s", name, exc_info=exc)
        try:
            self.store.record_service_error(
                name, message, f"{stage}:{type(exc).__name__}", self.clock()
            )
        except Exception as again:  # noqa: BLE001 -- the database itself may be down
            log.error("service error for watcher %s not alerted: %s", name, again)
        return PollOutcome(name, ok=False, error=message, service_error=True)

    def _failed(self, settings: WatcherSettings, exc: WatcherError) -> PollOutcome:
        """Record a failed poll; the store's planner queues any health alert with it."""
        name = settings.display_name
        message = self._redactor.one_line(str(exc) or type(exc).__name__, ERROR_LIMIT)
        disable = isinstance(exc, AuthError)
        try:
            failure = self.store.record_failure(
                name, settings.type, message, self.clock(), disable=disable
            )
            self.coverage.failure(name, message)
        except Exception as store_exc:  # noqa: BLE001 -- reported by _service_error
            outcome = self._service_error(settings, "recording its failure", store_exc)
            return dataclasses.replace(outcome, error=message)
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


def _lookup(watcher: Watcher) -> Callable[[str], AccountInfo | None]:
    """The watcher's account lookup with any error as a ``WatcherError``: the matcher
    owns what a failed lookup means (the "account age unknown" note on the hit)."""

    def lookup(handle: str) -> AccountInfo | None:
        try:
            return watcher.lookup_account(handle)
        except WatcherError:
            raise
        except Exception as exc:
            log.debug("account lookup in watcher %s raised", watcher.name, exc_info=True)
            raise WatcherError(f"unexpected {type(exc).__name__} in the account lookup") from None

    return lookup


class PollDeadlineError(WatcherError):
    """The poll's whole work (fetch, parse, match) took longer than its deadline."""


class _Deadline:
    def __init__(self, seconds: float, monotonic: Callable[[], float]) -> None:
        self._seconds = seconds
        self._monotonic = monotonic
        self._end = monotonic() + seconds

    def check(self, stage: str) -> None:
        if self._monotonic() > self._end:
            raise PollDeadlineError(
                f"poll took longer than its deadline of {self._seconds:.0f}s "
                f"(while {stage}); its results were not stored"
            )
