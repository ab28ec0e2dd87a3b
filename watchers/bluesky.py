"""Bluesky watcher (``type: bluesky``): the protected account's notifications, the
restrained party's and associates' posts (author feeds on each poll, and in real time
over Jetstream), and with ``network: all`` every post of the whole network that
addresses or names the protected person.

XRPC goes through the ``atproto`` SDK's client, Jetstream through ``websockets``
(``watchers.bluesky_stream``: a background thread whose events the next ``poll()``
returns). Identity is the DID: configured handles are resolved at start and daily, and
a handle change of a watched account is recorded as an ``account`` observation.

Read-only: the client refuses every XRPC procedure except creating and refreshing the
session; nothing is posted, liked, followed, muted, blocked, reported, and
``updateSeen`` is never called.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, ClassVar, Literal

import httpx
from atproto import Client, Request, models
from atproto_client.exceptions import (
    BadRequestError,
    LoginRequiredError,
    ModelError,
    NetworkError,
    RateLimitExceededError,
    RequestErrorBase,
    UnauthorizedError,
)
from atproto_client.models.utils import get_or_create
from atproto_core.exceptions import AtProtocolError
from pydantic import Field, SecretStr, field_validator, model_validator

from watchers.base import (
    AccountInfo,
    AuthError,
    Duration,
    Observation,
    PollResult,
    RateLimitedError,
    RecheckItem,
    RecheckResult,
    Targets,
    TransientError,
    WatcherConfigError,
    WatcherError,
    WatcherSettings,
)
from watchers.bluesky_events import EventSink
from watchers.bluesky_recheck import recheck_posts
from watchers.bluesky_records import Profile, parse_time, post_observation, profile_from_view
from watchers.bluesky_state import BlueskyState
from watchers.bluesky_stream import (
    MAX_WANTED_DIDS,
    REWIND_US,
    JetstreamReader,
    datetime_to_us,
)
from watchers.toolkit.redact import Redactor

log = logging.getLogger(__name__)

SESSION_PROCEDURES = frozenset(
    {"com.atproto.server.createSession", "com.atproto.server.refreshSession"}
)
NOTIFICATION_REASONS = frozenset({"reply", "mention", "quote"})
RESOLVE_EVERY = timedelta(days=1)
PROFILES_PER_CALL = 25
MAX_PAGES = 10
PAGE_SIZE = 50
DEFAULT_RETRY_AFTER = 300.0
CAPTURE_METHODS = {
    "notification": "Bluesky notification (atproto XRPC app.bsky.notification.listNotifications)",
    "author feed": "Bluesky author feed (atproto XRPC app.bsky.feed.getAuthorFeed)",
    "Jetstream": "Bluesky Jetstream (real-time commit event)",
    "re-check": "Bluesky re-check (atproto XRPC app.bsky.feed.getPosts)",
}


class BlueskySettings(WatcherSettings):
    type: Literal["bluesky"]
    every: Duration = Field(default=timedelta(minutes=1))
    # The protected person's account, for its notifications; without it only public
    # data is read.
    identifier: str | None = None
    app_password: SecretStr | None = None
    service_url: str = "https://bsky.social"
    appview_url: str = "https://public.api.bsky.app"
    jetstream_url: str = "wss://jetstream2.us-east.bsky.network/subscribe"
    realtime: bool = True
    network: Literal["accounts", "all"] = "accounts"
    # At most this many existing items per source on the very first poll; 0 = from now on.
    backlog: int = Field(default=20, ge=0, le=100)
    timeout: Duration = Field(default=timedelta(seconds=20))
    # How far back Jetstream can replay; an older cursor is recorded as a coverage gap.
    replay_window: Duration = Field(default=timedelta(hours=24))
    # The first poll waits this long at most for Jetstream to replay up to now.
    catchup: Duration = Field(default=timedelta(seconds=5))

    @field_validator("service_url", "appview_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("jetstream_url")
    @classmethod
    def _ws_url(cls, value: str) -> str:
        if not value.startswith(("ws://", "wss://")):
            raise ValueError("must start with ws:// or wss://")
        return value

    @model_validator(mode="after")
    def _credentials_together(self) -> BlueskySettings:
        if (self.identifier is None) != (self.app_password is None):
            raise ValueError(
                "identifier and app_password go together (an app password from "
                "Settings → Privacy and security → App passwords); set both or neither"
            )
        return self

    def secret_fields(self) -> frozenset[str]:
        return frozenset({"app_password"})


class ReadOnlyViolation(WatcherError):
    """Something tried a write through the XRPC client; nocontact never writes."""


class _ReadOnlyClient(Client):  # type: ignore[misc]
    """The SDK client, refusing every procedure but session creation and refresh."""

    def invoke_procedure(self, nsid: str, *args: Any, **kwargs: Any) -> Any:
        if nsid not in SESSION_PROCEDURES:
            raise ReadOnlyViolation(f"bluesky: refused {nsid}; nocontact is read-only")
        return super().invoke_procedure(nsid, *args, **kwargs)


def _client(base_url: str, timeout: timedelta) -> _ReadOnlyClient:
    request = Request(timeout=httpx.Timeout(timeout.total_seconds()))
    return _ReadOnlyClient(base_url=base_url, request=request)


class BlueskyWatcher:
    type_name: ClassVar[str] = "bluesky"
    platform: ClassVar[str] = "bluesky"
    settings_model: ClassVar[type[WatcherSettings]] = BlueskySettings

    def __init__(
        self,
        settings: WatcherSettings,
        targets: Targets,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not isinstance(settings, BlueskySettings):
            raise TypeError("BlueskyWatcher needs BlueskySettings")
        self.settings = settings
        self._clock = clock or (lambda: datetime.now(UTC))
        self.targets = targets
        self._public = _client(settings.appview_url, settings.timeout)
        self._account = _client(settings.service_url, settings.timeout)
        self._logged_in = False
        self._resolved_this_run = False
        self._profiles: dict[str, Profile] = {}
        # DIDs whose full profile (with createdAt) was asked for: once per author.
        self._asked: set[str] = set()
        self._dids: dict[str, str] = {}  # configured handle (lower case) → DID
        self._reader: JetstreamReader | None = None
        # Set by the running service (Wakeable): a stream event asks for an early poll
        # (at most one per WAKE_EVERY seconds, see bluesky_stream).
        self._wake: Callable[[], None] | None = None
        secret = settings.app_password.get_secret_value() if settings.app_password else ""
        self._scrub = Redactor([secret])

    @property
    def name(self) -> str:
        return self.settings.display_name

    def set_wakeup(self, wake: Callable[[], None]) -> None:
        self._wake = wake

    def close(self) -> None:
        if self._reader is not None:
            self._reader.stop()
            self._reader = None
        for client in (self._public, self._account):
            client.request.close()

    # ------------------------------------------------------------ poll

    def poll(self, state: Mapping[str, Any]) -> PollResult:
        now = self._clock()
        st = BlueskyState.from_json(state)
        notes: list[str] = []
        self._resolve_identities(st, now)
        notes.extend(st.identity_notes)
        sink = EventSink(self, st, notes)
        sources = [partial(self._author_feed, did, st, sink) for did in sorted(sink.wanted)]
        if self.settings.identifier is not None:
            sources.insert(0, partial(self._notifications, st, sink))
        self._read_sources(sources, notes)
        if self.settings.realtime:
            self._stream(st, sink)
        try:
            observations = sink.observations()
        except WatcherError:
            sink.give_back(self._reader)
            raise
        return PollResult(observations, st.to_json(), notes, gone=sink.gone)

    @staticmethod
    def _read_sources(sources: Sequence[Callable[[], None]], notes: list[str]) -> None:
        """Read every XRPC source; one failing source is a status line and the others
        are kept, but when all fail the poll fails (the stream's events stay buffered)."""
        failures: list[TransientError] = []
        for read in sources:
            try:
                read()
            except TransientError as exc:
                failures.append(exc)
                notes.append(str(exc))
        if failures and len(failures) == len(sources):
            raise failures[0]

    # ------------------------------------------------------------ identities

    def _resolve_identities(self, st: BlueskyState, now: datetime) -> None:
        """Configured handles → DIDs, at the first poll of a process and then daily. A
        handle that stops resolving (renamed) keeps the DID it had: the person is the DID."""
        self._dids = dict(st.dids)
        due = st.resolved_at is None or now - st.resolved_at >= RESOLVE_EVERY
        if self._resolved_this_run and not due:
            return
        t = self.targets
        notes = st.identity_notes = []
        for handle in sorted(t.protected_handles | t.restrained_handles | t.associate_handles):
            key = handle.strip().removeprefix("@").lower()
            if key.startswith("did:"):
                self._dids[key] = key
                continue
            did = self._resolve(key)
            known = st.dids.get(key)
            if did is None:
                if known is None:
                    notes.append(f"Bluesky: handle {key} does not resolve to an account")
                continue
            if known is not None and did != known:
                notes.append(
                    f"Bluesky: handle {key} now belongs to {did}; still following {known}, "
                    "the account it belonged to (update the config if that is wrong)"
                )
                continue
            self._dids[key] = did
        st.dids = dict(self._dids)
        st.resolved_at = now
        self._resolved_this_run = True

    def _resolve(self, handle: str) -> str | None:
        params = models.ComAtprotoIdentityResolveHandle.Params(handle=handle)
        try:
            with self._errors("resolving a handle"):
                body = self._public.invoke_query(
                    "com.atproto.identity.resolveHandle", params=params
                ).content
        except _NotFound:
            return None
        did = body.get("did") if isinstance(body, dict) else None
        if not isinstance(did, str) or not did.startswith("did:"):
            raise TransientError("bluesky: resolveHandle answer has no DID")
        return did

    def role_dids(self, handles: frozenset[str]) -> frozenset[str]:
        keys = {h.strip().removeprefix("@").lower() for h in handles}
        return frozenset(self._dids[k] for k in keys if k in self._dids)

    # ------------------------------------------------------------ XRPC reads

    def _login(self) -> None:
        if self._logged_in or self.settings.app_password is None:
            return
        with self._errors("login", account=True):
            self._account.login(
                self.settings.identifier,
                self.settings.app_password.get_secret_value(),
                fetch_bsky_profile=False,
            )
        self._logged_in = True

    def _notifications(self, st: BlueskyState, sink: EventSink) -> None:
        self._login()

        def page(limit: int, cursor: str | None) -> dict[str, Any]:
            params = models.AppBskyNotificationListNotifications.Params(
                limit=limit, cursor=cursor, reasons=sorted(NOTIFICATION_REASONS)
            )
            return self._query(
                self._account,
                "app.bsky.notification.listNotifications",
                params,
                models.AppBskyNotificationListNotifications.Response,
                account=True,
            )

        items, st.notifications_newest = self._new_items(
            page, "notifications", st.notifications_newest, _indexed_at, sink.notes
        )
        for item in items:
            if item.get("reason") in NOTIFICATION_REASONS:
                self._remember(item.get("author"))
                sink.post(item.get("uri"), item.get("cid"), item.get("record"), "notification")

    def _author_feed(self, did: str, st: BlueskyState, sink: EventSink) -> None:
        def page(limit: int, cursor: str | None) -> dict[str, Any]:
            params = models.AppBskyFeedGetAuthorFeed.Params(
                actor=did, limit=limit, cursor=cursor, filter="posts_with_replies"
            )
            return self._query(
                self._public,
                "app.bsky.feed.getAuthorFeed",
                params,
                models.AppBskyFeedGetAuthorFeed.Response,
            )

        items, st.feeds[did] = self._new_items(
            page, "feed", st.feeds.get(did), _feed_time, sink.notes
        )
        for item in items:
            post = item.get("post", {})
            author = post.get("author", {})
            # Reposts and pins show other authors' posts, or old ones.
            if item.get("reason") is None and author.get("did") == did:
                self._remember(author)
                sink.post(post.get("uri"), post.get("cid"), post.get("record"), "author feed")

    def _new_items(
        self,
        page: Callable[[int, str | None], dict[str, Any]],
        key: str,
        known: datetime | None,
        when: Callable[[Mapping[str, Any]], datetime],
        notes: list[str],
    ) -> tuple[list[dict[str, Any]], datetime]:
        """Items not older than ``known`` (newest first), page by page; on the very first
        poll, at most ``backlog`` of them. Returns them and the new ``known``."""
        if known is None and self.settings.backlog == 0:
            return [], self._clock()
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        pages = 1 if known is None else MAX_PAGES
        for _page in range(pages):
            body = page(self.settings.backlog if known is None else PAGE_SIZE, cursor)
            items = [i for i in body.get(key, []) if isinstance(i, dict)]
            # Equal times are read again (the store keeps them once): none is skipped.
            fresh = [i for i in items if known is None or when(i) >= known]
            found += fresh
            cursor = body.get("cursor")
            if len(fresh) < len(items) or not cursor or not items:
                break
        else:
            if known is not None:
                notes.append(
                    f"Bluesky: more than {pages * PAGE_SIZE} new {key} items since the last "
                    "poll; older ones were not read (poll more often)"
                )
        newest = max((when(i) for i in found), default=None)
        return found, max(filter(None, (known, newest)), default=self._clock())

    def fetch_profiles(self, dids: list[str]) -> None:
        """Profiles (handle, display name, ``createdAt``) of authors not seen yet: each
        new author is asked about once for the life of the watcher."""
        missing = [d for d in dict.fromkeys(dids) if d not in self._asked]
        for start in range(0, len(missing), PROFILES_PER_CALL):
            chunk = missing[start : start + PROFILES_PER_CALL]
            params = models.AppBskyActorGetProfiles.Params(actors=chunk)
            body = self._query(
                self._public,
                "app.bsky.actor.getProfiles",
                params,
                models.AppBskyActorGetProfiles.Response,
            )
            for view in body.get("profiles", []):
                self._remember(view)
            self._asked.update(chunk)
            for did in chunk:
                # Unknown to the AppView (deleted, taken down): remember that too.
                if did.startswith("did:"):
                    self._profiles.setdefault(did, Profile(did=did))

    def profile(self, did: str) -> Profile:
        return self._profiles.get(did) or Profile(did=did)

    def set_handle(self, did: str, handle: str | None) -> None:
        known = self.profile(did)
        self._profiles[did] = Profile(did, handle, known.display_name, known.created_at)

    def _remember(self, view: object) -> None:
        if isinstance(view, dict):
            profile = profile_from_view(view)
            if profile is not None:
                known = self._profiles.get(profile.did)
                if known is not None and profile.created_at is None:
                    profile = Profile(
                        profile.did, profile.handle, profile.display_name, known.created_at
                    )
                self._profiles[profile.did] = profile

    def make_post(
        self, uri: str, cid: str | None, record: Mapping[str, Any], via: str
    ) -> Observation | None:
        did = uri.removeprefix("at://").split("/", 1)[0]
        addressees = {did: handle for handle, did in self._dids.items()}
        return post_observation(
            uri, cid, record, self.profile(did), addressees, self.name, CAPTURE_METHODS[via]
        )

    def _query(
        self,
        client: Client,
        nsid: str,
        params: Any,
        shape: type[Any],
        *,
        account: bool = False,
    ) -> dict[str, Any]:
        with self._errors(nsid, account=account):
            body = client.invoke_query(nsid, params=params).content
            get_or_create(body, shape, strict=True)
        if not isinstance(body, dict):
            raise TransientError(f"bluesky: {nsid}: answer is not a JSON object")
        return body

    # ------------------------------------------------------------ Jetstream

    def _stream(self, st: BlueskyState, sink: EventSink) -> None:
        dids = frozenset() if self.settings.network == "all" else sink.wanted
        reader = self._reader
        if self.settings.network == "accounts" and not dids:
            # No wantedDids would mean the whole network: read nothing instead.
            sink.notes.append("Bluesky: no watched account resolved; Jetstream not started")
            return
        if len(dids) > MAX_WANTED_DIDS:
            raise WatcherConfigError(
                f"bluesky: {len(dids)} watched accounts exceed Jetstream's {MAX_WANTED_DIDS}; "
                "use network: all"
            )
        if reader is not None and (not reader.running or reader.dids != dids):
            reader.stop()
            reader = None
        if reader is None:
            reader = JetstreamReader(
                self.settings.jetstream_url,
                dids=dids,
                cursor_us=st.cursor_us,
                replay_window=self.settings.replay_window,
                open_timeout=self.settings.timeout.total_seconds(),
                clock=self._clock,
                on_event=self._wake,
            )
            reader.start()
            self._reader = reader
            if not reader.wait_caught_up(0.5, self.settings.catchup.total_seconds()):
                sink.notes.append("Bluesky: Jetstream had not caught up when this poll ended")
        events, gaps = reader.drain()
        sink.stream(events, gaps)
        # A live stream has delivered everything up to about now, even when nothing of
        # interest happened: the cursor moves on, so a quiet day is not taken for a gap.
        now_us = datetime_to_us(self._clock())
        if reader.caught_up(now_us):
            live = now_us - REWIND_US
            if st.cursor_us is None or live > st.cursor_us:
                st.cursor_us = live
        if reader.last_error:
            sink.notes.append(f"Bluesky: Jetstream: {reader.last_error}")

    def recheck(self, items: Sequence[RecheckItem]) -> list[RecheckResult]:
        """Read captured posts again (watchers.bluesky_recheck)."""
        return recheck_posts(self._get_posts, self._rewritten, items)

    def _get_posts(self, uris: list[str]) -> list[dict[str, Any]]:
        params = models.AppBskyFeedGetPosts.Params(uris=uris)
        shape = models.AppBskyFeedGetPosts.Response
        posts = self._query(self._public, "app.bsky.feed.getPosts", params, shape).get("posts")
        return [p for p in posts if isinstance(p, dict)] if isinstance(posts, list) else []

    def _rewritten(self, uri: str, cid: str | None, record: Any) -> Observation | None:
        return self.make_post(uri, cid, record, "re-check")

    # ------------------------------------------------------------ accounts

    def lookup_account(self, handle: str) -> AccountInfo | None:
        """Account facts for a possible look-alike author, and the DID behind a configured
        handle (the matcher recognises a renamed account by it)."""
        key = handle.strip().removeprefix("@").lower()
        did = self._dids.get(key) or (key if key.startswith("did:") else None)
        if did is not None and did not in self._profiles:
            # A configured account: its DID is what matters, not its age.
            return AccountInfo(handle=key, account_id=did)
        if did is None:
            did = next((p.did for p in self._profiles.values() if p.handle == key), None)
        if did is None or did not in self._profiles:
            self.fetch_profiles([did or key])
            did = did or next((p.did for p in self._profiles.values() if p.handle == key), None)
        if did is None:
            return AccountInfo(handle=key, status="not_found")
        profile = self.profile(did)
        return AccountInfo(
            handle=profile.handle or key, account_id=did, created_at=profile.created_at
        )

    # ------------------------------------------------------------ errors

    @contextmanager
    def _errors(self, what: str, *, account: bool = False) -> Iterator[None]:
        """atproto/httpx failures → the watcher error hierarchy, one line, no secret."""
        try:
            yield
        except ReadOnlyViolation:
            raise
        except RateLimitExceededError as exc:
            retry = exc.retry_after
            if retry is None and exc.reset_at is not None:
                retry = max(0.0, (exc.reset_at - self._clock()).total_seconds())
            retry = DEFAULT_RETRY_AFTER if retry is None else retry
            raise RateLimitedError(
                f"bluesky: rate limited on {what} (429); retrying in {retry:.0f}s",
                retry_after=retry,
            ) from exc
        except (UnauthorizedError, LoginRequiredError) as exc:
            if account:
                raise AuthError(
                    f"bluesky: {self.settings.identifier}: app password rejected "
                    f"({_detail(exc, self._scrub)}); fix BSKY_APP_PASSWORD"
                ) from exc
            raise TransientError(f"bluesky: {what} refused ({_detail(exc, self._scrub)})") from exc
        except BadRequestError as exc:
            if what == "resolving a handle":
                raise _NotFound from exc
            raise TransientError(f"bluesky: {what} failed ({_detail(exc, self._scrub)})") from exc
        except NetworkError as exc:
            raise TransientError(
                f"bluesky: cannot reach the server for {what} ({_detail(exc, self._scrub)})"
            ) from exc
        except ModelError as exc:
            raise TransientError(
                f"bluesky: {what}: answer does not have the lexicon's shape"
            ) from exc
        except (RequestErrorBase, AtProtocolError, ValueError) as exc:
            raise TransientError(f"bluesky: {what} failed ({_detail(exc, self._scrub)})") from exc


class _NotFound(Exception):
    """resolveHandle said the handle does not exist."""


def _detail(exc: BaseException, scrub: Redactor) -> str:
    response = getattr(exc, "response", None)
    if response is not None:
        content = getattr(response, "content", None)
        error = getattr(content, "error", None)
        message = getattr(content, "message", None)
        text = ": ".join(str(p) for p in (response.status_code, error, message) if p)
        return scrub.one_line(text, 160)
    cause = exc.__cause__ or exc.__context__
    return type(cause or exc).__name__


def _indexed_at(item: Mapping[str, Any]) -> datetime:
    return parse_time(item.get("indexedAt")) or datetime.min.replace(tzinfo=UTC)


def _feed_time(item: Mapping[str, Any]) -> datetime:
    """When a feed item appeared: a repost's own time, else its post's."""
    reason, post = item.get("reason"), item.get("post")
    if isinstance(reason, dict) and reason.get("indexedAt"):
        return _indexed_at(reason)
    return _indexed_at(post if isinstance(post, dict) else {})
