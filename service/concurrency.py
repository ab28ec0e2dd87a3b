"""Polling many sources at once, politely: at most ``max_concurrent_polls`` polls in
flight in the process, and at most ``PER_HOST`` of them against one host, so that a
clinic's hundreds of feeds take one round trip's time, not hundreds, and no platform
sees a burst from us. Each watcher's poll stays whole (fetch, match, store in one
transaction), so database writes stay serialised per watcher.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar
from urllib.parse import urlsplit

from watchers.base import WatcherSettings

PER_HOST = 2
# Settings fields that name where a watcher connects, in order of preference.
_ENDPOINT_FIELDS = ("url", "instance_url", "base_url", "oauth_url", "service_url", "host")

T = TypeVar("T")


def endpoint_host(settings: WatcherSettings) -> str:
    """The host a watcher talks to (lower-cased), or its type when it names none."""
    for field in _ENDPOINT_FIELDS:
        value = getattr(settings, field, None)
        if not isinstance(value, str) or not value:
            continue
        host = urlsplit(value).hostname if "://" in value else value
        if host:
            return host.lower()
    return settings.type


class HostLimiter:
    """A semaphore per host, made on first use."""

    def __init__(self, per_host: int = PER_HOST) -> None:
        self._per_host = per_host
        self._lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = {}

    @contextmanager
    def slot(self, host: str) -> Iterator[None]:
        with self._lock:
            semaphore = self._slots.setdefault(host, threading.BoundedSemaphore(self._per_host))
        with semaphore:
            yield


def run_bounded(
    work: Callable[[WatcherSettings], T],
    watchers: Sequence[WatcherSettings],
    *,
    max_workers: int,
    limiter: HostLimiter | None = None,
) -> list[T]:
    """``work(w)`` for every watcher, concurrently within the bounds; results in the
    watchers' order."""
    limiter = limiter or HostLimiter()

    def one(settings: WatcherSettings) -> T:
        with limiter.slot(endpoint_host(settings)):
            return work(settings)

    if len(watchers) <= 1:
        return [one(w) for w in watchers]
    with ThreadPoolExecutor(max_workers=min(max_workers, len(watchers))) as pool:
        return list(pool.map(one, watchers))


def hosts(watchers: Iterable[WatcherSettings]) -> dict[str, str]:
    """Watcher name → the host it talks to."""
    return {w.display_name: endpoint_host(w) for w in watchers}
