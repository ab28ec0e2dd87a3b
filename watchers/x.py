"""X (Twitter) watcher: the protected person's mentions and the restrained party's posts
that address or name them, through tweepy's API v2 ``Client`` (``type: x``).

Read-only and metered. X bills reads per post received, so the watcher keeps a monthly
read budget: it counts the posts it actually received, spreads the rest evenly over the
month, and never asks for more than what is left (see README.md, "X").

Evidence: each post's ``raw`` is the JSON ``{"data": <post>, "includes": {"users":
[<author>, <replied-to user>]}}``, the post object and its expansions exactly as X sent
them (the page's ``meta`` is left out so that the same post read twice has the same raw).
"""

from __future__ import annotations

import calendar
import dataclasses
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal

import requests
import tweepy
from pydantic import Field, SecretStr, field_validator

from watchers.base import (
    AccountInfo,
    AuthError,
    Duration,
    Observation,
    ObservationKind,
    PollResult,
    RateLimitedError,
    Targets,
    TransientError,
    WatcherConfigError,
    WatcherError,
    WatcherSettings,
    utc,
)
from watchers.toolkit.redact import Redactor, register_secrets

log = logging.getLogger(__name__)

CAPTURE_METHOD = "X API v2 (tweepy) mentions/search"
STATE_VERSION = 1

# X's own bounds on max_results per endpoint.
MENTIONS_MIN, MENTIONS_MAX = 5, 100
SEARCH_MIN, SEARCH_MAX = 10, 100
# Recent search only reaches seven days back; keep a margin for clock skew.
SEARCH_WINDOW = timedelta(days=7) - timedelta(minutes=5)
# With no x-rate-limit-reset header, wait one rate-limit window (15 min).
DEFAULT_RETRY_AFTER = 900.0

TWEET_FIELDS = [
    "created_at",
    "author_id",
    "in_reply_to_user_id",
    "referenced_tweets",
    "entities",
    "conversation_id",
    "note_tweet",
]
USER_FIELDS = ["username", "name", "created_at"]
EXPANSIONS = ["author_id", "in_reply_to_user_id"]

# tweepy builds every URL from this host; the session below swaps it for base_url.
_TWEEPY_PREFIXES = ("https://api.twitter.com/2", "https://api.x.com/2")
_HANDLE = re.compile(r"^[A-Za-z0-9_]{1,15}$")
# tweepy puts its bearer token in a debug log line, so it only ever gets this placeholder;
# the real token is added by the session, below tweepy's logging.
_TOKEN_PLACEHOLDER = "(added-by-nocontact)"  # noqa: S105 - not a secret


class XSettings(WatcherSettings):
    type: Literal["x"]
    bearer_token: SecretStr
    # Endpoint of X API v2, overridable to point at a proxy or a local fake server.
    base_url: str = "https://api.x.com/2"
    # Posts read per calendar month (UTC): the watcher never receives more than this.
    monthly_read_budget: int = Field(default=10000, ge=1)
    timeout: Duration = Field(default=timedelta(seconds=20))
    # At most this many existing posts per endpoint on the very first poll; 0 = from now on.
    backlog: int = Field(default=20, ge=0, le=100)
    # Search query length limit of the account's X access tier (512 Basic, 1024 Pro).
    query_max_length: int = Field(default=512, ge=128, le=4096)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return value.rstrip("/")

    def secret_fields(self) -> frozenset[str]:
        return frozenset({"bearer_token"})


class ReadOnlyViolation(WatcherError):
    """Something tried a write call through the X session; nocontact never writes."""


class _XSession(requests.Session):
    """The HTTP session under tweepy: points it at ``base_url``, adds the bearer token
    and a timeout, and refuses anything but GET."""

    def __init__(self, base_url: str, token: SecretStr, timeout: float) -> None:
        super().__init__()
        self._base_url = base_url
        self._token = token
        self._timeout = timeout

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        verb = method.decode() if isinstance(method, bytes) else method
        if verb.upper() != "GET":
            raise ReadOnlyViolation(f"x: refused a {verb.upper()} request; nocontact is read-only")
        kwargs["headers"] = {
            **(kwargs.get("headers") or {}),
            "Authorization": f"Bearer {self._token.get_secret_value()}",
        }
        kwargs.setdefault("timeout", self._timeout)
        return super().request(verb, self._rewrite(url), *args, **kwargs)

    def _rewrite(self, url: str | bytes) -> str:
        text = url.decode() if isinstance(url, bytes) else url
        for prefix in _TWEEPY_PREFIXES:
            if text.startswith(prefix + "/"):
                return self._base_url + text[len(prefix) :]
        # Only tweepy's own API URLs may go through this session.
        raise ReadOnlyViolation("x: refused a request outside X API v2")


# ---------------------------------------------------------------- budget arithmetic


def month_key(now: datetime) -> str:
    return f"{now.year:04d}-{now.month:02d}"


def month_bounds(now: datetime) -> tuple[datetime, datetime]:
    start = datetime(now.year, now.month, 1, tzinfo=UTC)
    days = calendar.monthrange(now.year, now.month)[1]
    return start, start + timedelta(days=days)


def poll_allowance(limit: int, used: int, now: datetime, every: timedelta) -> int:
    """Posts this poll may read: the month's budget accrues evenly over the month, and a
    poll may spend what has accrued up to the end of its interval and is not yet spent.

    This is ``remaining / remaining polls`` when every poll spends its share, but unlike
    it, a poll that reads less (or skips an endpoint because its share is below X's
    minimum page size) leaves its share to later polls instead of losing it.
    """
    now = utc(now)
    start, end = month_bounds(now)
    horizon = min(now + every, end)
    accrued = int(limit * ((horizon - start) / (end - start)))
    return max(0, min(limit, accrued) - used)


# ---------------------------------------------------------------- search queries


def _pack_group(terms: Sequence[str], max_len: int) -> list[str]:
    """Greedily pack terms into ``(a OR b OR …)`` groups of at most ``max_len`` chars."""
    groups: list[list[str]] = []
    length = 0
    for term in terms:
        if len(term) + 2 > max_len:
            raise WatcherConfigError(f"x: search term {term!r} is too long for one X query")
        if groups and length + 4 + len(term) <= max_len:
            groups[-1].append(term)
            length += 4 + len(term)
        else:
            groups.append([term])
            length = 2 + len(term)
    return ["(" + " OR ".join(group) + ")" for group in groups]


def build_search_queries(
    authors: Sequence[str],
    protected_handles: Sequence[str],
    protected_names: Sequence[str],
    max_len: int = 512,
) -> list[str]:
    """``(from:a OR from:b) (to:p OR @p OR "Name")`` split so that each query fits."""
    author_terms = [f"from:{h}" for h in authors]
    target_terms = [t for h in protected_handles for t in (f"to:{h}", f"@{h}")]
    target_terms += [
        f'"{n}"' for n in (name.replace('"', " ").strip() for name in protected_names) if n
    ]
    if not author_terms or not target_terms:
        return []
    shortest_author_group = 2 + min(len(t) for t in author_terms)
    queries = []
    for target_group in _pack_group(target_terms, max_len - 1 - shortest_author_group):
        for author_group in _pack_group(author_terms, max_len - 1 - len(target_group)):
            queries.append(f"{author_group} {target_group}")
    return queries


# ---------------------------------------------------------------- streams and cursors


@dataclasses.dataclass(frozen=True, slots=True)
class _Stream:
    """One endpoint read each poll: a protected handle's mentions, or one search query."""

    key: str
    label: str
    endpoint: Literal["mentions", "search"]
    minimum: int
    maximum: int
    user_id: str = ""
    handle: str = ""
    query: str = ""


@dataclasses.dataclass(slots=True)
class _Cursor:
    """Where a stream stands. ``since_id`` (or, before any post was seen, ``start_time``)
    marks what is read; while a gap is being read page by page, ``until_id`` is the oldest
    post read so far and ``pending_newest`` the newest, which becomes ``since_id`` once the
    gap is closed. Nothing between two polls is skipped, however small the budget."""

    since_id: str | None = None
    start_time: str | None = None
    until_id: str | None = None
    pending_newest: str | None = None

    @classmethod
    def from_json(cls, value: object) -> _Cursor:
        if not isinstance(value, Mapping):
            return cls()
        fields = {}
        for name in ("since_id", "start_time", "until_id", "pending_newest"):
            item = value.get(name)
            fields[name] = item if isinstance(item, str) and item else None
        return cls(**fields)

    def to_json(self) -> dict[str, str]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @property
    def started(self) -> bool:
        return self.since_id is not None or self.start_time is not None


def _newest(*ids: str | None) -> str | None:
    present = [i for i in ids if i and i.isdigit()]
    return max(present, key=int) if present else None


# X post ids are "snowflakes": milliseconds since X's epoch in the bits above 22.
_SNOWFLAKE_EPOCH_MS = 1288834974657


def _id_time(post_id: str) -> datetime | None:
    if not post_id.isdigit():
        return None
    ms = (int(post_id) >> 22) + _SNOWFLAKE_EPOCH_MS
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _older_than(post_id: str | None, moment: datetime) -> bool:
    when = _id_time(post_id) if post_id else None
    return when is not None and when < moment


def _within_search_window(
    cursor: _Cursor, now: datetime, stream: _Stream, notes: list[str]
) -> _Cursor:
    """Recent search refuses ids and times older than seven days: a cursor left older
    by a long outage restarts at the window's edge (what is older is out of reach)."""
    floor = now - SEARCH_WINDOW
    if _older_than(cursor.until_id, floor):
        notes.append(f"X: {stream.label}: posts older than 7 days could not be read")
        cursor = _Cursor(since_id=_newest(cursor.since_id, cursor.pending_newest))
    if _older_than(cursor.since_id, floor):
        return dataclasses.replace(cursor, since_id=None, start_time=_x_time(floor))
    return cursor


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None


def _x_time(value: datetime) -> str:
    return utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass(slots=True)
class _Page:
    tweets: list[dict[str, Any]]
    users: dict[str, dict[str, Any]]
    newest_id: str | None
    oldest_id: str | None
    more: bool


def _page(body: object, what: str) -> _Page:
    """Check the shape of a timeline/search answer; anything else is garbage."""
    if not isinstance(body, dict):
        raise TransientError(f"x: {what}: answer is not a JSON object")
    data = body.get("data", [])
    includes = body.get("includes", {})
    meta = body.get("meta", {})
    users = includes.get("users", []) if isinstance(includes, dict) else None
    if not (isinstance(data, list) and isinstance(users, list) and isinstance(meta, dict)):
        raise TransientError(f"x: {what}: answer does not have X API v2's shape")
    tweets = [t for t in data if isinstance(t, dict) and isinstance(t.get("id"), str)]
    if len(tweets) != len(data):
        raise TransientError(f"x: {what}: answer holds posts without an id")
    return _Page(
        tweets=tweets,
        users={u["id"]: u for u in users if isinstance(u, dict) and isinstance(u.get("id"), str)},
        newest_id=_str_or_none(meta.get("newest_id")),
        oldest_id=_str_or_none(meta.get("oldest_id")),
        more=bool(meta.get("next_token")),
    )


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclasses.dataclass(slots=True)
class _Run:
    """What one poll has gathered so far."""

    used: int
    allowance: int
    notes: list[str] = dataclasses.field(default_factory=list)
    observations: list[Observation] = dataclasses.field(default_factory=list)
    seen: set[str] = dataclasses.field(default_factory=set)
    failures: list[TransientError] = dataclasses.field(default_factory=list)
    read_any: bool = False


# ---------------------------------------------------------------- the watcher


class XWatcher:
    type_name: ClassVar[str] = "x"
    platform: ClassVar[str] = "x"
    settings_model: ClassVar[type[WatcherSettings]] = XSettings

    def __init__(
        self,
        settings: WatcherSettings,
        targets: Targets,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not isinstance(settings, XSettings):
            raise TypeError("XWatcher needs XSettings")
        self.settings = settings
        self._clock = clock or (lambda: datetime.now(UTC))
        self._scrub = Redactor([settings.bearer_token.get_secret_value()])
        # Also masked in what requests and urllib3 log, by the service's log filter.
        register_secrets(self._scrub.secrets)
        self._protected = _valid_handles(targets.protected_handles)
        self._authors = _valid_handles(targets.restrained_handles | targets.associate_handles)
        self._names = sorted(targets.protected_names)
        self._queries = build_search_queries(
            self._authors, self._protected, self._names, settings.query_max_length
        )
        self._client = tweepy.Client(
            bearer_token=_TOKEN_PLACEHOLDER, return_type=dict, wait_on_rate_limit=False
        )
        self._client.session = _XSession(
            settings.base_url, settings.bearer_token, settings.timeout.total_seconds()
        )
        self._accounts: dict[str, AccountInfo] = {}
        # Posts received this process, by month: a poll that fails after reading some
        # posts loses its state, but X has billed them all the same.
        self._spent: dict[str, int] = {}

    @property
    def name(self) -> str:
        return self.settings.display_name

    def close(self) -> None:
        self._client.session.close()

    # ------------------------------------------------------------ poll

    def poll(self, state: Mapping[str, Any]) -> PollResult:
        now = utc(self._clock())
        month = month_key(now)
        budget = _budget_state(state.get("budget"))
        used = max(budget.get(month, 0), self._spent.get(month, 0))
        run = _Run(
            used=used,
            allowance=poll_allowance(
                self.settings.monthly_read_budget, used, now, self.settings.every
            ),
        )
        user_ids = _str_map(state.get("user_ids"))
        try:
            user_ids.update(self._resolve_protected(user_ids, run.notes))
        except RateLimitedError:
            raise
        except TransientError as exc:
            # Search needs no user ids: it still runs.
            log.warning("watcher %s: %s", self.name, exc)
            run.failures.append(exc)
        streams = self._streams(user_ids)
        cursors = state.get("cursors")
        cursors = cursors if isinstance(cursors, Mapping) else {}
        new_cursors = {s.key: _Cursor.from_json(cursors.get(s.key)).to_json() for s in streams}
        turn = state.get("turn")
        turn = turn % len(streams) if isinstance(turn, int) and turn >= 0 and streams else 0

        # The endpoint whose turn it is reads first; when the budget is too tight for its
        # minimum page, the others wait too, so that a busy endpoint cannot starve one
        # with a larger minimum page (search needs 10, mentions 5).
        for index, stream in enumerate(streams[turn:] + streams[:turn]):
            outcome = self._poll_stream(stream, cursors, new_cursors, run, now, month, user_ids)
            if index == 0 and outcome == "waiting":
                run.notes.append("X: the other endpoints wait for it")
                break
            if index == 0:
                turn += 1
        if run.failures and not run.read_any:
            raise run.failures[0]
        run.notes.extend(f"X: {exc}" for exc in run.failures)
        limit = self.settings.monthly_read_budget
        run.notes.append(
            f"X read budget: {max(0, limit - run.used)} of {limit} posts left this month"
        )
        new_state = {
            "version": STATE_VERSION,
            "user_ids": user_ids,
            "cursors": new_cursors,
            # This month's count, and last month's for the record.
            "budget": {m: budget[m] for m in sorted(m for m in budget if m < month)[-1:]}
            | {month: run.used},
            "turn": turn,
        }
        # Oldest first, as they happened (X pages are newest first).
        run.observations.sort(key=lambda o: int(o.native_id) if o.native_id.isdigit() else 0)
        return PollResult(observations=run.observations, state=new_state, status_notes=run.notes)

    def _poll_stream(
        self,
        stream: _Stream,
        cursors: Mapping[str, Any],
        new_cursors: dict[str, dict[str, str]],
        run: _Run,
        now: datetime,
        month: str,
        user_ids: Mapping[str, str],
    ) -> Literal["read", "waiting", "failed"]:
        cursor = _Cursor.from_json(cursors.get(stream.key))
        try:
            read = self._read(stream, cursor, run.allowance, now, run.notes)
        except RateLimitedError:
            raise
        except TransientError as exc:
            # One failing endpoint must not keep the others' evidence back.
            log.warning("watcher %s: %s", self.name, exc)
            run.failures.append(exc)
            return "failed"
        if read is None:
            return "waiting"
        page, new_cursor = read
        new_cursors[stream.key] = new_cursor.to_json()
        if page is None:
            return "read"
        run.read_any = True
        run.allowance -= len(page.tweets)
        run.used += len(page.tweets)
        self._spent[month] = run.used
        self._remember_authors(page)
        for tweet in page.tweets:
            if tweet["id"] not in run.seen:
                run.seen.add(tweet["id"])
                run.observations.append(self._observation(tweet, page, stream, user_ids))
        return "read"

    def _streams(self, user_ids: Mapping[str, str]) -> list[_Stream]:
        streams = [
            _Stream(
                key=f"mentions:{user_ids[h.lower()]}",
                label=f"mentions of @{h}",
                endpoint="mentions",
                minimum=MENTIONS_MIN,
                maximum=MENTIONS_MAX,
                user_id=user_ids[h.lower()],
                handle=h,
            )
            for h in self._protected
            if h.lower() in user_ids
        ]
        streams += [
            _Stream(
                key=f"search:{q}",
                label=f"search {i}/{len(self._queries)}",
                endpoint="search",
                minimum=SEARCH_MIN,
                maximum=SEARCH_MAX,
                query=q,
            )
            for i, q in enumerate(self._queries, start=1)
        ]
        return streams

    def _read(
        self, stream: _Stream, cursor: _Cursor, allowance: int, now: datetime, notes: list[str]
    ) -> tuple[_Page | None, _Cursor] | None:
        """Read one page of a stream within the allowance; return it (None when nothing
        needed reading) and the new cursor, or None when the budget does not allow X's
        minimum page yet."""
        if stream.endpoint == "search":
            cursor = _within_search_window(cursor, now, stream, notes)
        first = not cursor.started
        wanted = min(allowance, stream.maximum, self.settings.backlog if first else stream.maximum)
        if first and self.settings.backlog < stream.minimum:
            # No history wanted: start reading from now on.
            return None, _Cursor(start_time=_x_time(now))
        if wanted < stream.minimum:
            notes.append(
                f"X: {stream.label} not read this poll (budget allows {max(allowance, 0)} "
                f"posts, X's minimum page is {stream.minimum})"
            )
            return None
        params: dict[str, Any] = {"max_results": wanted}
        if cursor.since_id:
            params["since_id"] = cursor.since_id
        elif cursor.start_time:
            params["start_time"] = self._start_time(stream, cursor.start_time, now)
        if cursor.until_id:
            params["until_id"] = cursor.until_id
        page = self._fetch(stream, params)
        return page, self._advance(cursor, page, first, now)

    @staticmethod
    def _start_time(stream: _Stream, start_time: str, now: datetime) -> str:
        start = _parse_time(start_time) or now
        if stream.endpoint == "search":
            start = max(start, now - SEARCH_WINDOW)
        return _x_time(start)

    @staticmethod
    def _advance(cursor: _Cursor, page: _Page, first: bool, now: datetime) -> _Cursor:
        newest = _newest(page.newest_id, *(t["id"] for t in page.tweets))
        if first:
            # The backlog is deliberately bounded: older history is not paged through.
            if newest:
                return _Cursor(since_id=newest)
            return _Cursor(start_time=_x_time(now))
        pending = _newest(cursor.pending_newest, newest)
        if page.more and page.tweets:
            oldest = min((t["id"] for t in page.tweets if t["id"].isdigit()), key=int, default=None)
            return dataclasses.replace(
                cursor, until_id=page.oldest_id or oldest, pending_newest=pending
            )
        if pending:
            return _Cursor(since_id=_newest(cursor.since_id, pending))
        return _Cursor(since_id=cursor.since_id, start_time=cursor.start_time)

    def _fetch(self, stream: _Stream, params: dict[str, Any]) -> _Page:
        fields = {
            "expansions": EXPANSIONS,
            "tweet_fields": TWEET_FIELDS,
            "user_fields": USER_FIELDS,
        }
        with self._errors(stream.label):
            if stream.endpoint == "mentions":
                body = self._client.get_users_mentions(stream.user_id, **fields, **params)
            else:
                body = self._client.search_recent_tweets(stream.query, **fields, **params)
        return _page(body, stream.label)

    def _resolve_protected(self, known: Mapping[str, str], notes: list[str]) -> dict[str, str]:
        """User ids of protected handles not yet resolved (kept in state afterwards)."""
        missing = [h for h in self._protected if h.lower() not in known]
        found: dict[str, str] = {}
        for start in range(0, len(missing), 100):
            chunk = missing[start : start + 100]
            with self._errors("user lookup"):
                body = self._client.get_users(usernames=chunk, user_fields=USER_FIELDS)
            if not isinstance(body, dict):
                raise TransientError("x: user lookup: answer is not a JSON object")
            for user in _dicts(body.get("data")):
                if isinstance(user.get("username"), str) and isinstance(user.get("id"), str):
                    found[user["username"].lower()] = user["id"]
                    self._remember_user(user)
        for handle in missing:
            if handle.lower() not in found:
                note = f"X: protected handle @{handle} not found on X; its mentions are not read"
                log.warning("watcher %s: %s", self.name, note)
                notes.append(note)
        return found

    # ------------------------------------------------------------ observations

    def _observation(
        self, tweet: dict[str, Any], page: _Page, stream: _Stream, user_ids: Mapping[str, str]
    ) -> Observation:
        tweet_id: str = tweet["id"]
        author_id = _str_or_none(tweet.get("author_id"))
        author = page.users.get(author_id or "", {})
        username = _str_or_none(author.get("username"))
        reply_to = _str_or_none(tweet.get("in_reply_to_user_id"))
        kind: ObservationKind
        if stream.endpoint == "mentions":
            kind = "reply" if reply_to == stream.user_id else "mention"
        else:
            kind = "reply" if reply_to else "post"
        related = [u for u in (author, page.users.get(reply_to or "")) if u]
        raw = {"data": tweet, "includes": {"users": _unique_by_id(related)}}
        return Observation(
            platform=self.platform,
            native_id=tweet_id,
            kind=kind,
            raw=json.dumps(raw, ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
            watcher=self.name,
            url=f"https://x.com/{username or 'i/web'}/status/{tweet_id}",
            author_handle=username,
            author_id=author_id,
            author_display_name=_str_or_none(author.get("name")),
            author_created_at=_parse_time(author.get("created_at")),
            addressed_to=self._addressed_to(tweet, page, stream, user_ids),
            text=_text(tweet),
            posted_at=_parse_time(tweet.get("created_at")),
            capture_method=CAPTURE_METHOD,
        )

    @staticmethod
    def _addressed_to(
        tweet: dict[str, Any], page: _Page, stream: _Stream, user_ids: Mapping[str, str]
    ) -> tuple[str, ...]:
        handles: list[str] = [stream.handle] if stream.handle else []
        reply_to = _str_or_none(tweet.get("in_reply_to_user_id"))
        if reply_to:
            by_id = {v: k for k, v in user_ids.items()}
            user = page.users.get(reply_to, {})
            name = _str_or_none(user.get("username")) or by_id.get(reply_to)
            if name:
                handles.append(name)
        entities = tweet.get("entities")
        if isinstance(entities, dict):
            for mention in _dicts(entities.get("mentions")):
                if isinstance(mention.get("username"), str):
                    handles.append(mention["username"])
        unique: dict[str, str] = {}
        for handle in handles:
            unique.setdefault(handle.lower(), handle)
        return tuple(unique.values())

    # ------------------------------------------------------------ accounts

    def lookup_account(self, handle: str) -> AccountInfo | None:
        """Account facts (creation date) for a possible look-alike author.

        Answers are cached for the life of the watcher, as are the authors seen in polls.
        A failed lookup raises the usual ``WatcherError`` and is not cached, so that the
        matcher can say the account's age is unknown and a later hit asks again.
        """
        clean = _clean_handle(handle)
        cached = self._accounts.get(clean.lower())
        if cached is not None:
            return cached
        if not _HANDLE.match(clean):
            # Not a possible X username, so no such account (and no request).
            return AccountInfo(handle=clean, status="not_found")
        with self._errors("account lookup"):
            body = self._client.get_user(username=clean, user_fields=USER_FIELDS)
        info = _account_info(clean, body)
        if info is None:
            raise TransientError("x: account lookup: answer does not have X API v2's shape")
        self._accounts[clean.lower()] = info
        return info

    def _remember_authors(self, page: _Page) -> None:
        for user in page.users.values():
            self._remember_user(user)

    def _remember_user(self, user: Mapping[str, Any]) -> None:
        username = _str_or_none(user.get("username"))
        if username:
            self._accounts[username.lower()] = AccountInfo(
                handle=username,
                account_id=_str_or_none(user.get("id")),
                created_at=_parse_time(user.get("created_at")),
            )

    # ------------------------------------------------------------ errors

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Turn tweepy/requests failures into the watcher error hierarchy, one line each,
        never with the token in it."""
        scrub = self._scrub
        try:
            yield
        except tweepy.TooManyRequests as exc:
            detail = scrub.one_line("; ".join(exc.api_messages) or "too many requests", 200)
            retry_after = DEFAULT_RETRY_AFTER
            if exc.reset_time is not None:
                retry_after = max(0.0, exc.reset_time - utc(self._clock()).timestamp())
            raise RateLimitedError(
                f"x: rate limited on {what} (429): {detail}; retrying in {retry_after:.0f}s",
                retry_after=retry_after,
            ) from exc
        except (tweepy.Unauthorized, tweepy.Forbidden) as exc:
            detail = scrub.one_line("; ".join(exc.api_messages) or exc.response.reason or "", 200)
            raise AuthError(
                f"x: bearer token rejected ({exc.response.status_code}): {detail}; "
                "fix X_BEARER_TOKEN"
            ) from exc
        except tweepy.TwitterServerError as exc:
            raise TransientError(
                f"x: server error on {what} ({exc.response.status_code}); will retry"
            ) from exc
        except tweepy.HTTPException as exc:
            detail = scrub.one_line("; ".join(exc.api_messages) or exc.response.reason or "", 200)
            raise TransientError(
                f"x: {what} failed ({exc.response.status_code}): {detail}"
            ) from exc
        except requests.exceptions.JSONDecodeError as exc:
            raise TransientError(f"x: {what}: answer is not JSON") from exc
        except requests.Timeout as exc:
            raise TransientError(
                f"x: {what} timed out after {self.settings.timeout.total_seconds():g}s"
            ) from exc
        except requests.RequestException as exc:
            raise TransientError(
                f"x: cannot reach {self.settings.base_url} for {what} ({type(exc).__name__})"
            ) from exc


# ---------------------------------------------------------------- small helpers


def _clean_handle(handle: str) -> str:
    return handle.strip().removeprefix("@")


def _valid_handles(handles: frozenset[str]) -> list[str]:
    """The handles without ``@``, sorted; one X could never accept is a config error
    (X would reject the whole request it is in)."""
    cleaned = {_clean_handle(h) for h in handles}
    for handle in sorted(cleaned):
        if not _HANDLE.match(handle):
            raise WatcherConfigError(
                f"x: {handle!r} is not an X handle (letters, digits and _, at most 15)"
            )
    return sorted(cleaned, key=str.lower)


def _dicts(value: object) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _str_map(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def _budget_state(value: object) -> dict[str, int]:
    if not isinstance(value, Mapping):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, int) and v >= 0}


def _unique_by_id(users: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[object, dict[str, Any]] = {}
    for user in users:
        seen.setdefault(user.get("id"), user)
    return list(seen.values())


def _text(tweet: Mapping[str, Any]) -> str:
    # Posts over 280 characters carry their full text in note_tweet.
    note = tweet.get("note_tweet")
    if isinstance(note, dict) and isinstance(note.get("text"), str):
        return str(note["text"])
    text = tweet.get("text")
    return text if isinstance(text, str) else ""


def _account_info(handle: str, body: object) -> AccountInfo | None:
    """Read a ``GET /2/users/by/username/:u`` answer: the user, or X's error saying it
    does not exist or is suspended (X answers those with 200 and an ``errors`` list)."""
    if not isinstance(body, dict):
        return None
    user = body.get("data")
    if isinstance(user, dict) and isinstance(user.get("id"), str):
        return AccountInfo(
            handle=_str_or_none(user.get("username")) or handle,
            account_id=user["id"],
            created_at=_parse_time(user.get("created_at")),
        )
    for error in _dicts(body.get("errors")):
        detail = str(error.get("detail", "")) + " " + str(error.get("title", ""))
        if "suspended" in detail.lower():
            return AccountInfo(handle=handle, status="suspended")
        if "not found" in detail.lower() or "could not find" in detail.lower():
            return AccountInfo(handle=handle, status="not_found")
    return None
