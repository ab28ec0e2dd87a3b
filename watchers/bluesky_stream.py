"""Jetstream, Bluesky's firehose as JSON over a WebSocket: a background reader for the
Bluesky watcher (``watchers.bluesky``).

The reader is a daemon thread that keeps one WebSocket open (the ``websockets`` sync
client), appends every event it receives to a bounded buffer, and reconnects with
exponential backoff from the newest ``time_us`` it has seen. The watcher's ``poll()``
drains the buffer; the cursor the watcher stores is only advanced by what a poll has
returned, so events buffered but not yet stored are read again after a restart.

Jetstream events are not strictly ordered by ``time_us`` (several relays feed one
instance), so a resumed stream starts ``REWIND_US`` earlier than the cursor: events seen
twice are the same items, which the store keeps once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import ClientConnection, connect

from watchers.toolkit.redact import mask_url

log = logging.getLogger(__name__)

POST_COLLECTION = "app.bsky.feed.post"
# Jetstream refuses more wantedDids than this on one connection.
MAX_WANTED_DIDS = 10_000
# Resume this far before the newest event seen: events arrive slightly out of order.
REWIND_US = 5_000_000
# Events kept in memory between polls; beyond this the oldest are dropped and the loss
# is reported as a gap (a poll interval far too long for ``network: all``).
MAX_BUFFER = 200_000
BACKOFF_START = 1.0
BACKOFF_MAX = 60.0
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
BUFFER_FULL = "too many events between two polls"
# The stream counts as live when quiet this long, or when its events are this recent.
CAUGHT_UP_IDLE = 0.5
CAUGHT_UP_US = 10_000_000


def us_to_datetime(time_us: int) -> datetime:
    return datetime.fromtimestamp(time_us / 1_000_000, tz=UTC)


def datetime_to_us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


@dataclasses.dataclass(frozen=True, slots=True)
class StreamEvent:
    """One Jetstream event: its JSON as received and the decoded object."""

    time_us: int
    kind: str
    did: str
    body: dict[str, Any]
    raw: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class StreamGap:
    """Events between ``start_us`` and ``end_us`` that the stream could not deliver."""

    start_us: int
    end_us: int
    reason: str


def parse_event(message: str | bytes) -> StreamEvent | None:
    """A Jetstream event from one WebSocket message, or None when it is not one
    (garbage is skipped, never fatal: one bad event must not stop the stream)."""
    raw = message.encode("utf-8") if isinstance(message, str) else message
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    time_us, kind, did = body.get("time_us"), body.get("kind"), body.get("did")
    if not (isinstance(time_us, int) and isinstance(kind, str) and isinstance(did, str)):
        return None
    return StreamEvent(time_us=time_us, kind=kind, did=did, body=body, raw=raw)


def subscribe_url(
    base: str, collections: Iterable[str], dids: Iterable[str], cursor_us: int | None
) -> str:
    """The subscribe URL with Jetstream's filters (repeated query parameters)."""
    params: list[tuple[str, str]] = [("wantedCollections", c) for c in collections]
    params += [("wantedDids", d) for d in sorted(dids)]
    if cursor_us is not None:
        params.append(("cursor", str(max(0, cursor_us - REWIND_US))))
    separator = "&" if urlsplit(base).query else "?"
    return base + (separator + urlencode(params) if params else "")


# Seconds between two wakes of the running service's poll: new events reach the store
# within about this long, however fast they arrive, and a busy stream costs the AppView
# at most one round of reads per interval.
WAKE_EVERY = 5.0


class JetstreamReader:
    """Reads Jetstream in a daemon thread; ``drain()`` hands over what arrived."""

    def __init__(
        self,
        url: str,
        *,
        dids: frozenset[str],
        cursor_us: int | None,
        replay_window: timedelta,
        open_timeout: float,
        clock: Callable[[], datetime],
        on_event: Callable[[], None] | None = None,
    ) -> None:
        self._base_url = url
        # Told (at most once per WAKE_EVERY seconds) that events wait in the buffer.
        self._on_event = on_event
        self._last_wake = 0.0
        self._dids = dids
        self._cursor_us = cursor_us
        self._replay_us = int(replay_window.total_seconds() * 1_000_000)
        self._open_timeout = open_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._events: deque[StreamEvent] = deque()
        self._gaps: list[StreamGap] = []
        self._stop = threading.Event()
        self._connection: ClientConnection | None = None
        self._thread = threading.Thread(target=self._run, name="jetstream", daemon=True)
        self.connected = threading.Event()
        self.last_error: str | None = None
        self.connects = 0
        # time.monotonic() of the last message or connection; for "caught up" checks.
        self.last_activity = time.monotonic()
        self.newest_us: int | None = None

    def start(self) -> None:
        self._thread.start()

    @property
    def dids(self) -> frozenset[str]:
        return self._dids

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        connection = self._connection
        if connection is not None:
            connection.close()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def drain(self) -> tuple[list[StreamEvent], list[StreamGap]]:
        with self._lock:
            events = list(self._events)
            self._events.clear()
            gaps, self._gaps = self._gaps, []
        return events, gaps

    def requeue(self, events: list[StreamEvent], gaps: list[StreamGap]) -> None:
        """Put back what a failed poll drained, ahead of what arrived since."""
        with self._lock:
            self._events.extendleft(reversed(events))
            self._gaps[:0] = gaps

    def caught_up(self, now_us: int, idle: float = CAUGHT_UP_IDLE) -> bool:
        """Connected, and either quiet for ``idle`` seconds (a filtered stream has sent
        everything it had) or delivering events from the last ``CAUGHT_UP_US``."""
        if not self.connected.is_set():
            return False
        if time.monotonic() - self.last_activity >= idle:
            return True
        return self.newest_us is not None and self.newest_us >= now_us - CAUGHT_UP_US

    def wait_caught_up(self, idle: float, limit: float) -> bool:
        """Wait until the stream is connected and has been quiet for ``idle`` seconds
        (the replay from the cursor is done), at most ``limit`` seconds."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.connected.is_set() and time.monotonic() - self.last_activity >= idle:
                return True
            time.sleep(min(idle / 4, 0.05))
        return False

    # ------------------------------------------------------------ the thread

    def _run(self) -> None:
        delay = BACKOFF_START
        while not self._stop.is_set():
            self._check_replay_window()
            url = subscribe_url(self._base_url, [POST_COLLECTION], self._dids, self._cursor_us)
            try:
                with connect(
                    url, open_timeout=self._open_timeout, max_size=MAX_MESSAGE_BYTES
                ) as connection:
                    self._connection = connection
                    self.connects += 1
                    self.last_error = None
                    self.last_activity = time.monotonic()
                    self.connected.set()
                    delay = BACKOFF_START
                    for message in connection:
                        self._receive(message)
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
                self._failed(f"cannot connect to {mask_url(self._base_url)} ({type(exc).__name__})")
            except ConnectionClosed as exc:
                self._failed(f"Jetstream connection closed ({exc.rcvd.code if exc.rcvd else 1006})")
            finally:
                self._connection = None
                self.connected.clear()
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, BACKOFF_MAX)

    def _failed(self, message: str) -> None:
        if not self._stop.is_set():
            self.last_error = message
            log.info("bluesky: %s; reconnecting", message)

    def _receive(self, message: str | bytes) -> None:
        self.last_activity = time.monotonic()
        event = parse_event(message)
        if event is None:
            return
        with self._lock:
            if len(self._events) >= MAX_BUFFER:
                dropped = self._events.popleft()
                last = self._gaps[-1] if self._gaps else None
                if last is not None and last.reason == BUFFER_FULL:
                    self._gaps[-1] = StreamGap(last.start_us, dropped.time_us, BUFFER_FULL)
                else:
                    self._gaps.append(StreamGap(dropped.time_us, dropped.time_us, BUFFER_FULL))
            self._events.append(event)
        if self._cursor_us is None or event.time_us > self._cursor_us:
            self._cursor_us = event.time_us
        if self.newest_us is None or event.time_us > self.newest_us:
            self.newest_us = event.time_us
        now = time.monotonic()
        if self._on_event is not None and now - self._last_wake >= WAKE_EVERY:
            # At whole-network rates a wake per event would poll without pause.
            self._last_wake = now
            self._on_event()

    def _check_replay_window(self) -> None:
        """A cursor older than Jetstream keeps cannot be replayed whole: say so."""
        if self._cursor_us is None:
            return
        oldest = datetime_to_us(self._clock()) - self._replay_us
        if self._cursor_us < oldest:
            with self._lock:
                self._gaps.append(
                    StreamGap(self._cursor_us, oldest, "older than Jetstream's replay window")
                )
            self._cursor_us = oldest + REWIND_US
