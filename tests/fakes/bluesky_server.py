"""A local fake of Bluesky on 127.0.0.1: XRPC (PDS + AppView) over HTTP for the real
``atproto`` client, and Jetstream over a WebSocket for the watcher's stream reader.

XRPC answers in the lexicon shapes of the recorded bodies in ``tests/fixtures/bluesky``
(``com.atproto.server.createSession`` / ``refreshSession``,
``com.atproto.identity.resolveHandle``, ``app.bsky.actor.getProfiles``,
``app.bsky.feed.getAuthorFeed``, ``app.bsky.notification.listNotifications``). Any other
procedure (a POST: a post, like, follow, mute, ``updateSeen``…) is recorded and answered
400, and the fixture fails the test.

Jetstream sends its v1 JSON events (``{"did", "time_us", "kind": "commit" | "identity" |
"account", …}``), filtered by ``wantedDids`` / ``wantedCollections`` and replayed from
``cursor`` like the real service; events added while a client is connected go out live.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bluesky"
IDENTIFIER = "alex.bsky.social"
APP_PASSWORD = "app-s3cr3t-pass-word"
PROTECTED_DID = "did:plc:alexsmith0000000000000001"
POST = "app.bsky.feed.post"
READ_PROCEDURES = {"com.atproto.server.createSession", "com.atproto.server.refreshSession"}


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def jsonl(name: str) -> list[dict[str, Any]]:
    lines = (FIXTURES / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def time_us(when: datetime) -> int:
    return int(when.timestamp() * 1_000_000)


def _jwt(subject: str, scope: str, ttl: int = 7200) -> str:
    """A JWT-shaped token (the SDK reads its ``exp`` to decide when to refresh)."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"scope": scope, "sub": subject, "iat": now, "exp": now + ttl}
    return f"{part({'typ': 'at+jwt', 'alg': 'ES256K'})}.{part(claims)}.c2lnbmF0dXJl"


@dataclasses.dataclass
class Recorded:
    method: str
    nsid: str
    params: dict[str, list[str]]
    authorized: bool


class FakeBluesky:
    """Accounts, posts and notifications of a tiny Bluesky network."""

    def __init__(self) -> None:
        self.profiles: dict[str, dict[str, Any]] = {}
        self.handles: dict[str, str] = {}  # handle → DID
        self.posts: list[dict[str, Any]] = []  # postView objects, newest last
        self.notifications: list[dict[str, Any]] = []
        self.requests: list[Recorded] = []
        self.write_attempts: list[str] = []
        self.access_token = ""
        # Lifetime of the access tokens handed out (the SDK refreshes 15 min before).
        self.access_ttl = 7200
        self.fail: dict[str, tuple[int, dict[str, Any]]] = {}
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self.add_account(PROTECTED_DID, IDENTIFIER, "Alex Smith", "2023-05-01T00:00:00.000Z")

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # ------------------------------------------------------------ data

    def add_account(self, did: str, handle: str, name: str, created_at: str) -> None:
        # Shape of app.bsky.actor.getProfile (recorded), with this account's values.
        profile = fixture("app.bsky.actor.getProfile.json")
        profile.update(did=did, handle=handle, displayName=name, createdAt=created_at)
        profile.pop("viewer", None)
        self.profiles[did] = profile
        self.handles[handle] = did

    def rename(self, did: str, handle: str) -> None:
        old = self.profiles[did]["handle"]
        self.handles.pop(old, None)
        self.handles[handle] = did
        self.profiles[did]["handle"] = handle

    def add_post(
        self,
        did: str,
        rkey: str,
        record: dict[str, Any],
        when: datetime,
        notify: str | None = None,
    ) -> dict[str, Any]:
        """A post as getAuthorFeed lists it; ``notify`` (reply, mention, quote) also
        makes it a notification of the protected account."""
        author = self.profiles[did]
        view = {
            "uri": f"at://{did}/{POST}/{rkey}",
            "cid": f"bafyrei{rkey}cid",
            "author": {k: author[k] for k in ("did", "handle", "displayName", "avatar")},
            "record": record,
            "replyCount": 0,
            "repostCount": 0,
            "likeCount": 0,
            "indexedAt": iso(when),
            "labels": [],
        }
        self.posts.append(view)
        if notify is not None:
            self.notifications.insert(
                0,
                {
                    "uri": view["uri"],
                    "cid": view["cid"],
                    "author": view["author"],
                    "reason": notify,
                    "record": record,
                    "isRead": False,
                    "indexedAt": view["indexedAt"],
                    "labels": [],
                },
            )
        return view

    def delete_post(self, did: str, rkey: str) -> None:
        """The author deletes the post: the AppView no longer has it."""
        uri = f"at://{did}/{POST}/{rkey}"
        self.posts = [p for p in self.posts if p["uri"] != uri]
        self.notifications = [n for n in self.notifications if n["uri"] != uri]

    # ------------------------------------------------------------ XRPC

    def handle(
        self, method: str, target: str, auth: str | None, body: bytes
    ) -> tuple[int, dict[str, Any]]:
        parts = urlsplit(target)
        nsid = parts.path.removeprefix("/xrpc/")
        params = parse_qs(parts.query)
        authorized = auth == f"Bearer {self.access_token}" and bool(self.access_token)
        self.requests.append(Recorded(method, nsid, params, authorized))
        if method != "GET" and nsid not in READ_PROCEDURES:
            self.write_attempts.append(f"{method} {nsid}")
            return 400, {"error": "InvalidRequest", "message": "fake refuses writes"}
        if nsid in self.fail:
            return self.fail[nsid]
        if nsid == "com.atproto.server.createSession":
            return self._create_session(json.loads(body or b"{}"))
        if nsid == "com.atproto.server.refreshSession":
            return self._session("com.atproto.server.refreshSession.json")
        if nsid == "com.atproto.identity.resolveHandle":
            did = self.handles.get(params.get("handle", [""])[0])
            if did is None:
                return 400, {"error": "InvalidRequest", "message": "Unable to resolve handle"}
            return 200, {"did": did}
        if nsid == "app.bsky.actor.getProfiles":
            actors = params.get("actors", [])
            dids = [self.handles.get(a, a) for a in actors]
            return 200, {"profiles": [self.profiles[d] for d in dids if d in self.profiles]}
        if nsid == "app.bsky.feed.getPosts":
            # Like the AppView: posts it does not have are left out, not errors.
            uris = params.get("uris", [])
            if len(uris) > 25:
                return 400, {"error": "InvalidRequest", "message": "uris must have at most 25"}
            return 200, {"posts": [p for p in self.posts if p["uri"] in uris]}
        if nsid == "app.bsky.feed.getAuthorFeed":
            return self._author_feed(params)
        if nsid == "app.bsky.notification.listNotifications":
            if not authorized:
                return 401, {
                    "error": "AuthenticationRequired",
                    "message": "Authentication Required",
                }
            limit = int(params.get("limit", ["50"])[0])
            start = int(params.get("cursor", ["0"])[0])
            page = self.notifications[start : start + limit]
            answer: dict[str, Any] = {"notifications": page, "seenAt": "2026-01-01T00:00:00.000Z"}
            if start + limit < len(self.notifications):
                answer["cursor"] = str(start + limit)
            return 200, answer
        return 501, {"error": "MethodNotImplemented", "message": f"{nsid} is not faked"}

    def _create_session(self, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if data.get("identifier") != IDENTIFIER or data.get("password") != APP_PASSWORD:
            return 401, {
                "error": "AuthenticationRequired",
                "message": "Invalid identifier or password",
            }
        return self._session("com.atproto.server.createSession.json")

    def _session(self, name: str) -> tuple[int, dict[str, Any]]:
        session = fixture(name)
        self.access_token = _jwt(PROTECTED_DID, "com.atproto.appPass", self.access_ttl)
        session.update(
            did=PROTECTED_DID,
            handle=IDENTIFIER,
            accessJwt=self.access_token,
            refreshJwt=_jwt(PROTECTED_DID, "com.atproto.refresh"),
            active=True,
        )
        session.pop("status", None)
        if "didDoc" in session:
            doc = copy.deepcopy(session["didDoc"])
            doc["id"] = PROTECTED_DID
            doc["alsoKnownAs"] = [f"at://{IDENTIFIER}"]
            # The PDS the SDK switches to after login: this fake.
            doc["service"][0]["serviceEndpoint"] = self.base_url
            session["didDoc"] = doc
        return 200, session

    def _author_feed(self, params: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        actor = params.get("actor", [""])[0]
        did = self.handles.get(actor, actor)
        if did not in self.profiles:
            return 400, {"error": "InvalidRequest", "message": "Profile not found"}
        limit = int(params.get("limit", ["50"])[0])
        start = int(params.get("cursor", ["0"])[0])
        mine = [p for p in reversed(self.posts) if p["author"]["did"] == did]
        answer: dict[str, Any] = {"feed": [{"post": p} for p in mine[start : start + limit]]}
        if start + limit < len(mine):
            answer["cursor"] = str(start + limit)
        return 200, answer


def _handler_for(server: FakeBluesky) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, answer = server.handle(
                self.command, self.path, self.headers.get("Authorization"), body
            )
            data = json.dumps(answer).encode("utf-8")
            self.send_response(status)
            if status == 429:
                # The PDS's rate-limit headers: the window resets in a minute.
                self.send_header("ratelimit-limit", "3000")
                self.send_header("ratelimit-remaining", "0")
                self.send_header("ratelimit-reset", str(int(time.time()) + 60))
            self.send_header("content-type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = _serve
        do_POST = _serve
        do_PUT = _serve
        do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


# ---------------------------------------------------------------- Jetstream


class FakeJetstream:
    """Jetstream v1: events replayed from ``cursor``, filtered, then sent live."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.connections: list[dict[str, list[str]]] = []
        self._live: list[ServerConnection] = []
        self._changed = threading.Condition()
        self._server: Server = serve(self._serve, "127.0.0.1", 0)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.socket.getsockname()[:2]
        return f"ws://{host}:{port}/subscribe"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        with self._changed:
            self._changed.notify_all()

    def drop(self) -> None:
        """Close every open connection, as a restarting Jetstream does."""
        for connection in list(self._live):
            connection.close(1011, "restarting")

    @property
    def latest(self) -> datetime:
        """The time of the newest event sent so far (the tests' clock follows it)."""
        stamps = [e["time_us"] for e in self.events]
        return datetime.fromtimestamp(max(stamps, default=0) / 1_000_000, tz=UTC)

    def emit(self, event: dict[str, Any]) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def post(self, did: str, rkey: str, record: dict[str, Any], when: datetime) -> dict[str, Any]:
        event = {
            "did": did,
            "time_us": time_us(when),
            "kind": "commit",
            "commit": {
                "rev": f"rev{rkey}",
                "operation": "create",
                "collection": POST,
                "rkey": rkey,
                "record": record,
                "cid": f"bafyrei{rkey}cid",
            },
        }
        self.emit(event)
        return event

    def delete(self, did: str, rkey: str, when: datetime) -> None:
        commit = {"rev": f"rev{rkey}d", "operation": "delete", "collection": POST, "rkey": rkey}
        self.emit({"did": did, "time_us": time_us(when), "kind": "commit", "commit": commit})

    def identity(self, did: str, handle: str, when: datetime, seq: int) -> None:
        identity = {"did": did, "handle": handle, "seq": seq, "time": iso(when)}
        self.emit({"did": did, "time_us": time_us(when), "kind": "identity", "identity": identity})

    def emit_raw(self, text: str) -> None:
        """A message that is not a Jetstream event (garbage), sent to every client."""
        with self._changed:
            self.events.append({"raw": text, "time_us": 0, "did": "", "kind": ""})
            self._changed.notify_all()

    def _wanted(self, event: dict[str, Any], params: dict[str, list[str]]) -> bool:
        if "raw" in event:
            return True
        dids = params.get("wantedDids")
        if dids and event["did"] not in dids:
            return False
        collections = params.get("wantedCollections")
        if collections and event["kind"] == "commit":
            return event.get("commit", {}).get("collection") in collections
        return True

    def _serve(self, connection: ServerConnection) -> None:
        request = connection.request
        params = parse_qs(urlsplit(request.path if request else "").query)
        self.connections.append(params)
        self._live.append(connection)
        cursor = int(params.get("cursor", ["0"])[0])
        sent = 0
        try:
            while True:
                with self._changed:
                    while sent == len(self.events):
                        if not self._changed.wait(0.2):
                            connection.ping()
                    batch = self.events[sent:]
                    sent = len(self.events)
                for event in batch:
                    if "raw" in event:
                        connection.send(event["raw"])
                    elif event["time_us"] >= cursor and self._wanted(event, params):
                        connection.send(json.dumps(event))
        except ConnectionClosed:
            return
        finally:
            self._live.remove(connection)


@pytest.fixture(name="bluesky_server")
def bluesky_server_fixture() -> Iterator[FakeBluesky]:
    server = FakeBluesky()
    server.start()
    try:
        yield server
    finally:
        server.stop()
    assert server.write_attempts == [], f"write calls reached Bluesky: {server.write_attempts}"


@pytest.fixture(name="jetstream")
def jetstream_fixture() -> Iterator[FakeJetstream]:
    server = FakeJetstream()
    server.start()
    try:
        yield server
    finally:
        server.stop()
