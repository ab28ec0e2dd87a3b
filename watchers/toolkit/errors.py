"""HTTP status → the watcher error hierarchy (``watchers.base``), for every HTTP watcher.

304 is not an error (the caller handles it). 401/403 → ``AuthError``; 429, and 503 with
``Retry-After`` → ``RateLimitedError``; 5xx, 404, 408, 425 → ``TransientError`` (a 404 may
be a blip during a redeploy, so the watcher keeps trying and the service's failure
alerts make a source that stays gone loud); 410 Gone and the other 4xx →
``WatcherConfigError`` (the server says the request cannot work).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from watchers.base import (
    AuthError,
    RateLimitedError,
    TransientError,
    WatcherConfigError,
    WatcherError,
)

# The server wrote the reason phrase: only this much of it is shown.
PHRASE_LIMIT = 60


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def status_error(
    status: int,
    reason: str,
    headers: Mapping[str, str],
    *,
    what: str,
    scrub: Callable[[str], str],
    noun: str = "source",
    auth_hint: str = "check the credentials",
) -> WatcherError | None:
    """The error for a non-2xx answer, or None for 2xx. ``what`` names the source
    ("feed at https://…"), already masked; ``scrub`` redacts the server's phrase."""
    if 200 <= status < 300:
        return None
    message = f"{what} answered HTTP {status}"
    # A hostile server could echo our token back in the phrase.
    phrase = scrub(reason)[:PHRASE_LIMIT]
    if phrase:
        message += f" {phrase}"
    wait = retry_after(headers.get("Retry-After"))
    if status == 429 or (status == 503 and wait is not None):
        hint = f"; retry after {wait:g}s" if wait is not None else ""
        return RateLimitedError(f"{message} (rate limited{hint})", retry_after=wait)
    if status in (401, 403):
        return AuthError(f"{message}: access refused; {auth_hint}")
    if status == 410:
        return WatcherConfigError(f"{message}: the {noun} is gone for good; check the URL")
    if status >= 500 or status in (404, 408, 425):
        return TransientError(message)
    if 400 <= status < 500:
        return WatcherConfigError(f"{message}: the request cannot work as configured")
    return TransientError(f"{message}: unexpected status")
