"""A local fake Mastodon instance on 127.0.0.1, for driving the real Mastodon.py.

Entities are the Mastodon API's (Status, Account, Notification, StatusEdit, Instance),
built from the shapes Mastodon.py recorded against a real Mastodon 4.6
(``tests/fixtures/mastodon``, MIT, see its LICENCE): each new entity is a recorded one
with its fields replaced. It serves ``verify_credentials``, ``accounts/lookup``,
``accounts/:id/statuses``, ``notifications`` (``types[]``, ``limit``, ``max_id``,
``since_id``, ``min_id``, ``Link`` headers), ``statuses/:id`` and ``/history``, the
instance documents, and the user stream as server-sent events (``event:`` /
``data:`` lines, ``:thump`` heartbeats). It checks the bearer token, can be told to
fail, and records every request; any method other than GET is a write attempt, and the
fixture fails the test if there is one.

Use: ``from tests.fakes.mastodon_server import FakeMastodon, mastodon_server  # noqa: F401``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import queue
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import yaml

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "mastodon"
TOKEN = "s3cr3t-mastodon-access-token"
DOMAIN = "social.example"
FIRST_ID = 116_000_000_000_000_000


def _recorded(name: str) -> list[tuple[str, Any]]:
    document = yaml.safe_load((FIXTURES / name).read_text(encoding="utf-8"))
    found = []
    for item in document["interactions"]:
        body = item["response"]["body"]["string"]
        if item["response"]["headers"].get("Content-Type") == ["text/event-stream"]:
            found.append((item["request"]["uri"], body))
            continue
        try:
            found.append((item["request"]["uri"], json.loads(body)))
        except ValueError:
            found.append((item["request"]["uri"], body))
    return found


@dataclasses.dataclass(frozen=True)
class Templates:
    account: dict[str, Any]
    status: dict[str, Any]
    notification: dict[str, Any]
    edit: dict[str, Any]
    instance_v1: dict[str, Any]
    instance_v2: dict[str, Any]
    not_found: dict[str, Any]

    @classmethod
    def load(cls) -> Templates:
        stream = dict(_recorded("test_stream_user_direct.yaml"))
        events = stream["http://localhost:4000/api/v1/streaming/user"]
        notification = next(
            json.loads(line[6:])
            for line in events.splitlines()
            if line.startswith("data: {") and '"type":"mention"' in line
        )
        history = _recorded("test_entity_statusedit.yaml")[0][1]
        lookups = _recorded("test_account_lookup.yaml")
        not_found = next(body for uri, body in lookups if "kljadkl" in uri)
        status = {k: v for k, v in notification["status"].items() if k != "account"}
        return cls(
            account=notification["account"],
            status=status,
            notification={k: v for k, v in notification.items() if k not in ("account", "status")},
            edit={k: v for k, v in history[-1].items() if k != "account"},
            instance_v1=stream["http://localhost:3000/api/v1/instance/"],
            instance_v2=stream["http://localhost:3000/api/v2/instance/"],
            not_found=not_found,
        )


@dataclasses.dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    params: dict[str, list[str]]
    authorized: bool


@dataclasses.dataclass
class Fault:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]
    path_contains: str = ""


def _stamp(when: str) -> str:
    """Mastodon's timestamp form for a ``2026-05-01T10:00:00`` test time."""
    return when.replace("Z", "") + ".000Z" if "." not in when else when


class FakeMastodon:
    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.templates = Templates.load()
        self.accounts: dict[str, dict[str, Any]] = {}
        self.statuses: list[dict[str, Any]] = []
        self.notifications: list[dict[str, Any]] = []
        self.history: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[Recorded] = []
        self.write_attempts: list[str] = []
        self.faults: list[Fault] = []
        self.me: dict[str, Any] | None = None
        self._tags: dict[str, str] = {}
        self._gone: set[str] = set()  # deleted statuses that answer 410
        self._hidden: set[str] = set()  # suspended accounts, whose statuses answer 404
        self._streams: list[queue.Queue[tuple[str, str] | None]] = []
        self._next = FIRST_ID
        self._lock = threading.RLock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.drop_streams()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def _id(self) -> str:
        self._next += 1
        return str(self._next)

    # ------------------------------------------------------------ accounts

    def add_account(
        self,
        acct: str,
        display_name: str = "",
        created_at: str = "2020-01-01",
        *,
        suspended: bool = False,
    ) -> dict[str, Any]:
        """``acct`` as this instance shows it: ``alex`` (local) or ``jdoe@other.example``."""
        with self._lock:
            username, _, host = acct.partition("@")
            host = host or DOMAIN
            account = copy.deepcopy(self.templates.account)
            account_id = self._id()
            account.update(
                id=account_id,
                username=username,
                acct=acct,
                display_name=display_name,
                created_at=f"{created_at}T00:00:00.000Z",
                url=f"https://{host}/@{username}",
                uri=f"https://{host}/users/{username}",
                roles=[],
            )
            if suspended:
                account["suspended"] = True
            self.accounts[account_id] = account
            return account

    def set_me(self, account: dict[str, Any]) -> None:
        self.me = account

    def _by_acct(self, acct: str) -> dict[str, Any] | None:
        wanted = acct.removeprefix("@").casefold().removesuffix(f"@{DOMAIN}")
        return next((a for a in self.accounts.values() if a["acct"].casefold() == wanted), None)

    # ------------------------------------------------------------ statuses

    def post(
        self,
        author: dict[str, Any],
        text: str,
        created_at: str,
        *,
        visibility: str = "public",
        mentions: tuple[dict[str, Any], ...] = (),
        reply_to: dict[str, Any] | None = None,
        media: tuple[tuple[str, str | None], ...] = (),
        spoiler: str = "",
    ) -> dict[str, Any]:
        """A status as Mastodon renders it: mentions as h-card links before the text.
        A status that mentions or replies to the token's account notifies it."""
        with self._lock:
            status = copy.deepcopy(self.templates.status)
            status_id = self._id()
            host = author["url"].split("/")[2]
            tags = "".join(
                f'<span class="h-card" translate="no"><a href="{m["url"]}" class="u-url '
                f'mention">@<span>{m["username"]}</span></a></span> '
                for m in mentions
            )
            status.update(
                id=status_id,
                created_at=_stamp(created_at),
                visibility=visibility,
                uri=f"https://{host}/users/{author['username']}/statuses/{status_id}",
                url=f"https://{host}/@{author['username']}/{status_id}",
                content=f"<p>{tags}{text}</p>",
                spoiler_text=spoiler,
                sensitive=bool(spoiler),
                account=author,
                mentions=[{k: m[k] for k in ("id", "username", "url", "acct")} for m in mentions],
                media_attachments=[
                    _media(self._id(), kind, description) for kind, description in media
                ],
                in_reply_to_id=reply_to["id"] if reply_to else None,
                in_reply_to_account_id=reply_to["account"]["id"] if reply_to else None,
                edited_at=None,
                reblog=None,
            )
            self.statuses.append(status)
            self._tags[status_id] = tags
            self.history[status_id] = [self._edit(status)]
            me_id = self.me["id"] if self.me else None
            tags_me = any(m["id"] == me_id for m in mentions)
            answers_me = reply_to is not None and reply_to["account"]["id"] == me_id
            if me_id and author["id"] != me_id and (tags_me or answers_me):
                self.notify("mention", author, status)
            return status

    def boost(self, booster: dict[str, Any], status: dict[str, Any], created_at: str) -> None:
        with self._lock:
            wrapper = copy.deepcopy(self.templates.status)
            wrapper_id = self._id()
            host = booster["url"].split("/")[2]
            wrapper.update(
                id=wrapper_id,
                created_at=_stamp(created_at),
                uri=f"https://{host}/users/{booster['username']}/statuses/{wrapper_id}/activity",
                url=None,
                content="",
                account=booster,
                mentions=[],
                media_attachments=[],
                reblog=status,
                edited_at=None,
            )
            self.statuses.append(wrapper)

    def edit(self, status: dict[str, Any], text: str, edited_at: str) -> None:
        with self._lock:
            status["content"] = f"<p>{self._tags[status['id']]}{text}</p>"
            status["edited_at"] = _stamp(edited_at)
            self.history[status["id"]].append(self._edit(status))
            self.push("status.update", status)

    def delete(self, status: dict[str, Any], *, gone: bool = False) -> None:
        """Its author deletes it: ``statuses/:id`` answers 404 (410 with ``gone``), and
        its notifications go, as on Mastodon."""
        with self._lock:
            self.statuses = [s for s in self.statuses if s["id"] != status["id"]]
            self.notifications = [
                n for n in self.notifications if (n.get("status") or {}).get("id") != status["id"]
            ]
            if gone:
                self._gone.add(status["id"])

    def suspend(self, account: dict[str, Any]) -> None:
        """A moderator suspends the account: its statuses answer 404, the account itself
        answers with ``suspended: true``."""
        with self._lock:
            account["suspended"] = True
            self._hidden.add(account["id"])

    def _edit(self, status: dict[str, Any]) -> dict[str, Any]:
        edit = copy.deepcopy(self.templates.edit)
        edit.update(
            content=status["content"],
            spoiler_text=status["spoiler_text"],
            sensitive=status["sensitive"],
            created_at=status["edited_at"] or status["created_at"],
            account=status["account"],
            media_attachments=status["media_attachments"],
        )
        edit.pop("poll", None)
        return edit

    def notify(self, kind: str, account: dict[str, Any], status: dict[str, Any]) -> None:
        with self._lock:
            notification = copy.deepcopy(self.templates.notification)
            notification_id = str(len(self.notifications) + 100)
            notification.update(
                id=notification_id,
                type=kind,
                created_at=status["created_at"],
                group_key=f"ungrouped-{notification_id}",
                account=account,
                status=status,
            )
            self.notifications.append(notification)
            self.push("notification", notification)

    # ------------------------------------------------------------ streaming

    def push(self, event: str, payload: dict[str, Any]) -> None:
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        with self._lock:
            for client in self._streams:
                client.put((event, data))

    def stream_clients(self) -> int:
        with self._lock:
            return len(self._streams)

    def drop_streams(self) -> None:
        """Close every open stream (the client should reconnect)."""
        with self._lock:
            for client in self._streams:
                client.put(None)
            self._streams.clear()

    def _open_stream(self) -> queue.Queue[tuple[str, str] | None]:
        client: queue.Queue[tuple[str, str] | None] = queue.Queue()
        with self._lock:
            self._streams.append(client)
        return client

    def _close_stream(self, client: queue.Queue[tuple[str, str] | None]) -> None:
        with self._lock:
            if client in self._streams:
                self._streams.remove(client)

    # ------------------------------------------------------------ faults and records

    def fail_next(
        self,
        status: int,
        error: str,
        headers: dict[str, str] | None = None,
        *,
        times: int = 1,
        path_contains: str = "",
    ) -> None:
        with self._lock:
            for _ in range(times):
                self.faults.append(Fault(status, {"error": error}, headers or {}, path_contains))

    def requests_to(self, fragment: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if fragment in r.path]

    # ------------------------------------------------------------ serving

    def handle(self, method: str, target: str, auth: str | None) -> _Response:
        parts = urlsplit(target)
        params = parse_qs(parts.query, keep_blank_values=True)
        authorized = auth == f"Bearer {self.token}"
        with self._lock:
            self.requests.append(Recorded(method, parts.path, params, authorized))
            if method != "GET":
                self.write_attempts.append(f"{method} {parts.path}")
                return 405, {}, {"error": "nocontact never writes"}
            if not authorized:
                return 401, {}, {"error": "The access token is invalid"}
            fault = next((f for f in self.faults if f.path_contains in parts.path), None)
            if fault is not None:
                self.faults.remove(fault)
                return fault.status, fault.headers, fault.body
            return self._route(
                parts.path.rstrip("/"), {k: v[-1] for k, v in params.items()}, params
            )

    def _route(self, path: str, params: dict[str, str], multi: dict[str, list[str]]) -> _Response:
        if path == "/api/v1/accounts/verify_credentials" and self.me is not None:
            return 200, {}, self.me
        if path == "/api/v1/accounts/lookup":
            account = self._by_acct(params.get("acct", ""))
            return (200, {}, account) if account else (404, {}, self.templates.not_found)
        if m := re.fullmatch(r"/api/v1/accounts/(\d+)/statuses", path):
            return self._page(self._account_statuses(m.group(1)), params, path)
        if path == "/api/v1/notifications":
            wanted = set(multi.get("types[]", []))
            found = [n for n in self.notifications if not wanted or n["type"] in wanted]
            return self._page(found, params, path)
        if m := re.fullmatch(r"/api/v1/accounts/(\d+)", path):
            account = self.accounts.get(m.group(1))
            return (200, {}, account) if account else (404, {}, self.templates.not_found)
        if m := re.fullmatch(r"/api/v1/statuses/(\d+)(/history)?", path):
            status = next((s for s in self.statuses if s["id"] == m.group(1)), None)
            if m.group(1) in self._gone:
                return 410, {}, {"error": "Gone"}
            if status is None or status["account"]["id"] in self._hidden:
                return 404, {}, self.templates.not_found
            return 200, {}, self.history[status["id"]] if m.group(2) else status
        if path == "/api/v2/search":
            return self._search(params)
        if path == "/api/v1/instance":
            return 200, {}, self._instance(self.templates.instance_v1, "v1")
        if path == "/api/v2/instance":
            return 200, {}, self._instance(self.templates.instance_v2, "v2")
        return 404, {}, {"error": "Not Found"}

    def _search(self, params: dict[str, str]) -> _Response:
        """Full-text search of public statuses (an instance with Elasticsearch)."""
        phrase = params.get("q", "").strip('"').casefold()
        hits = [
            s
            for s in self.statuses
            if s["visibility"] == "public" and phrase and phrase in s["content"].casefold()
        ]
        _, _, page = self._page(hits, params, "/api/v2/search")
        return 200, {}, {"accounts": [], "statuses": page, "hashtags": []}

    def _instance(self, template: dict[str, Any], version: str) -> dict[str, Any]:
        document = copy.deepcopy(template)
        streaming = "ws://" + self.base_url.removeprefix("http://")
        if version == "v1":
            document["uri"] = DOMAIN
            document["urls"] = {"streaming_api": streaming}
        else:
            document["domain"] = DOMAIN
            document["configuration"]["urls"]["streaming"] = streaming
        return document

    def _account_statuses(self, account_id: str) -> list[dict[str, Any]]:
        # What a stranger's token sees: public and unlisted posts, and boosts.
        return [
            s
            for s in self.statuses
            if s["account"]["id"] == account_id and s["visibility"] in ("public", "unlisted")
        ]

    def _page(self, items: list[dict[str, Any]], params: dict[str, str], path: str) -> _Response:
        def key(value: str) -> int:
            return int(value)

        limit = min(int(params.get("limit", "20") or 20), 40)
        selected = sorted(items, key=lambda i: key(i["id"]), reverse=True)
        if params.get("max_id"):
            selected = [i for i in selected if key(i["id"]) < key(params["max_id"])]
        for bound in ("since_id", "min_id"):
            if params.get(bound):
                selected = [i for i in selected if key(i["id"]) > key(params[bound])]
        if params.get("min_id"):
            selected = selected[-limit:]
        page = selected[:limit]
        headers = {}
        if page:
            base = f"{self.base_url}{path}?"
            older = base + urlencode({"limit": limit, "max_id": page[-1]["id"]})
            newer = base + urlencode({"limit": limit, "min_id": page[0]["id"]})
            headers["Link"] = f'<{older}>; rel="next", <{newer}>; rel="prev"'
        return 200, headers, page


def _media(media_id: str, kind: str, description: str | None) -> dict[str, Any]:
    return {
        "id": media_id,
        "type": kind,
        "url": f"https://files.social.example/media/{media_id}.png",
        "preview_url": f"https://files.social.example/media/{media_id}_small.png",
        "remote_url": None,
        "preview_remote_url": None,
        "text_url": None,
        "meta": {"original": {"width": 640, "height": 480}},
        "description": description,
        "blurhash": "UFBWY:8_0Jxv4mx]t8t64.%M-:IUWGWAt6M}",
    }


_Response = tuple[int, dict[str, str], Any]


class _Handler(BaseHTTPRequestHandler):
    fake: ClassVar[FakeMastodon]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        auth = self.headers.get("Authorization")
        if self.command == "GET" and path == "/api/v1/streaming/user":
            with self.fake._lock:
                self.fake.requests.append(
                    Recorded("GET", path, {}, auth == f"Bearer {self.fake.token}")
                )
            if auth != f"Bearer {self.fake.token}":
                self._send(401, {}, {"error": "The access token is invalid"})
                return
            self._stream()
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        status, headers, body = self.fake.handle(self.command, self.path, auth)
        self._send(status, headers, body)

    def _send(self, status: int, headers: dict[str, str], body: Any) -> None:
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _stream(self) -> None:
        client = self.fake._open_stream()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "private, no-store")
            self.end_headers()
            self.wfile.write(b":)\n")
            self.wfile.flush()
            while True:
                try:
                    item = client.get(timeout=0.5)
                except queue.Empty:
                    self.wfile.write(b":thump\n")
                    self.wfile.flush()
                    continue
                if item is None:
                    return
                event, data = item
                self.wfile.write(f"event: {event}\ndata: {data}\n\n".encode())
                self.wfile.flush()
        except OSError:
            return
        finally:
            self.fake._close_stream(client)
            self.close_connection = True

    do_GET = _answer
    do_POST = _answer
    do_PUT = _answer
    do_PATCH = _answer
    do_DELETE = _answer


def _handler_for(fake: FakeMastodon) -> type[BaseHTTPRequestHandler]:
    return type("Handler", (_Handler,), {"fake": fake})


@pytest.fixture
def mastodon_server() -> Iterator[FakeMastodon]:
    fake = FakeMastodon()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
    assert not fake.write_attempts, f"the watcher tried to write: {fake.write_attempts}"
