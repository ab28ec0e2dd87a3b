"""watchers.toolkit.http / errors / xmlguard: the bounded client every HTTP watcher
shares, driven against the local feed server (real sockets, real httpx)."""

from __future__ import annotations

import gzip
import logging
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.fakes.feed_server import FeedServer, feed_server, fixture_bytes  # noqa: F401
from watchers.base import (
    AuthError,
    RateLimitedError,
    Targets,
    TransientError,
    WatcherConfigError,
)
from watchers.rss import RssSettings, RssWatcher
from watchers.toolkit.errors import retry_after, status_error
from watchers.toolkit.http import BoundedClient, Limits, Validators, read_file
from watchers.toolkit.redact import Redactor, registered_secrets
from watchers.toolkit.xmlguard import EntityDeclared, entry_ranges

LIMITS = Limits(timeout=2, deadline=10, max_bytes=100_000, max_redirects=3)


def client(url: str = "http://127.0.0.1/") -> BoundedClient:
    return BoundedClient(LIMITS, user_agent="nocontact/test", redactor=Redactor.for_url(url))


def get(url: str, validators: Validators | None = None) -> bytes | None:
    http = client(url)
    try:
        fetched = http.get(url, what="source at test", validators=validators)
    finally:
        http.close()
    return None if fetched is None else fetched.body


@pytest.mark.parametrize(
    "location", ["data:text/xml,<rss/>", "file:///etc/passwd", "javascript:alert(1)"]
)
def test_redirect_to_a_non_http_target_is_a_one_line_error(
    feed_server: FeedServer,  # noqa: F811
    location: str,
) -> None:
    feed_server.set("/feed.xml", status=302, headers={"Location": location})

    with pytest.raises(TransientError) as caught:
        get(feed_server.url("/feed.xml"))

    scheme = location.split(":", 1)[0]
    assert str(caught.value) == (
        f"source at test failed: redirect to an unsupported protocol ({scheme}:); "
        "only http and https redirects are followed"
    )
    assert len(feed_server.requests) == 1


def test_relative_and_http_redirects_are_followed(feed_server: FeedServer) -> None:  # noqa: F811
    feed_server.set("/a", status=301, headers={"Location": "/b"})
    feed_server.set("/b", status=302, headers={"Location": feed_server.url("/c")})
    feed_server.set("/c", b"<rss/>")

    assert get(feed_server.url("/a")) == b"<rss/>"


def test_conditional_get_returns_none_when_unchanged(feed_server: FeedServer) -> None:  # noqa: F811
    feed_server.set("/f", b"<rss/>", headers={"ETag": '"v1"', "Last-Modified": "Sun, 03 May 2026"})
    url = feed_server.url("/f")
    http = client()
    try:
        first = http.get(url, what="x")
        assert first is not None
        again = http.get(url, what="x", validators=first.validators)
    finally:
        http.close()

    assert first.validators.as_state() == {"etag": '"v1"', "last_modified": "Sun, 03 May 2026"}
    assert Validators.from_state(first.validators.as_state()) == first.validators
    assert again is None
    assert feed_server.requests[1].headers["if-none-match"] == '"v1"'


def test_gzip_is_inflated_within_the_byte_cap(feed_server: FeedServer) -> None:  # noqa: F811
    small = b"<rss>" + b"a" * 1000 + b"</rss>"
    feed_server.set("/small", gzip.compress(small), headers={"Content-Encoding": "gzip"})
    feed_server.set(
        "/bomb", gzip.compress(b"\0" * 10_000_000), headers={"Content-Encoding": "gzip"}
    )

    assert get(feed_server.url("/small")) == small
    with pytest.raises(TransientError) as caught:
        get(feed_server.url("/bomb"))
    assert "larger than max_bytes=100000 (body still arriving)" in str(caught.value)


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (401, {}, AuthError),
        (404, {}, TransientError),
        (410, {}, WatcherConfigError),
        (422, {}, WatcherConfigError),
        (429, {"Retry-After": "30"}, RateLimitedError),
        (503, {"Retry-After": "30"}, RateLimitedError),
        (503, {}, TransientError),
    ],
)
def test_status_translation(
    status: int, headers: dict[str, str], expected: type[Exception]
) -> None:
    error = status_error(status, "Nope", headers, what="api at x", scrub=str)

    assert type(error) is expected
    assert str(error).startswith(f"api at x answered HTTP {status} Nope")
    if expected is RateLimitedError:
        assert isinstance(error, RateLimitedError)
        assert error.retry_after == 30
    assert status_error(204, "", {}, what="x", scrub=str) is None


def test_retry_after_takes_seconds_or_an_http_date() -> None:
    now = datetime(2026, 5, 3, 9, 0, tzinfo=UTC)

    assert retry_after("120", now) == 120
    assert retry_after("Sun, 03 May 2026 09:10:00 GMT", now) == 600
    assert retry_after("Sun, 03 May 2026 08:00:00 GMT", now) == 0
    assert retry_after("soon", now) is None
    assert retry_after(None, now) is None


def test_local_file_is_read_within_the_byte_cap(tmp_path: Path) -> None:
    feed = tmp_path / "feed.xml"
    feed.write_bytes(b"x" * 50)

    assert read_file(feed.as_uri(), max_bytes=50, what="feed").body == b"x" * 50
    with pytest.raises(TransientError, match="larger than max_bytes=49"):
        read_file(feed.as_uri(), max_bytes=49, what="feed")
    with pytest.raises(WatcherConfigError, match="no such file"):
        read_file((tmp_path / "gone.xml").as_uri(), max_bytes=50, what="feed")


def test_xml_guard_refuses_entities_and_finds_entry_ranges() -> None:
    doc = b'<rss><channel><item><title>a</title></item><item a=">"/></channel></rss>'

    ranges = entry_ranges(doc)

    assert ranges is not None
    assert [doc[start:end] for start, end in ranges] == [
        b"<item><title>a</title></item>",
        b'<item a=">"/>',
    ]
    assert entry_ranges(b"<rss><item>") is None
    with pytest.raises(EntityDeclared):
        entry_ranges(fixture_bytes("billion_laughs.xml"))


def test_building_a_watcher_leaves_logging_alone() -> None:
    httpx_logger = logging.getLogger("httpx")
    before = (list(httpx_logger.filters), httpx_logger.level)
    url = "https://jdoe:s3cr3t-pw@feeds.example/f.xml?token=s3cr3t-tok"

    watcher = RssWatcher(RssSettings(url=url), Targets())
    watcher.close()

    assert (list(httpx_logger.filters), httpx_logger.level) == before
    # The secrets are known to the service's log filter instead.
    assert {"s3cr3t-pw", "s3cr3t-tok"} <= registered_secrets()


def test_watchers_do_not_import_apprise_or_the_service() -> None:
    code = (
        "import sys, watchers.rss, watchers.toolkit.redact;"
        "assert 'apprise' not in sys.modules;"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'service']"
    )
    subprocess.run([sys.executable, "-c", code], check=True)  # noqa: S603
