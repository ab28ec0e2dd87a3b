"""X's data as the X watcher handles it: the monthly read budget's arithmetic, search
queries within X's length limit, per-stream cursors, X's ids and times, and reading
answers (pages, accounts, handles) that come from a server we do not control.
Pure functions and small records, no I/O: ``watchers.x`` drives them."""

from __future__ import annotations

import calendar
import dataclasses
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from watchers.base import AccountInfo, TransientError, WatcherConfigError, utc

# Recent search only reaches seven days back; keep a margin for clock skew.
SEARCH_WINDOW = timedelta(days=7) - timedelta(minutes=5)
HANDLE = re.compile(r"^[A-Za-z0-9_]{1,15}$")


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


def pack_group(terms: Sequence[str], max_len: int) -> list[str]:
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
    for target_group in pack_group(target_terms, max_len - 1 - shortest_author_group):
        for author_group in pack_group(author_terms, max_len - 1 - len(target_group)):
            queries.append(f"{author_group} {target_group}")
    return queries


# ---------------------------------------------------------------- streams and cursors


@dataclasses.dataclass(frozen=True, slots=True)
class Stream:
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
class Cursor:
    """Where a stream stands. ``since_id`` (or, before any post was seen, ``start_time``)
    marks what is read; while a gap is being read page by page, ``until_id`` is the oldest
    post read so far and ``pending_newest`` the newest, which becomes ``since_id`` once the
    gap is closed. Nothing between two polls is skipped, however small the budget."""

    since_id: str | None = None
    start_time: str | None = None
    until_id: str | None = None
    pending_newest: str | None = None

    @classmethod
    def from_json(cls, value: object) -> Cursor:
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


def newest_id(*ids: str | None) -> str | None:
    present = [i for i in ids if i and i.isdigit()]
    return max(present, key=int) if present else None


# X post ids are "snowflakes": milliseconds since X's epoch in the bits above 22.
_SNOWFLAKE_EPOCH_MS = 1288834974657


def id_time(post_id: str) -> datetime | None:
    if not post_id.isdigit():
        return None
    ms = (int(post_id) >> 22) + _SNOWFLAKE_EPOCH_MS
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def older_than(post_id: str | None, moment: datetime) -> bool:
    when = id_time(post_id) if post_id else None
    return when is not None and when < moment


def within_search_window(cursor: Cursor, now: datetime, stream: Stream, notes: list[str]) -> Cursor:
    """Recent search refuses ids and times older than seven days: a cursor left older
    by a long outage restarts at the window's edge (what is older is out of reach)."""
    floor = now - SEARCH_WINDOW
    if older_than(cursor.until_id, floor):
        notes.append(f"X: {stream.label}: posts older than 7 days could not be read")
        cursor = Cursor(since_id=newest_id(cursor.since_id, cursor.pending_newest))
    if older_than(cursor.since_id, floor):
        return dataclasses.replace(cursor, since_id=None, start_time=x_time(floor))
    return cursor


def parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None


def x_time(value: datetime) -> str:
    return utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass(slots=True)
class Page:
    tweets: list[dict[str, Any]]
    users: dict[str, dict[str, Any]]
    newest_id: str | None
    oldest_id: str | None
    more: bool


def read_page(body: object, what: str) -> Page:
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
    return Page(
        tweets=tweets,
        users={u["id"]: u for u in users if isinstance(u, dict) and isinstance(u.get("id"), str)},
        newest_id=str_or_none(meta.get("newest_id")),
        oldest_id=str_or_none(meta.get("oldest_id")),
        more=bool(meta.get("next_token")),
    )


def str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def clean_handle(handle: str) -> str:
    return handle.strip().removeprefix("@")


def valid_handles(handles: frozenset[str]) -> list[str]:
    """The handles without ``@``, sorted; one X could never accept is a config error
    (X would reject the whole request it is in)."""
    cleaned = {clean_handle(h) for h in handles}
    for handle in sorted(cleaned):
        if not HANDLE.match(handle):
            raise WatcherConfigError(
                f"x: {handle!r} is not an X handle (letters, digits and _, at most 15)"
            )
    return sorted(cleaned, key=str.lower)


def dict_items(value: object) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def str_map(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def budget_state(value: object) -> dict[str, int]:
    if not isinstance(value, Mapping):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, int) and v >= 0}


def unique_by_id(users: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[object, dict[str, Any]] = {}
    for user in users:
        seen.setdefault(user.get("id"), user)
    return list(seen.values())


def tweet_text(tweet: Mapping[str, Any]) -> str:
    # Posts over 280 characters carry their full text in note_tweet.
    note = tweet.get("note_tweet")
    if isinstance(note, dict) and isinstance(note.get("text"), str):
        return str(note["text"])
    text = tweet.get("text")
    return text if isinstance(text, str) else ""


def account_info(handle: str, body: object) -> AccountInfo | None:
    """Read a ``GET /2/users/by/username/:u`` answer: the user, or X's error saying it
    does not exist or is suspended (X answers those with 200 and an ``errors`` list)."""
    if not isinstance(body, dict):
        return None
    user = body.get("data")
    if isinstance(user, dict) and isinstance(user.get("id"), str):
        return AccountInfo(
            handle=str_or_none(user.get("username")) or handle,
            account_id=user["id"],
            created_at=parse_time(user.get("created_at")),
        )
    for error in dict_items(body.get("errors")):
        detail = str(error.get("detail", "")) + " " + str(error.get("title", ""))
        if "suspended" in detail.lower():
            return AccountInfo(handle=handle, status="suspended")
        if "not found" in detail.lower() or "could not find" in detail.lower():
            return AccountInfo(handle=handle, status="not_found")
    return None
