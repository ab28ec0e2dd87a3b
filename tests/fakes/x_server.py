"""A local fake of X API v2 on 127.0.0.1, for driving the real tweepy in tests.

It speaks the wire format of the X API v2 reference and of tweepy's recorded cassettes
(``tests/fixtures/x/recorded``): ``GET /2/users/by/username/:u``, ``/2/users/by``,
``/2/users/:id/mentions`` and ``/2/tweets/search/recent`` with ``since_id``,
``until_id``, ``start_time``, ``max_results``, field selection and the ``author_id`` /
``in_reply_to_user_id`` expansions. It checks the bearer token, counts the posts it
serves (what X bills), can be told to fail, and records any non-GET request so that the
fixture fails the test.

Use: ``from tests.fakes.x_server import x_server_fixture  # noqa: F401``, then ask for
``x_server``.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CASSETTES = REPO_ROOT / "tests" / "fixtures" / "x" / "recorded"
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "x"

FAKE_TOKEN = "AAAAs3cr3tBearerTokenForTests"
TWITTER_EPOCH_MS = 1288834974657
QUERY_MAX_LEN = 512
DEFAULT_TWEET_FIELDS = ("id", "text", "edit_history_tweet_ids")
DEFAULT_USER_FIELDS = ("id", "name", "username")
_MENTION = re.compile(r"(?<![\w@])@(\w{1,15})")


def snowflake(when: datetime, sequence: int = 0) -> str:
    """An X post id for a moment (ids sort by time, as on X)."""
    ms = int(when.timestamp() * 1000) - TWITTER_EPOCH_MS
    return str((ms << 22) | (sequence & 0xFFF))


def snowflake_time(tweet_id: str) -> datetime:
    ms = (int(tweet_id) >> 22) + TWITTER_EPOCH_MS
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def x_time(when: datetime) -> str:
    """X API v2's timestamp form: ``2026-11-21T05:00:00.000Z``."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def fixture_body(name: str, **values: str) -> bytes:
    """A handcrafted error body from tests/fixtures/x, with ``{placeholders}`` filled."""
    text = (FIXTURES / name).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace("{" + key + "}", json.dumps(value)[1:-1])
    return text.encode("utf-8")


@dataclasses.dataclass(frozen=True)
class Interaction:
    method: str
    uri: str
    status: int
    headers: dict[str, str]
    body: dict[str, Any]


def load_cassette(name: str) -> list[Interaction]:
    """Interactions of one of tweepy's recorded cassettes (vcrpy YAML, gzip bodies)."""
    document = yaml.safe_load((CASSETTES / name).read_text(encoding="utf-8"))
    found = []
    for item in document["interactions"]:
        body = item["response"]["body"]["string"]
        if isinstance(body, bytes) and body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        headers = {k.lower(): v[0] for k, v in item["response"]["headers"].items()}
        found.append(
            Interaction(
                method=item["request"]["method"],
                uri=item["request"]["uri"],
                status=item["response"]["status"]["code"],
                headers=headers,
                body=json.loads(body),
            )
        )
    return found


@dataclasses.dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    params: dict[str, str]
    authorized: bool


@dataclasses.dataclass
class Fault:
    status: int
    body: bytes
    headers: dict[str, str]
    # Only requests whose path contains this fail (all when empty).
    path_contains: str = ""
    # Seconds to wait before answering, to make the client time out.
    delay: float = 0.0


class FakeXServer:
    def __init__(self, token: str = FAKE_TOKEN) -> None:
        self.token = token
        self.users: dict[str, dict[str, Any]] = {}  # lower username -> user object
        self.suspended: set[str] = set()
        self.tweets: list[dict[str, Any]] = []
        self.requests: list[Recorded] = []
        self.write_attempts: list[str] = []
        self.served_posts = 0
        self.faults: list[Fault] = []
        self._sequence = 0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/2"

    # ------------------------------------------------------------ data

    def add_user(
        self, username: str, name: str, created_at: datetime, user_id: str | None = None
    ) -> dict[str, Any]:
        with self._lock:
            self._sequence += 1
            user = {
                "id": user_id or str(10_000_000 + self._sequence),
                "name": name,
                "username": username,
                "created_at": x_time(created_at),
            }
            self.users[username.lower()] = user
            return user

    def add_tweet(
        self,
        author: dict[str, Any],
        text: str,
        created_at: datetime,
        *,
        reply_to: dict[str, Any] | None = None,
        tweet_id: str | None = None,
    ) -> dict[str, Any]:
        """A post as X stores it; a reply starts with ``@recipient`` as on X."""
        with self._lock:
            self._sequence += 1
            if reply_to is not None and not text.startswith(f"@{reply_to['username']}"):
                text = f"@{reply_to['username']} {text}"
            tweet_id = tweet_id or snowflake(created_at, self._sequence)
            tweet: dict[str, Any] = {
                "id": tweet_id,
                "text": text,
                "edit_history_tweet_ids": [tweet_id],
                "author_id": author["id"],
                "created_at": x_time(created_at),
                "conversation_id": tweet_id,
            }
            mentions = [
                {"start": m.start(), "end": m.end(), "username": m.group(1)}
                for m in _MENTION.finditer(text)
            ]
            for mention in mentions:
                known = self.users.get(str(mention["username"]).lower())
                if known:
                    mention["id"] = known["id"]
            if mentions:
                tweet["entities"] = {"mentions": mentions}
            if reply_to is not None:
                tweet["in_reply_to_user_id"] = reply_to["id"]
                tweet["referenced_tweets"] = [{"type": "replied_to", "id": str(int(tweet_id) - 1)}]
            self.tweets.append(tweet)
            return tweet

    def fail_next(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        *,
        times: int = 1,
        path_contains: str = "",
        delay: float = 0.0,
    ) -> None:
        with self._lock:
            for _ in range(times):
                self.faults.append(Fault(status, body, dict(headers or {}), path_contains, delay))

    def requests_to(self, fragment: str) -> list[Recorded]:
        return [r for r in self.requests if fragment in r.path]

    # ------------------------------------------------------------ serving

    def handle(self, method: str, target: str, auth: str | None) -> _Response:
        parts = urlsplit(target)
        params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        authorized = auth == f"Bearer {self.token}"
        with self._lock:
            self.requests.append(Recorded(method, parts.path, params, authorized))
            if method != "GET":
                self.write_attempts.append(f"{method} {parts.path}")
                return 405, {}, b'{"title":"Method Not Allowed"}'
            if not authorized:
                return 401, {}, fixture_body("unauthorized.json")
            fault = next((f for f in self.faults if f.path_contains in parts.path), None)
            if fault is None:
                return self._route(parts.path, params)
            self.faults.remove(fault)
        # Sleep outside the lock, so that other requests are not held up.
        time.sleep(fault.delay)
        return fault.status, fault.headers, fault.body

    def _route(self, path: str, params: dict[str, str]) -> _Response:
        if m := re.fullmatch(r"/2/users/by/username/(\w+)", path):
            return self._user_by_username(m.group(1), params)
        if path == "/2/users/by":
            return self._users_by(params)
        if m := re.fullmatch(r"/2/users/(\d+)/mentions", path):
            return self._mentions(m.group(1), params)
        if path == "/2/tweets/search/recent":
            return self._search(params)
        return 404, {}, b'{"title":"Not Found Error","detail":"no such route","status":404}'

    def _user_json(self, user: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
        wanted = set(DEFAULT_USER_FIELDS) | _csv(params.get("user.fields"))
        return {k: v for k, v in user.items() if k in wanted}

    def _user_error(self, username: str) -> bytes:
        name = (
            "user_suspended.json" if username.lower() in self.suspended else "user_not_found.json"
        )
        return fixture_body(name, username=username)

    def _user_by_username(self, username: str, params: dict[str, str]) -> _Response:
        user = self.users.get(username.lower())
        if user is None or username.lower() in self.suspended:
            return 200, {}, self._user_error(username)
        return 200, {}, _json({"data": self._user_json(user, params)})

    def _users_by(self, params: dict[str, str]) -> _Response:
        data, errors = [], []
        for username in params.get("usernames", "").split(","):
            user = self.users.get(username.lower())
            if user is None or username.lower() in self.suspended:
                errors.extend(json.loads(self._user_error(username))["errors"])
            else:
                data.append(self._user_json(user, params))
        body: dict[str, Any] = {}
        if data:
            body["data"] = data
        if errors:
            body["errors"] = errors
        return 200, {}, _json(body)

    def _mentions(self, user_id: str, params: dict[str, str]) -> _Response:
        user = next((u for u in self.users.values() if u["id"] == user_id), None)
        if user is None:
            return 200, {}, self._user_error(user_id)
        name = user["username"].lower()

        def addresses(tweet: dict[str, Any]) -> bool:
            mentions = tweet.get("entities", {}).get("mentions", [])
            return any(m["username"].lower() == name for m in mentions)

        return self._timeline([t for t in self.tweets if addresses(t)], params, 5)

    def _search(self, params: dict[str, str]) -> _Response:
        query = params.get("query", "")
        if len(query) > QUERY_MAX_LEN:
            return _invalid("query", query, f"Query length exceeds {QUERY_MAX_LEN} characters")
        try:
            groups = _parse_query(query)
        except ValueError as exc:
            return _invalid("query", query, str(exc))
        by_id = {u["id"]: u for u in self.users.values()}
        found = [t for t in self.tweets if all(_group_matches(g, t, by_id) for g in groups)]
        return self._timeline(found, params, 10)

    def _timeline(
        self, tweets: list[dict[str, Any]], params: dict[str, str], least: int
    ) -> _Response:
        try:
            max_results = int(params.get("max_results", "10"))
        except ValueError:
            return _invalid("max_results", params["max_results"], "not a number")
        if not least <= max_results <= 100:
            return _invalid(
                "max_results",
                str(max_results),
                f"The `max_results` query parameter value [{max_results}] is not between "
                f"{least} and 100",
            )
        since = int(params.get("since_id", "0") or 0)
        until = int(params["until_id"]) if params.get("until_id") else None
        start = params.get("start_time")
        selected = [
            t
            for t in tweets
            if int(t["id"]) > since
            and (until is None or int(t["id"]) < until)
            and (start is None or t["created_at"] >= start.replace("Z", ".000Z"))
        ]
        selected.sort(key=lambda t: int(t["id"]), reverse=True)
        page, rest = selected[:max_results], selected[max_results:]
        self.served_posts += len(page)
        wanted = set(DEFAULT_TWEET_FIELDS) | _csv(params.get("tweet.fields"))
        body: dict[str, Any] = {}
        if page:
            body["data"] = [{k: v for k, v in t.items() if k in wanted} for t in page]
            users = self._expanded_users(page, _csv(params.get("expansions")), params)
            if users:
                body["includes"] = {"users": users}
        meta: dict[str, Any] = {"result_count": len(page)}
        if page:
            meta |= {"newest_id": page[0]["id"], "oldest_id": page[-1]["id"]}
        if rest:
            meta["next_token"] = f"fake{page[-1]['id']}"
        body["meta"] = meta
        return 200, {}, _json(body)

    def _expanded_users(
        self, page: list[dict[str, Any]], expansions: set[str], params: dict[str, str]
    ) -> list[dict[str, Any]]:
        by_id = {u["id"]: u for u in self.users.values()}
        ids: list[str] = []
        for tweet in page:
            for field in ("author_id", "in_reply_to_user_id"):
                if field in expansions and tweet.get(field) in by_id and tweet[field] not in ids:
                    ids.append(tweet[field])
        return [self._user_json(by_id[i], params) for i in ids]


_Response = tuple[int, dict[str, str], bytes]


def _json(body: object) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _csv(value: str | None) -> set[str]:
    return {part for part in (value or "").split(",") if part}


def _invalid(parameter: str, value: str, message: str) -> _Response:
    return (
        400,
        {},
        fixture_body("invalid_request.json", parameter=parameter, value=value, message=message),
    )


_TOKEN = re.compile(r'\(|\)|"[^"]*"|[^\s()]+')


def _parse_query(query: str) -> list[list[str]]:
    """The search syntax the watcher uses: ANDed groups of ORed terms, e.g.
    ``(from:a OR from:b) (to:p OR @p OR "Alex Smith")``."""
    groups: list[list[str]] = []
    current: list[str] | None = None
    for token in _TOKEN.findall(query):
        if token == "(":
            if current is not None:
                raise ValueError("nested groups are not supported by the fake")
            current = []
        elif token == ")":
            if not current:
                raise ValueError("empty group")
            groups.append(current)
            current = None
        elif token == "OR":
            if current is None:
                raise ValueError("OR outside a group")
        elif current is not None:
            current.append(token)
        else:
            groups.append([token])
    if current is not None or not groups:
        raise ValueError("There were errors processing your request: unbalanced query")
    return groups


def _group_matches(group: list[str], tweet: dict[str, Any], by_id: dict[str, Any]) -> bool:
    author = by_id.get(tweet.get("author_id", ""), {}).get("username", "").lower()
    replied = by_id.get(tweet.get("in_reply_to_user_id", ""), {}).get("username", "").lower()
    mentioned = {m["username"].lower() for m in tweet.get("entities", {}).get("mentions", [])}
    text = tweet["text"].lower()
    for term in group:
        lowered = term.lower()
        if lowered.startswith("from:") and lowered[5:] == author:
            return True
        if lowered.startswith("to:") and lowered[3:] == replied:
            return True
        if lowered.startswith("@") and lowered[1:] in mentioned:
            return True
        if lowered.startswith('"') and lowered.strip('"') in text:
            return True
        if not lowered.startswith(("from:", "to:", "@", '"')) and lowered in text:
            return True
    return False


def _handler_for(server: FakeXServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes; without this, Nagle and delayed ACKs
        # add 40 ms to every answer.
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            status, headers, body = server.handle(
                self.command, self.path, self.headers.get("Authorization")
            )
            self.send_response(status)
            reset = str(int(time.time()) + 900)
            base = {
                "content-type": "application/json; charset=utf-8",
                "x-rate-limit-limit": "450",
                "x-rate-limit-remaining": "0" if status == 429 else "449",
                "x-rate-limit-reset": reset,
            }
            for key, value in (base | headers).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            try:
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                # The client gave up first (the timeout test): nothing left to answer.
                self.close_connection = True

        do_GET = _serve
        do_POST = _serve
        do_PUT = _serve
        do_PATCH = _serve
        do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture(name="x_server")
def x_server_fixture() -> Iterator[FakeXServer]:
    server = FakeXServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
    assert server.write_attempts == [], f"write calls reached X: {server.write_attempts}"
