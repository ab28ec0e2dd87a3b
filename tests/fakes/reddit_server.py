"""A local Reddit API on 127.0.0.1 that serves recorded and handcrafted things.

It speaks Reddit's wire format to the real praw/prawcore: the OAuth token POST
(``/api/v1/access_token``, HTTP Basic client credentials, ``grant_type=password`` or
``client_credentials``), bearer-authorised GETs of listings with ``limit``/``after``
paging, ``/api/info``, ``/user/NAME/about``, and Reddit's rate-limit headers.

Its data comes from praw's own recorded cassettes (``tests/fixtures/reddit/recorded``, with the
placeholders ``<USERNAME>``/``<ACCESS_TOKEN>`` filled in) and from handcrafted things in
``tests/fixtures/reddit`` for what the recordings lack. A listing is served the way
Reddit pages it (newest first, ``limit`` items, ``after`` = last item's fullname) rather
than byte-for-byte per request, so that paging and cursors can be exercised.

Anything that could change state on Reddit (any method but GET, other than the token
POST; a message listing read without ``mark=false``) is recorded as a violation, and
the ``reddit_server`` fixture fails the test at teardown if there was one.

Usage::

    from tests.fakes.reddit_server import reddit_server  # noqa: F401

    def test_x(reddit_server: FakeReddit) -> None:
        reddit_server.set_listing("/message/inbox", children)
        reddit_server.fail("/message/inbox", 500, times=3)
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import threading
import time
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
RECORDED = REPO_ROOT / "tests" / "fixtures" / "reddit" / "recorded"
HANDCRAFTED = REPO_ROOT / "tests" / "fixtures" / "reddit"

# Test secrets carry the s3cr3t marker, so a suite-wide scan can find any leak.
CLIENT_ID = "nocontact-test-app"
CLIENT_SECRET = "s3cr3t-reddit-client-secret"
USERNAME = "alex_smith"
PASSWORD = "s3cr3t-reddit-password"
ACCESS_TOKEN = "AAAAs3cr3tBearer-reddit-token"
TOKEN_PATH = "/api/v1/access_token"

# Reddit's headers: plenty of requests left, so prawcore never sleeps.
RATE_HEADERS = {
    "x-ratelimit-remaining": "599.0",
    "x-ratelimit-used": "1",
    "x-ratelimit-reset": "300",
}


def load_cassette(name: str) -> list[dict[str, Any]]:
    """The interactions of one recorded cassette, placeholders filled in."""
    text = (RECORDED / f"{name}.json").read_text(encoding="utf-8")
    text = text.replace("<USERNAME>", USERNAME).replace("<ACCESS_TOKEN>", ACCESS_TOKEN)
    interactions: list[dict[str, Any]] = json.loads(text)["interactions"]
    return interactions


def recorded_children(name: str, path: str) -> list[dict[str, Any]]:
    """Every thing a cassette's GETs of ``path`` returned, pages joined, newest first."""
    children: list[dict[str, Any]] = []
    for interaction in load_cassette(name):
        request = interaction["request"]
        if request["method"] == "GET" and urlsplit(request["uri"]).path.rstrip("/") == path:
            body = json.loads(interaction["response"]["body"]["string"])
            children.extend(body["data"]["children"])
    if not children:
        raise LookupError(f"{name} has no GET {path}")
    return children


def recorded_body(name: str, path: str) -> dict[str, Any]:
    """The first recorded response body of a GET of ``path`` in a cassette."""
    for interaction in load_cassette(name):
        request = interaction["request"]
        if request["method"] == "GET" and urlsplit(request["uri"]).path.rstrip("/") == path:
            body: dict[str, Any] = json.loads(interaction["response"]["body"]["string"])
            return body
    raise LookupError(f"{name} has no GET {path}")


def handcrafted(name: str) -> Any:
    return json.loads((HANDCRAFTED / name).read_text(encoding="utf-8"))


def as_author(children: Iterable[dict[str, Any]], author: str) -> list[dict[str, Any]]:
    """Recorded things re-attributed to ``author`` (the test's restrained party)."""
    out = copy.deepcopy(list(children))
    for child in out:
        child["data"]["author"] = author
    return out


@dataclasses.dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    query: dict[str, str]
    authorized: bool


@dataclasses.dataclass
class _Canned:
    status: int
    headers: dict[str, str]
    body: bytes
    times: int


class FakeReddit:
    def __init__(self) -> None:
        self.client_id = CLIENT_ID
        self.client_secret = CLIENT_SECRET
        self.username = USERNAME
        self.password = PASSWORD
        self.requests: list[SeenRequest] = []
        self.violations: list[str] = []
        self.listings: dict[str, list[dict[str, Any]]] = {}
        self.things: dict[str, dict[str, Any]] = {}
        self.accounts: dict[str, dict[str, Any]] = {}
        self._canned: dict[str, _Canned] = {}
        self._delays: dict[str, list[float]] = {}
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- data ---------------------------------------------------------------------

    def set_listing(self, path: str, children: Iterable[dict[str, Any]]) -> None:
        """Serve ``children`` (newest first) at ``path``; they become /api/info things."""
        items = list(children)
        self.listings[path.rstrip("/")] = items
        self.add_things(items)

    def prepend(self, path: str, children: Iterable[dict[str, Any]]) -> None:
        """New things arrive at the top of a listing."""
        items = list(children)
        self.listings[path.rstrip("/")] = items + self.listings.get(path.rstrip("/"), [])
        self.add_things(items)

    def add_things(self, children: Iterable[dict[str, Any]]) -> None:
        for child in children:
            self.things[child["data"]["name"]] = child

    def set_account(self, name: str, about: dict[str, Any]) -> None:
        self.accounts[name.lower()] = about

    def fail(
        self,
        path: str,
        status: int,
        *,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` requests to ``path`` with this response."""
        self._canned[path.rstrip("/")] = _Canned(status, headers or {}, body, times)

    def delay(self, path: str, seconds: float) -> None:
        """Answer the next request to ``path`` only after ``seconds`` (a slow server)."""
        with self._lock:
            self._delays.setdefault(path.rstrip("/"), []).append(seconds)

    def _take_delay(self, path: str) -> float:
        with self._lock:
            pending = self._delays.get(path)
            return pending.pop(0) if pending else 0.0

    def gets(self, path: str) -> list[SeenRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == "GET" and r.path == path.rstrip("/")]

    # -- serving ------------------------------------------------------------------

    def _record(self, request: SeenRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _violation(self, message: str) -> None:
        with self._lock:
            self.violations.append(message)

    def _take_canned(self, path: str) -> _Canned | None:
        with self._lock:
            canned = self._canned.get(path)
            if canned is None or canned.times <= 0:
                return None
            canned.times -= 1
            return canned

    def answer_token(self, authorization: str, form: dict[str, str]) -> tuple[int, Any]:
        if authorization != _basic(self.client_id, self.client_secret):
            return 401, {"message": "Unauthorized", "error": 401}
        grant = form.get("grant_type")
        if grant == "password" and (
            form.get("username") != self.username or form.get("password") != self.password
        ):
            # Reddit answers a wrong password with 200 and an OAuth error.
            return 200, {"error": "invalid_grant"}
        if grant not in ("password", "client_credentials"):
            return 200, {"error": "unsupported_grant_type"}
        return 200, {
            "access_token": ACCESS_TOKEN,
            "token_type": "bearer",
            "expires_in": 3600,
            "scope": "*",
        }

    def answer_get(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        if path.startswith("/message/") and query.get("mark", "").lower() != "false":
            self._violation(f"GET {path} without mark=false would mark messages read")
        if path == "/api/info":
            ids = [i for i in query.get("id", "").split(",") if i]
            found = [self.things[i] for i in ids if i in self.things]
            return 200, _listing(found, after=None, before=None)
        if path.startswith("/user/") and path.endswith("/about"):
            about = self.accounts.get(path.split("/")[2].lower())
            if about is None:
                return 404, {"message": "Not Found", "error": 404}
            return 200, about
        if path in self.listings:
            return 200, _page(self.listings[path], query)
        return 404, {"message": "Not Found", "error": 404}


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _listing(children: list[dict[str, Any]], *, after: str | None, before: str | None) -> Any:
    return {
        "kind": "Listing",
        "data": {
            "after": after,
            "dist": len(children),
            "modhash": None,
            "geo_filter": "",
            "children": children,
            "before": before,
        },
    }


def _page(items: list[dict[str, Any]], query: dict[str, str]) -> Any:
    """One page the way Reddit cuts it: ``limit`` (25 by default, at most 100) things
    after the ``after`` fullname."""
    limit = max(1, min(100, int(query.get("limit", "25"))))
    start = 0
    if "after" in query:
        names = [child["data"]["name"] for child in items]
        if query["after"] not in names:
            return _listing([], after=None, before=None)
        start = names.index(query["after"]) + 1
    page = items[start : start + limit]
    more = start + limit < len(items)
    return _listing(
        page,
        after=page[-1]["data"]["name"] if page and more else None,
        before=page[0]["data"]["name"] if page and start > 0 else None,
    )


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Buffer each response so headers and body leave in one write: two small writes
    # meet the client's delayed ACK and cost ~40 ms a request.
    wbufsize = 1 << 16

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_POST(self) -> None:
        fake = self.server.fake
        parts = urlsplit(self.path)
        body = self._read_body()
        fake._record(SeenRequest("POST", parts.path, dict(parse_qsl(parts.query)), False))
        if parts.path != TOKEN_PATH:
            fake._violation(f"POST {parts.path}")
            self._send(403, {"message": "Forbidden", "error": 403})
            return
        canned = fake._take_canned(TOKEN_PATH)
        if canned is not None:
            self._send_raw(canned.status, canned.headers, canned.body)
            return
        form = dict(parse_qsl(body.decode("utf-8")))
        status, payload = fake.answer_token(self.headers.get("Authorization", ""), form)
        self._send(status, payload)

    def do_GET(self) -> None:
        fake = self.server.fake
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        query = dict(parse_qsl(parts.query))
        authorized = self.headers.get("Authorization", "") == f"bearer {ACCESS_TOKEN}"
        fake._record(SeenRequest("GET", path, query, authorized))
        if not authorized:
            self._send(
                401,
                {"message": "Unauthorized", "error": 401},
                {"www-authenticate": 'Bearer realm="reddit", error="invalid_token"'},
            )
            return
        pause = fake._take_delay(path)
        if pause:
            time.sleep(pause)
        canned = fake._take_canned(path)
        if canned is not None:
            self._send_raw(canned.status, canned.headers, canned.body)
            return
        status, payload = fake.answer_get(path, query)
        self._send(status, payload, RATE_HEADERS)

    def _refuse(self) -> None:
        fake = self.server.fake
        parts = urlsplit(self.path)
        self._read_body()
        fake._record(SeenRequest(self.command, parts.path, dict(parse_qsl(parts.query)), False))
        fake._violation(f"{self.command} {parts.path}")
        self._send(405, {"message": "Method Not Allowed", "error": 405})

    do_PUT = do_PATCH = do_DELETE = _refuse

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode("utf-8")
        self._send_raw(
            status, {"content-type": "application/json; charset=UTF-8", **(headers or {})}, body
        )

    def _send_raw(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if self.headers.get("Connection", "").lower() == "close":
            # Say so, as Reddit does, or the client may reuse a socket we are closing.
            self.send_header("Connection", "close")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return  # requests are inspected through FakeReddit.requests


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], fake: FakeReddit) -> None:
        super().__init__(address, _Handler)
        self.fake = fake


@pytest.fixture
def reddit_server() -> Iterator[FakeReddit]:
    fake = FakeReddit()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
    assert fake.violations == [], f"requests that could change state: {fake.violations}"
