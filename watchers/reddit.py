"""Reddit through praw: the protected person's inbox, the restrained party's and their
associates' newest comments and posts, and (optionally) posts naming the protected person.

Everything here is a read. praw is used as Reddit's authenticated transport (OAuth
script flow, token refresh, rate-limit headers, retries, error classes), through
``Reddit.request`` rather than praw's model objects: the models rewrite the data they
wrap (``author`` becomes an object, ``replies`` a forest), while evidence must keep each
thing exactly as Reddit sent it. Paging is done here, so that it can stop at the cursor.

A transport-level guard (``_ReadOnlyRequestor``) refuses every request but GETs and the
OAuth token POST, so no code path, ours or praw's, can mark, reply, vote or send.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import logging
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import praw
import praw.exceptions
import prawcore
import prawcore.const
import requests
from pydantic import Field, SecretStr, field_validator, model_validator

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
)
from watchers.toolkit.redact import Redactor, basic_credentials, register_secrets

log = logging.getLogger(__name__)

# Evidence links point at the public site, whatever endpoint the API was read through.
PUBLIC_SITE = "https://www.reddit.com"
PAGE_SIZE = 100  # Reddit's largest page
# After the first poll a listing is read up to the cursor, but never past what Reddit
# itself keeps in a listing.
MAX_LISTING = 1000
INFO_BATCH = 100  # /api/info takes at most 100 fullnames
PARENT_CACHE_MAX = 10_000
DELETED = "[deleted]"

_USERNAME = re.compile(r"^[A-Za-z0-9_-]{3,20}$")
_SUBREDDIT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]{1,20}$")
# u/name or /u/name as Reddit links it (and notifies the user named).
_USER_TAG = re.compile(r"(?<![\w/])/?u/([A-Za-z0-9_-]{3,20})\b")

# Inbox listings. /message/inbox is flat (a reply in an old private-message thread is
# its own item there, unlike /message/messages, which nests replies under the thread),
# and it holds comment replies, post replies and private messages. Mentions are read
# from their own listing as well, because accounts can keep them out of the inbox.
_INBOX_LISTINGS = (("inbox", "message/inbox/"), ("mentions", "message/mentions/"))


class RedditSettings(WatcherSettings):
    type: Literal["reddit"]
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    # The protected person's account, for the inbox. Without it only public listings
    # (the restrained party's accounts, search) are read, with an app-only token.
    username: str | None = None
    password: SecretStr | None = None
    user_agent: str = Field(min_length=7)
    oauth_url: str = "https://oauth.reddit.com"
    reddit_url: str = "https://www.reddit.com"
    search: bool = False
    subreddits: list[str] = Field(default_factory=list)
    backlog: int = Field(default=100, ge=1, le=MAX_LISTING)
    timeout: Duration = Field(default=timedelta(seconds=20))

    def secret_fields(self) -> frozenset[str]:
        return frozenset({"client_secret", "password"})

    @field_validator("username", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        # An unset ${REDDIT_USERNAME} may arrive as "": that means "no inbox".
        if isinstance(value, str):
            value = value.strip().removeprefix("/").removeprefix("u/")
            return value or None
        return value

    @field_validator("password", mode="before")
    @classmethod
    def _blank_password_is_none(cls, value: object) -> object:
        if isinstance(value, str) and not value:
            return None
        return value

    @field_validator("username")
    @classmethod
    def _valid_username(cls, value: str | None) -> str | None:
        if value is not None and not _USERNAME.match(value):
            raise ValueError("not a Reddit username (3-20 letters, digits, '_' or '-')")
        return value

    @field_validator("subreddits")
    @classmethod
    def _valid_subreddits(cls, value: list[str]) -> list[str]:
        names = [name.strip().removeprefix("/").removeprefix("r/") for name in value]
        bad = [name for name in names if not _SUBREDDIT.match(name)]
        if bad:
            raise ValueError(f"not subreddit names: {', '.join(bad)}")
        return names

    @field_validator("oauth_url", "reddit_url")
    @classmethod
    def _valid_endpoint(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("expected an http(s) URL like https://oauth.reddit.com")
        # Credentials travel to these endpoints: plain HTTP only to this machine.
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise ValueError("use https (plain http is allowed only for 127.0.0.1/localhost)")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _login_pair(self) -> RedditSettings:
        if (self.username is None) != (self.password is None):
            raise ValueError("set both username and password (for the inbox), or neither")
        return self


def _secrets(settings: RedditSettings) -> list[str]:
    """The app secret and the password, also as the Basic credentials of the token
    request (client id : client secret)."""
    secret = settings.client_secret.get_secret_value()
    found = [secret, basic_credentials(settings.client_id, secret)]
    if settings.password is not None:
        found.append(settings.password.get_secret_value())
    return found


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ReadOnlyViolation(WatcherError):
    """Something tried to send a request that could change state on Reddit."""


@dataclasses.dataclass(slots=True)
class _Budget:
    """Reddit's rate-limit headers as last seen, so that a poll with no requests left
    fails fast with a retry time instead of sleeping inside prawcore for minutes."""

    remaining: float | None = None
    reset_at: float | None = None  # time.monotonic() when the window resets

    def seconds_to_wait(self) -> float:
        if self.remaining is None or self.reset_at is None or self.remaining > 0:
            return 0.0
        return max(0.0, self.reset_at - time.monotonic())

    def update(self, headers: Mapping[str, str]) -> None:
        remaining, reset = headers.get("x-ratelimit-remaining"), headers.get("x-ratelimit-reset")
        if remaining is None or reset is None:
            return
        try:
            self.remaining = float(remaining)
            self.reset_at = time.monotonic() + float(reset)
        except ValueError:
            return


class _ReadOnlyRequestor(prawcore.Requestor):
    """prawcore's HTTP layer, narrowed to reads and given our timeout.

    praw 8 does not hand its ``timeout`` setting to prawcore (every API call uses
    prawcore's 16 s default), so the timeout is enforced here.
    """

    def __init__(self, *, budget: _Budget, timeout: float, **kwargs: Any) -> None:
        super().__init__(timeout=timeout, **kwargs)
        self._budget = budget

    def request(self, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        method, url = _method_and_url(args, kwargs)
        token_url = self.reddit_url + prawcore.const.ACCESS_TOKEN_PATH
        if method != "GET" and not (method == "POST" and url == token_url):
            raise ReadOnlyViolation(
                f"reddit: refused {method} {urlsplit(url).path}: nocontact only reads"
            )
        response = super().request(*args, timeout=self.timeout, **kwargs)
        self._budget.update(response.headers)
        return response


def _method_and_url(args: Sequence[Any], kwargs: Mapping[str, Any]) -> tuple[str, str]:
    method = args[0] if args else kwargs.get("method", "")
    url = args[1] if len(args) > 1 else kwargs.get("url", "")
    return str(method).upper(), str(url)


@dataclasses.dataclass(frozen=True, slots=True)
class _Listing:
    key: str  # in watcher state
    path: str  # relative to oauth_url
    params: Mapping[str, str]
    source: Literal["inbox", "user", "search"]


@dataclasses.dataclass(frozen=True, slots=True)
class _Cursor:
    fullname: str
    created_utc: float

    @classmethod
    def load(cls, value: object) -> _Cursor | None:
        if not isinstance(value, Mapping):
            return None
        fullname, created = value.get("fullname"), value.get("created_utc")
        if not isinstance(fullname, str) or not isinstance(created, int | float):
            return None
        return cls(fullname, float(created))

    def dump(self) -> dict[str, Any]:
        return {"fullname": self.fullname, "created_utc": self.created_utc}

    def reached_by(self, thing: Mapping[str, Any]) -> bool:
        # The cursor's own item may have been deleted since: anything older also stops.
        return thing["name"] == self.fullname or _created(thing) < self.created_utc


class RedditWatcher:
    type_name: ClassVar[str] = "reddit"
    platform: ClassVar[str] = "reddit"
    settings_model: ClassVar[type[WatcherSettings]] = RedditSettings

    def __init__(self, settings: RedditSettings, targets: Targets) -> None:
        self.settings = settings
        self.targets = targets
        self._reddit: praw.Reddit | None = None
        self._budget = _Budget()
        self._parent_authors: dict[str, str] = {}
        self._accounts: dict[str, AccountInfo] = {}
        self._scrub = Redactor(_secrets(settings))
        # Also masked in what prawcore and urllib3 log, by the service's log filter.
        register_secrets(self._scrub.secrets)

    @property
    def name(self) -> str:
        return self.settings.display_name

    # -- the Watcher protocol -------------------------------------------------------

    def poll(self, state: Mapping[str, Any]) -> PollResult:
        cursors = state.get("cursors")
        old: Mapping[str, Any] = cursors if isinstance(cursors, Mapping) else {}
        new_cursors: dict[str, Any] = {}
        observations: list[Observation] = []
        notes: list[str] = []
        seen: set[str] = set()
        for listing in self._listings():
            cursor = _Cursor.load(old.get(listing.key))
            try:
                things = self._read_new(listing, cursor)
            except _ListingUnavailable as exc:
                notes.append(str(exc))
                if listing.key in old:
                    new_cursors[listing.key] = old[listing.key]
                continue
            newest = things[0]["data"] if things else None
            if newest is not None:
                new_cursors[listing.key] = _Cursor(newest["name"], _created(newest)).dump()
            elif cursor is not None:
                new_cursors[listing.key] = cursor.dump()
            for obs in self._observe(listing, things):
                if obs.native_id not in seen:
                    seen.add(obs.native_id)
                    observations.append(obs)
        return PollResult(observations, {"cursors": new_cursors}, notes)

    def lookup_account(self, handle: str) -> AccountInfo | None:
        name = handle.strip().removeprefix("/").removeprefix("u/")
        if name == DELETED:
            return AccountInfo(handle=name, status="deleted")
        if not _USERNAME.match(name):
            return AccountInfo(handle=name, status="not_found")
        key = name.casefold()
        if key not in self._accounts:
            self._accounts[key] = self._fetch_account(name)
        return self._accounts[key]

    def close(self) -> None:
        if self._reddit is not None:
            # praw has no close(); its prawcore session holds the HTTP connections.
            core = getattr(self._reddit, "_core", None)
            if isinstance(core, prawcore.Session):
                core.close()
            self._reddit = None

    # -- what to read ---------------------------------------------------------------

    def _listings(self) -> list[_Listing]:
        listings: list[_Listing] = []
        if self.settings.username is not None:
            listings += [
                # mark=false: reading a message listing must not mark anything read.
                _Listing(key, path, {"mark": "false"}, "inbox")
                for key, path in _INBOX_LISTINGS
            ]
        for handle in sorted(self.targets.restrained_handles | self.targets.associate_handles):
            name = handle.removeprefix("u/")
            if not _USERNAME.match(name):
                log.warning("reddit: skipping %r: not a Reddit username", handle)
                continue
            for what in ("comments", "submitted"):
                listings.append(
                    _Listing(
                        f"user/{name.lower()}/{what}",
                        f"user/{name}/{what}/",
                        {"sort": "new"},
                        "user",
                    )
                )
        query = self._search_query()
        if self.settings.search and query:
            where = "+".join(self.settings.subreddits) or "all"
            restrict = "on" if self.settings.subreddits else "off"
            params = {
                "q": query,
                "sort": "new",
                "t": "all",
                "restrict_sr": restrict,
                "type": "link",
            }
            listings.append(
                _Listing(f"search/{where.lower()}", f"r/{where}/search/", params, "search")
            )
        return listings

    def _search_query(self) -> str:
        terms = sorted(self.targets.protected_names | self.targets.protected_handles)
        # Quoted for phrase search; a quote inside a name would end the phrase early.
        cleaned = (term.replace('"', " ").strip() for term in terms)
        quoted = [f'"{term}"' for term in cleaned if term]
        return " OR ".join(quoted)

    # -- reading --------------------------------------------------------------------

    def _read_new(self, listing: _Listing, cursor: _Cursor | None) -> list[dict[str, Any]]:
        """Things newer than ``cursor``, newest first; at most ``backlog`` on a first read."""
        limit = self.settings.backlog if cursor is None else MAX_LISTING
        things: list[dict[str, Any]] = []
        after: str | None = None
        while len(things) < limit:
            params = {**listing.params, "limit": str(min(PAGE_SIZE, limit - len(things)))}
            if after:
                params["after"] = after
            page = self._get_listing(listing, params)
            children = page["children"]
            for child in children:
                if cursor is not None and cursor.reached_by(child["data"]):
                    return things
                things.append(child)
                if len(things) >= limit:
                    return things
            after = page.get("after")
            if not children or not isinstance(after, str) or not after:
                break
        return things

    def _get_listing(self, listing: _Listing, params: dict[str, str]) -> Mapping[str, Any]:
        try:
            body = self._get(listing.path, params, own_account=listing.source == "inbox")
        except _Missing as exc:
            raise _ListingUnavailable(_unavailable_note(listing, exc.status)) from None
        return _listing_data(body, listing.path)

    def _get(self, path: str, params: Mapping[str, str], *, own_account: bool) -> Any:
        wait = self._budget.seconds_to_wait()
        if wait > 1:
            raise RateLimitedError(
                f"reddit: rate limit used up; next request in {wait:.0f}s", retry_after=wait
            )
        with self._translate_errors(path, own_account=own_account):
            return self._client().request(method="GET", path=path, params=dict(params))

    def _client(self) -> praw.Reddit:
        if self._reddit is None:
            s = self.settings
            with self._translate_errors("setup", own_account=True):
                self._reddit = praw.Reddit(
                    client_id=s.client_id,
                    client_secret=s.client_secret.get_secret_value(),
                    username=s.username,
                    password=s.password.get_secret_value() if s.password else None,
                    user_agent=s.user_agent,
                    oauth_url=s.oauth_url,
                    reddit_url=s.reddit_url,
                    check_for_updates=False,
                    check_for_async=False,
                    requestor_class=_ReadOnlyRequestor,
                    requestor_kwargs={
                        "budget": self._budget,
                        "timeout": s.timeout.total_seconds(),
                    },
                )
        return self._reddit

    # -- things → Observations ------------------------------------------------------

    def _observe(self, listing: _Listing, things: list[dict[str, Any]]) -> Iterator[Observation]:
        if listing.source == "user":
            self._resolve_parents(
                [
                    t["data"]["parent_id"]
                    for t in things
                    if isinstance(t["data"].get("parent_id"), str)
                ]
            )
        method = f"Reddit API (praw) GET /{listing.path.rstrip('/')}"
        me = (self.settings.username or "").casefold()
        for thing in things:
            data = thing["data"]
            if listing.source == "inbox" and str(data.get("author", "")).casefold() == me:
                # The protected person's own sent messages: not contact with them.
                continue
            kind, addressed = self._kind_and_addressees(listing, thing)
            yield Observation(
                platform=self.platform,
                native_id=data["name"],
                kind=kind,
                raw=_raw_bytes(thing),
                watcher=self.name,
                url=_public_url(thing),
                author_handle=_opt_str(data.get("author")),
                author_id=_opt_str(data.get("author_fullname")),
                addressed_to=addressed,
                text=_text(thing),
                posted_at=datetime.fromtimestamp(_created(data), UTC),
                capture_method=method,
            )

    def _kind_and_addressees(
        self, listing: _Listing, thing: Mapping[str, Any]
    ) -> tuple[ObservationKind, tuple[str, ...]]:
        data = thing["data"]
        tags = _user_tags(_text(thing))
        if listing.source == "inbox":
            me = self.settings.username or ""
            if thing["kind"] == "t4":
                return "direct_message", _unique((me, *tags))
            if data.get("type") == "username_mention" or listing.key == "mentions":
                return "mention", _unique((me, *tags))
            return "reply", _unique((me, *tags))
        if thing["kind"] == "t1":
            parent = str(data.get("parent_id", ""))
            author = self._parent_authors.get(parent)
            addressed = (author,) if author and author != DELETED else ()
            kind: ObservationKind = "reply" if parent.startswith("t1_") else "comment"
            return kind, _unique((*addressed, *tags))
        return "post", _unique(tags)

    def _resolve_parents(self, fullnames: list[str]) -> None:
        """Learn who wrote what these comments answer: one /api/info call per 100."""
        wanted = sorted({f for f in fullnames if f not in self._parent_authors})
        if len(self._parent_authors) + len(wanted) > PARENT_CACHE_MAX:
            self._parent_authors.clear()
        for start in range(0, len(wanted), INFO_BATCH):
            batch = wanted[start : start + INFO_BATCH]
            try:
                body = self._get("api/info/", {"id": ",".join(batch)}, own_account=False)
            except _Missing:
                continue  # left unresolved (no addressee), asked again next time
            for child in _listing_data(body, "api/info/")["children"]:
                self._parent_authors[child["data"]["name"]] = str(
                    child["data"].get("author") or DELETED
                )
            for fullname in batch:
                # Not returned at all: removed or never visible to us.
                self._parent_authors.setdefault(fullname, DELETED)

    def _fetch_account(self, name: str) -> AccountInfo:
        try:
            body = self._get(f"user/{name}/about/", {}, own_account=False)
        except _Missing:
            # 404 is also what Reddit answers for shadow-banned accounts.
            return AccountInfo(handle=name, status="not_found")
        data = body.get("data") if isinstance(body, Mapping) else None
        if not isinstance(data, Mapping) or body.get("kind") != "t2":
            raise TransientError(f"reddit: unexpected response to GET /user/{name}/about")
        if data.get("is_suspended"):
            return AccountInfo(handle=name, status="suspended")
        created = data.get("created_utc")
        return AccountInfo(
            handle=str(data.get("name") or name),
            status="active",
            account_id=f"t2_{data['id']}" if isinstance(data.get("id"), str) else None,
            created_at=(
                datetime.fromtimestamp(created, UTC) if isinstance(created, int | float) else None
            ),
        )

    # -- errors ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _translate_errors(self, path: str, *, own_account: bool) -> Iterator[None]:
        """prawcore/praw exceptions → the watcher's one-line, secret-free errors."""
        where = f"GET /{path.rstrip('/')}" if path != "setup" else "setup"
        try:
            yield
        except ReadOnlyViolation:
            raise
        except prawcore.OAuthException as exc:
            # The token endpoint answers 200 {"error": "invalid_grant"} to a bad password.
            raise self._auth_error(exc.error) from None
        except prawcore.TooManyRequests as exc:
            retry = _retry_after(exc.response)
            raise RateLimitedError(
                f"reddit: rate limited (429) on {where}; retry in {retry:.0f}s", retry_after=retry
            ) from None
        except prawcore.InsufficientScope:
            raise self._auth_error("the app's token lacks a needed scope") from None
        except prawcore.InvalidToken:
            raise self._auth_error("access token refused (401)") from None
        except prawcore.Forbidden as exc:
            if own_account:
                raise self._auth_error(f"403 on {where}") from None
            raise _Missing(403) from exc
        except prawcore.NotFound as exc:
            raise _Missing(404) from exc
        except prawcore.Redirect as exc:
            # Reddit redirects an unknown subreddit's search to its subreddit search.
            raise _Missing(302) from exc
        except prawcore.ServerError as exc:
            raise TransientError(
                f"reddit: server error {exc.response.status_code} on {where}"
            ) from None
        except prawcore.BadJSON:
            raise TransientError(f"reddit: garbage (not JSON) in answer to {where}") from None
        except prawcore.ResponseException as exc:
            status = exc.response.status_code
            if status in (401, 403) and _is_token_request(exc.response):
                raise self._auth_error(f"token request answered {status}") from None
            raise TransientError(f"reddit: HTTP {status} on {where}") from None
        except prawcore.RequestException as exc:
            reason = type(exc.original_exception).__name__
            raise TransientError(f"reddit: no answer to {where} ({reason})") from None
        except prawcore.InvalidInvocation as exc:
            raise WatcherConfigError(f"reddit: {self._scrub(str(exc))}") from None
        except (prawcore.PrawcoreException, praw.exceptions.PRAWException) as exc:
            raise TransientError(f"reddit: {type(exc).__name__} on {where}") from None

    def _auth_error(self, reason: str) -> AuthError:
        who = f"u/{self.settings.username}" if self.settings.username else "the app"
        # The token endpoint wrote the reason: it could echo what it was sent.
        return AuthError(
            f"reddit: credentials rejected for {who}: {self._scrub(reason)}; "
            "fix REDDIT_* and restart"
        )


class _Missing(Exception):
    """A public resource is gone or hidden (404, 403, redirect). Internal signal:
    callers turn it into a status note or an AccountInfo, it never leaves the module."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _ListingUnavailable(Exception):
    """One listing cannot be read now; the others still are (internal signal)."""


def _unavailable_note(listing: _Listing, status: int) -> str:
    if listing.source == "user":
        user = listing.path.split("/")[1]
        return (
            f"reddit: u/{user}'s {listing.path.split('/')[2]} unavailable (HTTP {status}):"
            " suspended, deleted, shadow-banned or private"
        )
    return f"reddit: /{listing.path.rstrip('/')} unavailable (HTTP {status})"


def _is_token_request(response: requests.Response) -> bool:
    return urlsplit(response.url).path.endswith(prawcore.const.ACCESS_TOKEN_PATH)


def _retry_after(response: requests.Response) -> float:
    for header in ("retry-after", "x-ratelimit-reset"):
        value = response.headers.get(header)
        if value is None:
            continue
        try:
            return max(1.0, float(value))
        except ValueError:
            continue
    return 60.0


def _listing_data(body: Any, path: str) -> Mapping[str, Any]:
    """The ``data`` of a Listing, with every child checked to be a thing we can read."""
    data = body.get("data") if isinstance(body, Mapping) else None
    children = data.get("children") if isinstance(data, Mapping) else None
    if (
        not isinstance(data, Mapping)
        or body.get("kind") != "Listing"
        or not isinstance(children, list)
    ):
        raise TransientError(f"reddit: unexpected response to GET /{path.rstrip('/')}")
    for child in children:
        if not _is_thing(child):
            raise TransientError(f"reddit: malformed item in GET /{path.rstrip('/')}")
    return data


def _is_thing(child: object) -> bool:
    if not isinstance(child, Mapping) or child.get("kind") not in ("t1", "t3", "t4"):
        return False
    data = child.get("data")
    return (
        isinstance(data, Mapping)
        and isinstance(data.get("name"), str)
        and isinstance(data.get("created_utc"), int | float)
    )


def _created(data: Mapping[str, Any]) -> float:
    return float(data["created_utc"])


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _unique(values: Sequence[str]) -> tuple[str, ...]:
    out: dict[str, None] = {}
    for value in values:
        if value and value.casefold() not in {v.casefold() for v in out}:
            out[value] = None
    return tuple(out)


def _user_tags(text: str) -> list[str]:
    return _USER_TAG.findall(text)


def _text(thing: Mapping[str, Any]) -> str:
    data = thing["data"]
    if thing["kind"] == "t3":
        parts = [data.get("title"), data.get("selftext")]
    elif thing["kind"] == "t4":
        parts = [data.get("subject"), data.get("body")]
    else:
        parts = [data.get("body")]
    return "\n\n".join(p for p in parts if isinstance(p, str) and p)


def _public_url(thing: Mapping[str, Any]) -> str:
    data = thing["data"]
    if thing["kind"] == "t4":
        return f"{PUBLIC_SITE}/message/messages/{data.get('id') or data['name'][3:]}"
    link = data.get("permalink") or data.get("context")
    if isinstance(link, str) and link.startswith("/"):
        return PUBLIC_SITE + urlsplit(link).path
    # Older listings carry no permalink: build it from the post and comment ids.
    post = str(data.get("link_id") or "")[3:]
    sub = data.get("subreddit") or "all"
    return f"{PUBLIC_SITE}/r/{sub}/comments/{post}/_/{data.get('id', '')}/"


def _raw_bytes(thing: Mapping[str, Any]) -> bytes:
    # The thing ({"kind", "data"}) as parsed from Reddit's response, keys in Reddit's
    # order, re-serialised compactly: the listing envelope around it is not kept.
    return json.dumps(thing, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
