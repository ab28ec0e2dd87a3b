"""A local HTTP server on 127.0.0.1 serving feeds the way real (and hostile) servers do.

Usage::

    from tests.fakes.feed_server import FeedServer, feed_server  # noqa: F401

    def test_x(feed_server: FeedServer) -> None:
        feed_server.set("/feed.xml", body=b"<rss>…</rss>",
                        headers={"Content-Type": "application/rss+xml", "ETag": '"v1"'})
        url = feed_server.url("/feed.xml")
        ...
        (request,) = feed_server.requests_for("/feed.xml")
        assert request.headers["User-Agent"].startswith("nocontact/")  # case-insensitive

Per path, a response can be delayed (``delay``), dripped a few bytes at a time
(``drip`` seconds between ``drip_chunk``-byte writes, from the status line when
``drip_headers``), sent without an end (``endless``: the body repeated until the client
hangs up), or replaced by closing the connection (``close``). A 200 response with an
``ETag`` or ``Last-Modified`` header is answered 304 when the request's conditional
headers match, as a real server would (``conditional=False`` turns that off).
Unknown paths get 404. Every request is recorded; any method other than GET or HEAD is
recorded as an error, and the fixture fails the test at teardown if there is any.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "feeds"


def fixture_bytes(name: str) -> bytes:
    """A recorded or handcrafted feed from tests/fixtures/feeds/, as bytes."""
    return (FIXTURES / name).read_bytes()


@dataclasses.dataclass(frozen=True)
class FeedResponse:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    delay: float = 0.0
    drip: float | None = None
    drip_chunk: int = 1
    drip_headers: bool = False
    endless: bool = False
    close: bool = False
    content_length: bool = True
    conditional: bool = True
    reason: str | None = None  # the status line's phrase; default: the standard one


class Headers(Mapping[str, str]):
    """Request headers; names are case-insensitive, as in HTTP."""

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self._items = {name.lower(): value for name, value in items}

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclasses.dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # with the query string, as requested
    headers: Headers
    status: int | None  # what the server answered (None: connection closed on purpose)


@dataclasses.dataclass(frozen=True)
class SentResponse:
    path: str
    bytes_sent: int  # status line, headers and body bytes written to the socket
    complete: bool  # False when the client hung up (or the server stopped) first


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    _sent = 0

    def do_GET(self) -> None:
        self._serve(with_body=True)

    def do_HEAD(self) -> None:
        self._serve(with_body=False)

    def __getattr__(self, name: str) -> Callable[[], None]:
        # http.server looks up do_<METHOD>; every other method is a test failure.
        if name.startswith("do_"):
            return self._forbidden_method
        raise AttributeError(name)

    def _forbidden_method(self) -> None:
        self.server.feeds._record(self, 405)
        self.server.feeds._error(f"{self.command} {self.path}: feed watchers only GET")
        self.send_error(405)

    def _serve(self, *, with_body: bool) -> None:
        feeds = self.server.feeds
        self.close_connection = True
        response = feeds._response_for(urlsplit(self.path).path)
        if response.close:
            feeds._record(self, None)
            return
        status = self._status(response)
        feeds._record(self, status)
        if response.delay and feeds._stopping.wait(response.delay):
            return
        head = self._head(response, status)
        body = response.body if with_body and status != 304 else b""
        self._sent = 0
        complete = False
        try:
            if response.drip is not None and response.drip_headers:
                complete = self._drip(head + body, response)
            else:
                self._write(head)
                if response.endless and with_body:
                    self._endless(response)
                elif response.drip is not None:
                    complete = self._drip(body, response)
                else:
                    self._write(body)
                    complete = True
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, which is what some tests want
        finally:
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
            feeds._done(SentResponse(self.path, self._sent, complete), host)

    def _write(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()
        self._sent += len(data)

    def _status(self, response: FeedResponse) -> int:
        if response.status != 200 or not response.conditional:
            return response.status
        headers = {k.lower(): v for k, v in response.headers.items()}
        etag, modified = headers.get("etag"), headers.get("last-modified")
        if etag is not None and self.headers.get("If-None-Match") == etag:
            return 304
        if modified is not None and self.headers.get("If-Modified-Since") == modified:
            return 304
        return 200

    def _head(self, response: FeedResponse, status: int) -> bytes:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        if response.reason is not None and status == response.status:
            phrase = response.reason
        lines = [f"HTTP/1.1 {status} {phrase}"]
        lines += [f"{name}: {value}" for name, value in response.headers.items()]
        lines.append("Connection: close")
        if response.content_length and not response.endless and status != 304:
            lines.append(f"Content-Length: {len(response.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _drip(self, data: bytes, response: FeedResponse) -> bool:
        """Write ``data`` piece by piece; False if the server stopped first."""
        step = max(1, response.drip_chunk)
        for start in range(0, len(data), step):
            self._write(data[start : start + step])
            if self.server.feeds._stopping.wait(response.drip or 0):
                return False
        return True

    def _endless(self, response: FeedResponse) -> None:
        chunk = response.body or b"<!-- filler -->" * 4096
        while not self.server.feeds._stopping.is_set():
            self._write(chunk)

    def log_message(self, format: str, *args: Any) -> None:
        # Quiet: requests are inspected through FeedServer.requests.
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], feeds: FeedServer) -> None:
        super().__init__(address, _Handler)
        self.feeds = feeds


class FeedServer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._responses: dict[str, FeedResponse] = {}
        self._requests: list[RecordedRequest] = []
        self._done_responses: list[SentResponse] = []
        self.errors: list[str] = []
        # Requests being answered now, and the most ever at once, per Host header.
        self._in_flight: dict[str, int] = {}
        self.max_in_flight: dict[str, int] = {}
        self._stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), self)
        self.port: int = self._server.server_address[1]
        # A short poll interval keeps stop() (and so each test's teardown) quick.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), name="feed-server", daemon=True
        )
        self._thread.start()

    # -- what tests use

    def set(self, path: str, body: bytes = b"", **options: Any) -> None:
        """Serve ``body`` (and any ``FeedResponse`` option) at ``path`` from now on."""
        with self._lock:
            self._responses[path] = FeedResponse(body=body, **options)

    def set_fixture(self, path: str, name: str, content_type: str, **options: Any) -> None:
        headers = {"Content-Type": content_type, **options.pop("headers", {})}
        self.set(path, fixture_bytes(name), headers=headers, **options)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_for(self, path: str) -> list[RecordedRequest]:
        """Requests to ``path`` (compared without the query string)."""
        return [r for r in self.requests if urlsplit(r.path).path == path]

    @property
    def responses(self) -> list[SentResponse]:
        """Responses the server has finished with (written, or abandoned by the client)."""
        with self._lock:
            return list(self._done_responses)

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- called by the handler

    def _response_for(self, path: str) -> FeedResponse:
        with self._lock:
            found = self._responses.get(path)
        if found is not None:
            return found
        return FeedResponse(404, b"not found", {"Content-Type": "text/plain"})

    def _record(self, handler: BaseHTTPRequestHandler, status: int | None) -> None:
        headers = Headers(handler.headers.items())
        request = RecordedRequest(handler.command, handler.path, headers, status)
        host = headers.get("Host", "").rsplit(":", 1)[0]
        with self._lock:
            self._requests.append(request)
            if status is not None:
                now = self._in_flight[host] = self._in_flight.get(host, 0) + 1
                self.max_in_flight[host] = max(self.max_in_flight.get(host, 0), now)

    def in_flight(self, host: str) -> int:
        with self._lock:
            return self._in_flight.get(host, 0)

    def _error(self, message: str) -> None:
        with self._lock:
            self.errors.append(message)

    def _done(self, response: SentResponse, host: str) -> None:
        with self._lock:
            self._done_responses.append(response)
            self._in_flight[host] = self._in_flight.get(host, 1) - 1


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer()
    try:
        yield server
    finally:
        server.stop()
    assert not server.errors, f"feed server saw forbidden requests: {server.errors}"


def wait_until(check: Callable[[], bool], seconds: float = 5.0) -> bool:
    """Poll ``check`` until it holds or ``seconds`` pass (for server-side effects)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.01)
    return check()
