"""Settings every HTTP-speaking watcher has: the bounds of a fetch, the User-Agent and
a URL check whose errors never repeat the URL (it may carry a token)."""

from __future__ import annotations

import functools
from datetime import timedelta
from importlib.metadata import PackageNotFoundError, version
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from watchers.base import Duration, WatcherSettings
from watchers.toolkit.http import Limits

MIB = 1024 * 1024


def default_user_agent(purpose: str) -> str:
    """``nocontact/<version> (+<purpose>)``: says who asks, and why."""
    return f"nocontact/{_release()} (+{purpose})"


@functools.cache
def _release() -> str:
    # Once per process: reading the package metadata takes milliseconds, and a clinic's
    # config builds this default for each of 50,000 watchers (#15).
    try:
        return version("nocontact")
    except PackageNotFoundError:
        return "0"


def check_http_url(value: str, expected: str = "an http:// or https:// URL") -> str:
    """``value`` stripped, if it is an http(s) URL with a host; else a ValueError whose
    message does not repeat it (``expected`` says what it must be)."""
    value = value.strip()
    try:
        parts = urlsplit(value)
        host = parts.hostname
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError:
        raise ValueError("not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"must be {expected}")
    if not host:
        raise ValueError("the URL has no host")
    return value


class HttpWatcherSettings(WatcherSettings):
    """Bounds of every fetch; a watcher adds its URL(s) and its own fields."""

    # Connect and per-read timeout.
    timeout: Duration = Field(default=timedelta(seconds=10))
    # Wall-clock bound on one whole fetch (redirects, headers, body), so that a server
    # dripping a byte at a time cannot hold the watcher forever.
    deadline: Duration = Field(default=timedelta(seconds=60))
    max_bytes: int = Field(default=5 * MIB, gt=0)
    user_agent: str = Field(default_factory=lambda: default_user_agent("watcher"), min_length=1)
    max_redirects: int = Field(default=5, ge=0, le=30)

    @field_validator("timeout", "deadline")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be more than 0s")
        return value

    def limits(self) -> Limits:
        return Limits(
            timeout=self.timeout.total_seconds(),
            deadline=self.deadline.total_seconds(),
            max_bytes=self.max_bytes,
            max_redirects=self.max_redirects,
        )
