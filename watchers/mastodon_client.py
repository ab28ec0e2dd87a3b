"""What sits between the Mastodon watcher and Mastodon.py: a read-only HTTP session that
keeps each answer's bytes, the translation of Mastodon.py's errors, and the user-stream
listener that wakes the watcher.

Mastodon.py parses answers into its own types (dates become ``datetime``, unknown
fields may be dropped); evidence must be the JSON as the instance sent it, so the
session keeps the body of the last answer of each thread and the watcher reads that.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from mastodon import errors as mastodon_errors
from mastodon.streaming import StreamListener

from watchers.base import (
    AuthError,
    RateLimitedError,
    TransientError,
    WatcherError,
    utc,
)
from watchers.mastodon_entities import parse_time
from watchers.toolkit.redact import Redactor

log = logging.getLogger(__name__)

# Mastodon's rate-limit window is five minutes; without a reset time, wait one window.
DEFAULT_RETRY_AFTER = 300.0


class ReadOnlyViolation(WatcherError):
    """Something tried a write through the Mastodon session; nocontact never writes."""


class ReadOnlySession(requests.Session):
    """The session under Mastodon.py: GET only, with the last answer kept per thread."""

    def __init__(self) -> None:
        super().__init__()
        self._last = threading.local()

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        verb = (method.decode() if isinstance(method, bytes) else method).upper()
        if verb != "GET":
            # Never a post, favourite, boost, follow, block, mute, report, dismissal or
            # marker update: engaging with the restrained party can hurt the case.
            raise ReadOnlyViolation(f"mastodon: refused a {verb} request; nocontact is read-only")
        response = super().request(verb, url, *args, **kwargs)
        if not kwargs.get("stream"):
            self._last.body = response.content
            self._last.headers = dict(response.headers)
        return response

    def last_json(self, what: str) -> Any:
        body = getattr(self._last, "body", None)
        try:
            return json.loads(body) if body is not None else None
        except ValueError as exc:
            raise TransientError(f"mastodon: {what}: answer is not JSON") from exc

    def last_headers(self) -> dict[str, str]:
        headers: dict[str, str] = getattr(self._last, "headers", {})
        return headers


def retry_after(headers: dict[str, str], now: datetime) -> float:
    """Seconds until ``X-RateLimit-Reset``, measured on the server's own clock (its
    ``Date``) when it sends one, so that a skewed local clock cannot shorten the wait."""
    lowered = {k.lower(): v for k, v in headers.items()}
    reset = parse_time(lowered.get("x-ratelimit-reset"))
    if reset is None:
        return DEFAULT_RETRY_AFTER
    reference = utc(now)
    if "date" in lowered:
        with suppress(TypeError, ValueError):
            reference = utc(parsedate_to_datetime(lowered["date"]))
    return max(0.0, (utc(reset) - reference).total_seconds())


@contextmanager
def translated_errors(
    what: str, instance: str, secret: str, session: ReadOnlySession, now: Callable[[], datetime]
) -> Iterator[None]:
    """Mastodon.py's exceptions as the watcher error hierarchy: one line, no token."""
    scrub = Redactor([secret])
    try:
        yield
    except WatcherError:
        raise
    except mastodon_errors.MastodonRatelimitError as exc:
        wait = retry_after(session.last_headers(), now())
        raise RateLimitedError(
            f"mastodon: rate limited on {what} (429); retrying in {wait:.0f}s", retry_after=wait
        ) from exc
    except mastodon_errors.MastodonAPIError as exc:
        raise _api_error(exc, what, scrub) from exc
    except mastodon_errors.MastodonNetworkError as exc:
        raise TransientError(f"mastodon: cannot reach {instance} for {what}") from exc
    except mastodon_errors.MastodonError as exc:
        detail = scrub.one_line(str(exc), 160)
        raise TransientError(f"mastodon: {what} failed: {detail}") from exc


def _api_error(exc: mastodon_errors.MastodonAPIError, what: str, scrub: Redactor) -> WatcherError:
    args = exc.args
    status = args[1] if len(args) > 1 and isinstance(args[1], int) else None
    detail = scrub.one_line(str(args[3] or args[2]) if len(args) > 3 else str(exc), 160)
    if status in (401, 403):
        # 401: token revoked or wrong; 403: a scope is missing or the account is disabled.
        return AuthError(
            f"mastodon: access token rejected ({status}) on {what}: {detail}; "
            "check access_token and its read scopes"
        )
    if status is None:
        return TransientError(f"mastodon: {what}: answer is not JSON")
    return TransientError(f"mastodon: {what} failed ({status}): {detail}")


class Doorbell(StreamListener):
    """Listens to the user stream and rings the watcher: the stream says *that* there is
    something new; the poll it triggers reads it from the REST API, as evidence."""

    def __init__(
        self,
        ring: Callable[[str, Any], None],
        connected: Callable[[bool], None],
    ) -> None:
        super().__init__()
        self._ring = ring
        self._connected = connected

    def handle_stream(self, response: Any) -> None:
        # Each (re)connection rings once, so the poll catches up on the gap.
        self._connected(True)
        try:
            super().handle_stream(response)  # type: ignore[no-untyped-call]
        finally:
            self._connected(False)

    def on_notification(self, notification: Any) -> None:
        self._ring("notification", notification)

    def on_status_update(self, status: Any) -> None:
        self._ring("status.update", status)

    def on_update(self, status: Any) -> None:
        self._ring("update", status)

    def on_abort(self, err: Exception) -> None:
        log.info("mastodon stream interrupted (%s); reconnecting", type(err).__name__)

    def on_unknown_event(self, name: str, unknown_event: Any = None) -> None:
        """Events of newer servers are not needed here (the poll reads everything)."""
