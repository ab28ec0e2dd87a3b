"""The RSS/Atom watcher, through real httpx and feedparser, against a local feed server."""

from __future__ import annotations

import gzip
import logging
import time
import zlib
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from importlib.metadata import entry_points
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from tests.fakes.feed_server import (
    FIXTURES,
    FeedServer,
    feed_server,  # noqa: F401
    fixture_bytes,
    wait_until,
)
from tests.fakes.smtp_server import free_port
from watchers.base import (
    AuthError,
    Observation,
    PollResult,
    RateLimitedError,
    Targets,
    TransientError,
    Watcher,
    WatcherConfigError,
    WatcherError,
)
from watchers.rss import RssSettings, RssWatcher
from watchers.toolkit.redact import mask_url
from watchers.toolkit.text import html_to_text

RSS = "application/rss+xml; charset=utf-8"
ATOM = "application/atom+xml"
SECRET_QUERY = "token=s3cr3t-feed-token"


def make_watcher(url: str, **settings: Any) -> RssWatcher:
    options: dict[str, Any] = {"url": url, "name": "jdoe-blog", "timeout": "2s", **settings}
    return RssWatcher(RssSettings.model_validate(options), Targets())


def poll_once(url: str, state: dict[str, Any] | None = None, **settings: Any) -> PollResult:
    watcher = make_watcher(url, **settings)
    try:
        return watcher.poll(state or {})
    finally:
        watcher.close()


def poll_error(url: str, **settings: Any) -> WatcherError:
    with pytest.raises(WatcherError) as caught:
        poll_once(url, **settings)
    return caught.value


def by_id(observations: list[Observation]) -> dict[str, Observation]:
    return {o.native_id: o for o in observations}


def assert_one_line_without_secret(message: str) -> None:
    assert "\n" not in message
    assert "\r" not in message
    assert "s3cr3t" not in message


# --- formats ------------------------------------------------------------------------------


def test_rss20_entries_become_observations_oldest_first(feed_server: FeedServer) -> None:  # noqa: F811
    feed_server.set_fixture("/feed.xml", "rss20.xml", RSS, headers={"ETag": '"v1"'})

    result = poll_once(feed_server.url("/feed.xml"))

    observations = result.observations
    assert [o.native_id for o in observations] == [
        "https://blog.example/?p=1001",
        "127.0.0.1#post-1002",  # a bare guid is qualified by the feed's host
        "https://blog.example/2026/05/note-for-alex",
    ]
    assert [o.posted_at for o in observations] == [
        datetime(2026, 4, 30, 12, 0, tzinfo=UTC),
        datetime(2026, 5, 2, 21, 15, tzinfo=UTC),  # 23:15 +0200
        datetime(2026, 5, 3, 13, 30, tzinfo=UTC),  # 08:30 -0500
    ]
    newest = observations[-1]
    assert newest.platform == "rss"
    assert newest.kind == "feed_entry"
    assert newest.watcher == "jdoe-blog"
    assert newest.url == "https://blog.example/2026/05/note-for-alex"
    assert newest.author_handle == "john@example.com"  # email-like authors keep the address
    assert newest.author_display_name == "John Doe"
    assert newest.text == "Newest: a note for Alex\n\nAlex, I know you read this."
    assert newest.raw_content_type == RSS
    assert newest.addressed_to == ()
    assert newest.posted_by is None
    assert "HTTP 200" in newest.capture_method
    assert 'ETag "v1"' in newest.capture_method
    second = observations[1]
    assert second.author_handle == "jdoe"
    # Full content (content:encoded) wins over the short description.
    assert second.text == "Second post\n\nFirst paragraph about Alex Smith.\n\nSecond paragraph."
    assert observations[0].author_handle is None
    assert result.state == {"etag": '"v1"'}


def test_rss20_raw_is_each_entrys_own_bytes_as_received(feed_server: FeedServer) -> None:  # noqa: F811
    document = fixture_bytes("rss20.xml")
    feed_server.set("/feed.xml", document, headers={"Content-Type": RSS})

    observations = poll_once(feed_server.url("/feed.xml")).observations

    for observation in observations:
        assert observation.raw.startswith(b"<item>")
        assert observation.raw.endswith(b"</item>")
        assert observation.raw in document
        assert observation.raw.count(b"<item>") == 1
    assert b'<guid isPermaLink="false">post-1002</guid>' in observations[1].raw
    assert "raw: the entry's XML element" in observations[0].capture_method


def test_atom10(feed_server: FeedServer) -> None:  # noqa: F811
    feed_server.set_fixture("/atom.xml", "atom10.xml", ATOM)

    entries = by_id(poll_once(feed_server.url("/atom.xml")).observations)

    letter = entries["tag:notes.example,2026:entry-2"]
    assert letter.text == "An open letter\n\nDear Alex,\n\nwe should talk."  # html title stripped
    assert letter.posted_at == datetime(2026, 5, 3, 7, 30, tzinfo=UTC)  # published, not updated
    assert letter.author_handle == "jdoe_friend"
    assert letter.url == "https://notes.example/open-letter"
    assert letter.raw.startswith(b"<entry>")
    assert letter.raw.endswith(b"</entry>")
    updated_only = entries["tag:notes.example,2026:entry-1"]
    assert updated_only.posted_at == datetime(2026, 5, 2, 6, 0, tzinfo=UTC)  # 23:00 -0700
    # An entry without an author has the feed's author (Atom's rule).
    assert updated_only.author_handle == "john@example.com"
    assert updated_only.author_display_name == "John Doe"
    # type="text" is plain text: not run through the HTML stripper.
    assert updated_only.text == "Updated only\n\nPlain text summary: 1 < 2 & fine."
    assert updated_only.raw_content_type == "application/atom+xml"


def test_rss10_rdf(feed_server: FeedServer) -> None:  # noqa: F811
    feed_server.set_fixture("/index.rdf", "rss10_rdf.xml", "application/rdf+xml")

    observations = poll_once(feed_server.url("/index.rdf")).observations

    assert [o.native_id for o in observations] == [
        "https://rdf.example/items/1",
        "https://rdf.example/items/2",
    ]
    assert observations[1].posted_at == datetime(2026, 5, 1, 23, 0, tzinfo=UTC)  # 08:00 +0900
    assert observations[1].author_handle == "jdoe"
    assert observations[1].text == "RDF item two\n\nSecond RDF item mentions Alex."
    assert observations[1].raw.startswith(b'<item rdf:about="https://rdf.example/items/2">')


def test_entries_without_guid_use_link_then_a_stable_text_hash(feed_server: FeedServer) -> None:  # noqa: F811
    feed_server.set_fixture("/feed.xml", "no_guid.xml", RSS)
    url = feed_server.url("/feed.xml")

    first = by_id(poll_once(url).observations)
    again = by_id(poll_once(url).observations)

    assert "https://min.example/posts/linked" in first
    hashed = [key for key in first if key.startswith("127.0.0.1#sha256:")]
    assert len(hashed) == 1
    assert len(hashed[0]) == len("127.0.0.1#sha256:") + 64
    assert first[hashed[0]].text == "Neither guid nor link\n\nBare item about Alex."
    assert set(again) == set(first)

    edited = fixture_bytes("no_guid.xml").replace(b"Bare item about", b"Edited item about")
    feed_server.set("/feed.xml", edited, headers={"Content-Type": RSS})
    assert hashed[0] not in by_id(poll_once(url).observations)


def test_gzip_encoded_feed_is_decoded(feed_server: FeedServer) -> None:  # noqa: F811
    document = fixture_bytes("rss20.xml")
    headers = {"Content-Type": RSS, "Content-Encoding": "gzip"}
    feed_server.set("/feed.xml", gzip.compress(document), headers=headers)

    observations = poll_once(feed_server.url("/feed.xml")).observations

    assert len(observations) == 3
    assert all(o.raw in document for o in observations)
    assert "gzip" in feed_server.requests[0].headers["Accept-Encoding"]


def test_deflate_encoded_feed_is_decoded(feed_server: FeedServer) -> None:  # noqa: F811
    document = fixture_bytes("atom10.xml")
    headers = {"Content-Type": ATOM, "Content-Encoding": "deflate"}
    feed_server.set("/feed.xml", zlib.compress(document), headers=headers)

    assert len(poll_once(feed_server.url("/feed.xml")).observations) == 2


def test_compression_bomb_is_stopped_at_max_bytes(feed_server: FeedServer) -> None:  # noqa: F811
    bomb = gzip.compress(b"<rss>" + b"\0" * (64 * 1024 * 1024), compresslevel=9)
    headers = {"Content-Type": RSS, "Content-Encoding": "gzip"}
    feed_server.set("/bomb.xml", bomb, headers=headers)

    error = poll_error(feed_server.url("/bomb.xml"), max_bytes=100_000)

    assert type(error) is TransientError
    assert "max_bytes=100000 (body still arriving)" in str(error)


@pytest.mark.parametrize(
    ("encoding", "body", "reason"),
    [
        ("br", b"\x0b\x02\x80<rss/>\x03", "unsupported Content-Encoding (br)"),
        ("gzip", b"this is not gzip at all", "corrupt compressed body"),
    ],
)
def test_undecodable_body_is_transient(
    feed_server: FeedServer,  # noqa: F811
    encoding: str,
    body: bytes,
    reason: str,
) -> None:
    feed_server.set("/feed.xml", body, headers={"Content-Encoding": encoding})

    error = poll_error(feed_server.url("/feed.xml"))

    assert type(error) is TransientError
    assert reason in str(error)


def test_empty_feed_is_not_an_error(feed_server: FeedServer) -> None:  # noqa: F811
    feed_server.set_fixture("/feed.xml", "empty_channel.xml", RSS)

    result = poll_once(feed_server.url("/feed.xml"))

    assert result.observations == []


# --- content ------------------------------------------------------------------------------


def test_html_content_is_stripped_to_plain_text(feed_server: FeedServer) -> None:  # noqa: F811
    feed_server.set_fixture("/feed.xml", "html_content.xml", RSS)

    (entry,) = poll_once(feed_server.url("/feed.xml")).observations

    assert entry.text == (
        "Rich & styled\n\nHeading\n\nHello Alex & friends.\n\none\ntwo\n\n"
        "Line one\nLine two\n\nphoto of Alex"
    )
    for leftover in ("alert", "stolen-cookie", "color: red", "<", "&amp;", "&nbsp;"):
        assert leftover not in entry.text


def test_html_to_text_drops_script_and_style_even_unsanitised() -> None:
    html = (
        "<div><script type='text/javascript'>var s = '<p>not text</p>';</script>"
        "<style>.x{}</style><p>Visible&#8203; text</p><p>Second&amp;last</p></div>"
    )

    assert html_to_text(html) == "Visible\u200b text\n\nSecond&last"


def test_timezones_are_converted_to_utc(feed_server: FeedServer) -> None:  # noqa: F811
    feed_server.set_fixture("/feed.xml", "timezones.xml", RSS)

    observations = poll_once(feed_server.url("/feed.xml")).observations

    dated = {o.text: o.posted_at for o in observations}
    noon = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    assert dated == {"EST": noon, "IST": noon, "GMT": noon, "HST": noon, "Undated": None}
    assert observations[-1].text == "Undated"  # undated entries come last
    for observation in observations[:-1]:
        assert observation.posted_at is not None
        assert observation.posted_at.utcoffset() == (noon.utcoffset())


def test_posted_by_is_propagated(feed_server: FeedServer) -> None:  # noqa: F811
    feed_server.set_fixture("/feed.xml", "rss20.xml", RSS)

    observations = poll_once(feed_server.url("/feed.xml"), posted_by="restrained").observations

    assert observations
    assert {o.posted_by for o in observations} == {"restrained"}


# --- conditional GET ----------------------------------------------------------------------


def test_etag_conditional_get_304_returns_nothing(feed_server: FeedServer) -> None:  # noqa: F811
    feed_server.set_fixture("/feed.xml", "rss20.xml", RSS, headers={"ETag": 'W/"abc-1"'})
    watcher = make_watcher(feed_server.url("/feed.xml"))
    try:
        first = watcher.poll({})
        second = watcher.poll(first.state)
    finally:
        watcher.close()

    assert len(first.observations) == 3
    assert first.state == {"etag": 'W/"abc-1"'}
    assert second.observations == []
    assert second.state == first.state
    initial, conditional = feed_server.requests
    assert "if-none-match" not in initial.headers
    assert conditional.headers["if-none-match"] == 'W/"abc-1"'
    assert conditional.status == 304
    assert initial.headers["user-agent"].startswith("nocontact/")


def test_last_modified_conditional_get(feed_server: FeedServer) -> None:  # noqa: F811
    modified = "Sun, 03 May 2026 09:00:00 GMT"
    feed_server.set_fixture("/feed.xml", "rss20.xml", RSS, headers={"Last-Modified": modified})
    url = feed_server.url("/feed.xml")

    first = poll_once(url)
    second = poll_once(url, dict(first.state))

    assert first.state == {"last_modified": modified}
    assert second.observations == []
    assert second.state == first.state
    assert [r.status for r in feed_server.requests] == [200, 304]
    assert feed_server.requests[1].headers["if-modified-since"] == modified


def test_changed_feed_is_fetched_again_with_new_validators(feed_server: FeedServer) -> None:  # noqa: F811
    feed_server.set_fixture("/feed.xml", "rss20.xml", RSS, headers={"ETag": '"v1"'})
    url = feed_server.url("/feed.xml")
    first = poll_once(url)
    feed_server.set_fixture("/feed.xml", "no_guid.xml", RSS, headers={"ETag": '"v2"'})

    second = poll_once(url, dict(first.state))

    assert len(second.observations) == 2
    assert second.state == {"etag": '"v2"'}


# --- HTTP failures --------------------------------------------------------------------------


def test_connection_refused_is_transient() -> None:
    port = free_port()

    error = poll_error(f"http://127.0.0.1:{port}/feed.xml?{SECRET_QUERY}")

    assert type(error) is TransientError
    assert str(error).startswith(
        f"feed at http://127.0.0.1:{port}/feed.xml?token=*** is unreachable: "
    )
    assert "refused" in str(error)
    assert_one_line_without_secret(str(error))


def test_http_500_is_transient(feed_server: FeedServer) -> None:  # noqa: F811
    feed_server.set("/feed.xml", b"<h1>oops</h1>", status=500)

    error = poll_error(feed_server.url("/feed.xml"))

    assert type(error) is TransientError
    assert str(error) == (
        f"feed at {feed_server.url('/feed.xml')} answered HTTP 500 Internal Server Error"
    )


def test_429_with_retry_after_seconds_is_rate_limited(feed_server: FeedServer) -> None:  # noqa: F811
    feed_server.set("/feed.xml", b"slow down", status=429, headers={"Retry-After": "120"})

    error = poll_error(feed_server.url("/feed.xml"))

    assert isinstance(error, RateLimitedError)
    assert error.retry_after == 120


def test_503_with_retry_after_date_is_rate_limited(feed_server: FeedServer) -> None:  # noqa: F811
    later = format_datetime(
        datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=10), usegmt=True
    )
    feed_server.set("/feed.xml", b"maintenance", status=503, headers={"Retry-After": later})

    error = poll_error(feed_server.url("/feed.xml"))

    assert isinstance(error, RateLimitedError)
    assert error.retry_after is not None
    assert 500 < error.retry_after <= 600


def test_503_without_retry_after_is_plain_transient(feed_server: FeedServer) -> None:  # noqa: F811
    feed_server.set("/feed.xml", b"down", status=503)

    assert type(poll_error(feed_server.url("/feed.xml"))) is TransientError


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, AuthError),
        (403, AuthError),
        (404, TransientError),
        (410, WatcherConfigError),
        (400, WatcherConfigError),
    ],
)
def test_client_errors(feed_server: FeedServer, status: int, expected: type[Exception]) -> None:  # noqa: F811
    feed_server.set("/feed.xml", b"no", status=status)

    error = poll_error(feed_server.url("/feed.xml"))

    assert type(error) is expected
    assert f"HTTP {status}" in str(error)


# --- not a feed ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (fixture_bytes("garbage.bin"), "application/octet-stream", "unreadable XML"),
        (fixture_bytes("not_a_feed.html"), "text/html", "the server sent an HTML page"),
        (fixture_bytes("not_a_feed.html"), "application/rss+xml", "the server sent an HTML page"),
        (b"", RSS, "empty response"),
        (b"  \n ", RSS, "empty response"),
        (b'{"items": []}', "application/json", "not RSS/Atom"),
    ],
)
def test_not_a_feed(feed_server: FeedServer, body: bytes, content_type: str, reason: str) -> None:  # noqa: F811
    feed_server.set("/feed.xml", body, headers={"Content-Type": content_type})
    url = feed_server.url("/feed.xml")

    error = poll_error(url)

    assert type(error) is TransientError
    assert str(error).startswith(f"feed at {url} is not RSS/Atom: ")
    assert reason in str(error)
    assert "\n" not in str(error)


def test_body_naming_a_local_file_is_not_read_from_disk(feed_server: FeedServer) -> None:  # noqa: F811
    # feedparser opens bytes that name a file: the body must never reach it as bytes.
    local_feed = str(FIXTURES / "rss20.xml").encode()
    feed_server.set("/feed.xml", local_feed, headers={"Content-Type": RSS})

    error = poll_error(feed_server.url("/feed.xml"))

    assert "is not RSS/Atom" in str(error)


# --- hostile XML ------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["billion_laughs.xml", "xxe.xml", "xxe_malformed.xml"])
def test_entity_tricks_are_refused(feed_server: FeedServer, fixture: str) -> None:  # noqa: F811
    feed_server.set_fixture("/feed.xml", fixture, RSS)

    error = poll_error(feed_server.url("/feed.xml"))

    assert type(error) is TransientError
    assert "declares XML entities" in str(error)
    assert "root:" not in str(error)
    assert "lol" not in str(error)


def test_wrong_encoding_declared_still_yields_entries(feed_server: FeedServer) -> None:  # noqa: F811
    # Declares UTF-8, is Latin-1: feedparser flags it and still reads the entries.
    feed_server.set_fixture("/feed.xml", "wrong_encoding.xml", "application/xml")
    document = fixture_bytes("wrong_encoding.xml")

    (entry,) = poll_once(feed_server.url("/feed.xml")).observations

    assert entry.native_id == "https://cafe.example/resume"
    assert entry.text == "Résumé of Alex\n\nNaïve café text."
    # Not well-formed, so no entry can be cut out reliably: raw is the whole document.
    assert entry.raw == document
    assert "raw: the whole feed document" in entry.capture_method


def test_unknown_encoding_declared_still_yields_entries(feed_server: FeedServer) -> None:  # noqa: F811
    feed_server.set_fixture("/feed.xml", "unknown_encoding.xml", "application/xml")

    (entry,) = poll_once(feed_server.url("/feed.xml")).observations

    assert entry.text == "Resume of Alex\n\nNaive cafe text."
    assert entry.raw == fixture_bytes("unknown_encoding.xml")


def test_malformed_feed_with_entries_is_used(feed_server: FeedServer) -> None:  # noqa: F811
    feed_server.set_fixture("/feed.xml", "malformed.xml", RSS)

    (entry,) = poll_once(feed_server.url("/feed.xml")).observations

    assert entry.native_id == "https://sloppy.example/broken"
    assert "bold text about Alex" in entry.text
    assert entry.raw == fixture_bytes("malformed.xml")


def test_utf16_feed(feed_server: FeedServer) -> None:  # noqa: F811
    feed_server.set_fixture("/feed.xml", "rss20_utf16.xml", "application/rss+xml")

    observations = poll_once(feed_server.url("/feed.xml")).observations

    assert [o.text.split("\n")[0] for o in observations] == [
        "Oldest post",
        "Second post",
        "Newest: a note for Alex",
    ]
    assert all(o.raw == fixture_bytes("rss20_utf16.xml") for o in observations)


# --- size and time bounds -------------------------------------------------------------------


def test_oversized_body_with_content_length_is_not_downloaded(feed_server: FeedServer) -> None:  # noqa: F811
    body = b"<rss>" + b"x" * (32 * 1024 * 1024)
    # Written in 64 KiB pieces so that the server notices when the client hangs up.
    feed_server.set("/big.xml", body, headers={"Content-Type": RSS}, drip=0, drip_chunk=65536)

    error = poll_error(feed_server.url("/big.xml"), max_bytes=65536)

    assert type(error) is TransientError
    assert f"max_bytes=65536 ({len(body)} bytes announced)" in str(error)
    assert wait_until(lambda: len(feed_server.responses) == 1)
    (sent,) = feed_server.responses
    assert not sent.complete
    assert sent.bytes_sent < len(body) // 2


def test_oversized_body_without_content_length_is_aborted(feed_server: FeedServer) -> None:  # noqa: F811
    body = b"<rss>" + b"x" * (32 * 1024 * 1024)
    feed_server.set("/big.xml", body, content_length=False, drip=0, drip_chunk=65536, headers={})

    error = poll_error(feed_server.url("/big.xml"), max_bytes=100_000)

    assert "max_bytes=100000 (body still arriving)" in str(error)
    assert wait_until(lambda: len(feed_server.responses) == 1)
    assert not feed_server.responses[0].complete
    assert feed_server.responses[0].bytes_sent < len(body) // 2


def test_endless_body_is_aborted(feed_server: FeedServer) -> None:  # noqa: F811
    feed_server.set("/endless.xml", b"<rss><channel>", endless=True)

    error = poll_error(feed_server.url("/endless.xml"), max_bytes=1_000_000)

    assert type(error) is TransientError
    assert "max_bytes=1000000" in str(error)
    assert wait_until(lambda: len(feed_server.responses) == 1)
    assert not feed_server.responses[0].complete


@pytest.mark.parametrize("drip_headers", [False, True], ids=["body", "headers"])
def test_slow_drip_hits_the_deadline(feed_server: FeedServer, drip_headers: bool) -> None:  # noqa: F811
    # One byte every 50 ms never trips the 1 s read timeout; the 1.5 s deadline ends it.
    body = fixture_bytes("rss20.xml")
    feed_server.set(
        "/drip.xml", body, headers={"Content-Type": RSS}, drip=0.05, drip_headers=drip_headers
    )
    started = time.monotonic()

    error = poll_error(feed_server.url("/drip.xml"), timeout="1s", deadline="1.5s")

    elapsed = time.monotonic() - started
    assert type(error) is TransientError
    assert "took longer than the 1.5s deadline" in str(error)
    # Bounded by the deadline (plus slack for a loaded machine), not by the 80 s drip.
    assert elapsed < 10


def test_silent_server_hits_the_read_timeout(feed_server: FeedServer) -> None:  # noqa: F811
    feed_server.set("/slow.xml", fixture_bytes("rss20.xml"), delay=3)

    error = poll_error(feed_server.url("/slow.xml"), timeout="0.3s", deadline="30s")

    assert type(error) is TransientError
    assert "timed out (read timeout 0.3s)" in str(error)


def test_closed_connection_is_transient(feed_server: FeedServer) -> None:  # noqa: F811
    feed_server.set("/feed.xml", close=True)

    error = poll_error(feed_server.url("/feed.xml"))

    assert type(error) is TransientError
    assert str(error).startswith(f"feed at {feed_server.url('/feed.xml')} failed: ")


# --- redirects ----------------------------------------------------------------------------------


def test_redirect_is_followed_and_recorded(feed_server: FeedServer) -> None:  # noqa: F811
    feed_server.set("/old.xml", status=301, headers={"Location": "/new.xml"})
    feed_server.set_fixture("/new.xml", "rss20.xml", RSS)

    observations = poll_once(feed_server.url("/old.xml")).observations

    assert len(observations) == 3
    assert f"redirected to {feed_server.url('/new.xml')}" in observations[0].capture_method


def test_redirect_loop_is_bounded(feed_server: FeedServer) -> None:  # noqa: F811
    feed_server.set("/a.xml", status=302, headers={"Location": f"/b.xml?{SECRET_QUERY}"})
    feed_server.set("/b.xml", status=302, headers={"Location": "/a.xml"})

    error = poll_error(feed_server.url("/a.xml"), max_redirects=3)

    assert type(error) is TransientError
    assert "redirected more than 3 times" in str(error)
    assert len(feed_server.requests) == 4  # the request and three redirects, no more
    assert_one_line_without_secret(str(error))


def test_redirect_to_another_scheme_is_refused(feed_server: FeedServer) -> None:  # noqa: F811
    feed_server.set("/feed.xml", status=302, headers={"Location": "file:///etc/passwd"})

    error = poll_error(feed_server.url("/feed.xml"))

    assert type(error) is TransientError
    assert "unsupported protocol" in str(error)
    assert len(feed_server.requests) == 1


# --- secrets ------------------------------------------------------------------------------------


def _secret_url(feed_server: FeedServer, path: str) -> str:  # noqa: F811
    base = feed_server.url(path).replace("http://", "http://jdoe:s3cr3t-basic-pass@")
    return f"{base}?{SECRET_QUERY}&format=rss"


@pytest.mark.parametrize(
    "options",
    [
        {"status": 500},
        {"status": 401},
        {"body": b"\x00\x01garbage"},
        {"close": True},
        {"delay": 2},
    ],
    ids=["500", "401", "garbage", "closed", "timeout"],
)
def test_errors_are_one_line_and_mask_secrets_in_the_url(
    feed_server: FeedServer,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
    options: dict[str, Any],
) -> None:
    feed_server.set("/private.xml", **options)
    caplog.set_level(logging.DEBUG)

    error = poll_error(_secret_url(feed_server, "/private.xml"), timeout="0.3s")

    message = str(error)
    assert_one_line_without_secret(message)
    assert f"feed at http://***@127.0.0.1:{feed_server.port}/private.xml" in message
    assert "?token=***&format=***" in message
    # httpx logs every request URL; the watcher masks those lines too.
    assert caplog.records, "expected httpx/httpcore log records to check"
    for record in caplog.records:
        assert "s3cr3t" not in record.getMessage()
    # The credentials did reach the server: masking is only for display.
    assert feed_server.requests[0].path.endswith(f"?{SECRET_QUERY}&format=rss")
    assert feed_server.requests[0].headers["authorization"].startswith("Basic ")


def test_server_echoing_the_secret_does_not_leak_it(feed_server: FeedServer) -> None:  # noqa: F811
    echo = "token s3cr3t-feed-token is wrong"
    feed_server.set("/private.xml", status=500, reason=echo)

    error = poll_error(_secret_url(feed_server, "/private.xml"))

    assert_one_line_without_secret(str(error))
    assert "HTTP 500 token *** is wrong" in str(error)


def test_capture_method_masks_secrets(feed_server: FeedServer) -> None:  # noqa: F811
    feed_server.set_fixture("/private.xml", "rss20.xml", RSS)

    observations = poll_once(_secret_url(feed_server, "/private.xml")).observations

    assert observations
    for observation in observations:
        assert "s3cr3t" not in observation.capture_method
        assert "?token=***&format=***" in observation.capture_method


def test_mask_url() -> None:
    assert mask_url("https://u:s3cr3t-p@feeds.example:8443/f.xml?key=s3cr3t-k&x=1#frag") == (
        "https://***@feeds.example:8443/f.xml?key=***&x=***"
    )
    assert mask_url("https://feeds.example/f.xml?s3cr3tonly") == "https://feeds.example/f.xml?***"
    assert mask_url("http://[::1]:8080/feed") == "http://[::1]:8080/feed"


# --- settings and the watcher interface -----------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["ftp://feeds.example/f.xml", "file:///etc/passwd", "feeds.example/f.xml", "http:///nohost"],
)
def test_settings_reject_non_http_urls(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        RssSettings.model_validate({"type": "rss", "url": url})

    assert "url" in str(caught.value)


def test_settings_error_does_not_repeat_a_secret_url() -> None:
    with pytest.raises(ValidationError) as caught:
        RssSettings.model_validate({"type": "rss", "url": f"ftp://feeds.example/?{SECRET_QUERY}"})

    errors = caught.value.errors(include_input=False)
    assert errors[0]["loc"] == ("url",)
    assert "s3cr3t" not in errors[0]["msg"]


def test_settings_defaults_and_bounds() -> None:
    settings = RssSettings.model_validate({"type": "rss", "url": "https://blog.example/feed"})

    assert settings.timeout.total_seconds() == 10
    assert settings.max_bytes == 5 * 1024 * 1024
    assert settings.max_redirects == 5
    assert settings.user_agent.startswith("nocontact/")
    assert "feed watcher" in settings.user_agent
    assert settings.display_name == "rss"
    with pytest.raises(ValidationError):
        RssSettings.model_validate({"type": "rss", "url": "https://b.example/", "timeout": "0s"})
    with pytest.raises(ValidationError):
        RssSettings.model_validate({"type": "rss", "url": "https://b.example/", "max_bytes": 0})
    with pytest.raises(ValidationError):
        RssSettings.model_validate({"type": "rss", "url": "https://b.example/", "extra": 1})


def test_watcher_interface() -> None:
    watcher = make_watcher("https://blog.example/feed.xml")
    try:
        assert isinstance(watcher, Watcher)
        assert watcher.name == "jdoe-blog"
        assert watcher.lookup_account("jdoe") is None
        assert RssWatcher.type_name == "rss"
        assert RssWatcher.platform == "rss"
        assert RssWatcher.settings_model is RssSettings
    finally:
        watcher.close()


def test_registered_under_the_entry_point_group() -> None:
    (entry,) = [e for e in entry_points(group="nocontact.watchers") if e.name == "rss"]

    assert entry.load() is RssWatcher


# --- the fake server itself -----------------------------------------------------------------------


def test_feed_server_flags_methods_other_than_get() -> None:
    server = FeedServer()
    try:
        server.set("/feed.xml", b"<rss/>")
        response = httpx.post(server.url("/feed.xml"), content=b"x")
        head = httpx.head(server.url("/feed.xml"))
    finally:
        server.stop()

    assert response.status_code == 405
    assert head.status_code == 200
    assert head.content == b""
    assert server.errors == ["POST /feed.xml: feed watchers only GET"]
    assert [r.method for r in server.requests] == ["POST", "HEAD"]


# --- Mastodon's own feeds (https://instance/@name.rss) ------------------------------------
# mastodon_user.rss follows Mastodon's RSS serializer (app/serializers/rss/account_serializer.rb,
# FormattingHelper#rss_status_content_format): no item author, the content warning as a
# paragraph before an <hr>, each attachment as <media:content> with <media:description>.


def test_mastodon_image_post_keeps_its_text_and_appends_the_description(
    feed_server: FeedServer,  # noqa: F811
) -> None:
    feed_server.set_fixture("/@johndoe.rss", "mastodon_user.rss", RSS)
    observations = by_id(poll_once(feed_server.url("/@johndoe.rss")).observations)
    image = observations["https://mastodon.social/@johndoe/114000000000000001"]
    assert image.text == (
        "Saw Alex Smith at the farmers market\n\n[image: a photo of a market stall]"
    )


def test_mastodon_content_warning_and_text_are_both_kept(feed_server: FeedServer) -> None:  # noqa: F811
    feed_server.set_fixture("/@johndoe.rss", "mastodon_user.rss", RSS)
    observations = by_id(poll_once(feed_server.url("/@johndoe.rss")).observations)
    warned = observations["https://mastodon.social/@johndoe/114000000000000002"]
    assert warned.text == "about her\n\nAlex Smith lied in court"


def test_mastodon_entries_without_author_are_the_feeds_account(
    feed_server: FeedServer,  # noqa: F811
) -> None:
    feed_server.set_fixture("/@johndoe.rss", "mastodon_user.rss", RSS)
    observations = poll_once(feed_server.url("/@johndoe.rss")).observations
    assert {(o.author_handle, o.author_display_name) for o in observations} == {
        ("johndoe@mastodon.social", "John Doe")
    }


def test_posted_by_feed_without_any_author_is_named_by_its_title(
    feed_server: FeedServer,  # noqa: F811
) -> None:
    body = fixture_bytes("mastodon_user.rss").replace(
        b"<link>https://mastodon.social/@johndoe</link>", b"<link>https://blog.example/</link>"
    )
    feed_server.set("/feed.xml", body=body, headers={"Content-Type": RSS})
    anonymous = poll_once(feed_server.url("/feed.xml")).observations
    assert {(o.author_handle, o.author_display_name) for o in anonymous} == {(None, None)}
    owned = poll_once(feed_server.url("/feed.xml"), posted_by="restrained").observations
    assert {(o.author_handle, o.author_display_name) for o in owned} == {(None, "John Doe")}
