"""Mastodon watcher (``type: mastodon``) through Mastodon.py, read-only.

What it reads, with the protected person's access token:

* the protected account's notifications that carry a status (mentions of every
  visibility, a ``direct`` one being a DM; quotes; edits it is told of);
* the statuses (and boosts) of the restrained party's and associates' accounts, named
  in ``handles.mastodon`` as ``user@instance`` and found with ``accounts/lookup``;
* with ``streaming: true``, the user stream (server-sent events): a notification, an
  edit or a watched author's post rings the watcher, which then polls at once
  (``watchers.base.Wakeable``); the regular polls go on, so a broken stream only
  delays, never loses. Mastodon.py reconnects the stream; each reconnection polls.

Each poll reads the newest page of each listing, and older pages down to the last id
seen: new statuses are new evidence, and a status already seen whose ``edited_at``
changed is read again with its edit history (a new version). Evidence: see
``watchers.mastodon_entities.observation``.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from mastodon import Mastodon
from mastodon import errors as mastodon_errors
from pydantic import Field, SecretStr, field_validator

from watchers.base import (
    AccountInfo,
    AuthError,
    Duration,
    Observation,
    PollResult,
    RecheckItem,
    RecheckResult,
    Targets,
    TransientError,
    WatcherConfigError,
    WatcherSettings,
    utc,
)
from watchers.mastodon_client import Doorbell, ReadOnlySession, translated_errors
from watchers.mastodon_entities import (
    PLATFORM,
    Viewer,
    account_info,
    dicts,
    id_key,
    newest,
    observation,
    qualify,
    require_status,
    text_of,
)
from watchers.mastodon_recheck import GONE, StatusRecheck, http_status
from watchers.mastodon_recheck import Gone as RecheckGone

log = logging.getLogger(__name__)

STATE_VERSION = 1
PAGE = 40  # Mastodon's largest page
MAX_PAGES = 5  # per listing and poll; more is reported as a gap
EDITS_KEPT = 1000  # statuses whose last edited_at is remembered
NOTIFICATION_TYPES = ["mention", "quote", "status", "update", "quoted_update"]
STREAM_READ_TIMEOUT = 120.0  # Mastodon sends a heartbeat every few seconds


class MastodonSettings(WatcherSettings):
    type: Literal["mastodon"]
    instance_url: str
    access_token: SecretStr
    streaming: bool = True
    # At most this many existing items per listing on the very first poll; 0 = from now on.
    backlog: int = Field(default=20, ge=0, le=PAGE)
    timeout: Duration = Field(default=timedelta(seconds=20))
    # Also search statuses for the protected person's names (needs full-text search).
    search: bool = False
    # Wait before retrying a stream that could not connect (a dropped one reconnects at once).
    stream_retry: Duration = Field(default=timedelta(seconds=30))

    @field_validator("instance_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or not urlsplit(value).hostname:
            raise ValueError("instance_url must be like https://social.example")
        return value.rstrip("/")

    def secret_fields(self) -> frozenset[str]:
        return frozenset({"access_token"})


@dataclasses.dataclass(slots=True)
class _Run:
    """What one poll gathers."""

    viewer: Viewer
    me: str
    edited: dict[str, str]
    observations: list[Observation] = dataclasses.field(default_factory=list)
    seen: set[str] = dataclasses.field(default_factory=set)
    notes: list[str] = dataclasses.field(default_factory=list)


def _full_handles(handles: frozenset[str]) -> list[str]:
    found = []
    for handle in sorted({h.strip().removeprefix("@") for h in handles}, key=str.casefold):
        user, _, domain = handle.partition("@")
        if not user or not domain or "@" in domain:
            raise WatcherConfigError(
                f"mastodon: handle {handle!r} needs its instance: write it as "
                f"{user or 'name'}@instance.example"
            )
        found.append(handle)
    return found


class MastodonWatcher:
    type_name: ClassVar[str] = "mastodon"
    platform: ClassVar[str] = PLATFORM
    settings_model: ClassVar[type[WatcherSettings]] = MastodonSettings

    def __init__(
        self,
        settings: WatcherSettings,
        targets: Targets,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not isinstance(settings, MastodonSettings):
            raise TypeError("MastodonWatcher needs MastodonSettings")
        self.settings = settings
        self._clock = clock or (lambda: datetime.now(UTC))
        self._protected = {h.casefold() for h in _full_handles(targets.protected_handles)}
        self._authors = _full_handles(targets.restrained_handles | targets.associate_handles)
        self._names = sorted(targets.protected_names, key=str.casefold)
        self._session = ReadOnlySession()
        self._client = Mastodon(
            access_token=settings.access_token.get_secret_value(),
            api_base_url=settings.instance_url,
            request_timeout=settings.timeout.total_seconds(),
            ratelimit_method="throw",
            version_check_mode="none",
            session=self._session,
            user_agent="nocontact (read-only evidence watcher)",
        )
        self._accounts: dict[str, AccountInfo] = {}
        self._domain = urlsplit(settings.instance_url).hostname or ""
        # Filled by the stream thread, emptied by poll (under the lock).
        self._lock = threading.Lock()
        self._wake: Callable[[], None] | None = None
        self._stream: Any = None
        self._stream_up = False
        self._refetch: set[str] = set()
        self._woken = False
        self._last_full: datetime | None = None
        self._recheck: StatusRecheck | None = None
        self._who: tuple[Viewer, str] | None = None  # the protected account, once known

    @property
    def name(self) -> str:
        return self.settings.display_name

    def close(self) -> None:
        self._stop_stream()
        self._session.close()

    def set_wakeup(self, wake: Callable[[], None]) -> None:
        self._wake = wake

    # ------------------------------------------------------------ poll

    def poll(self, state: Mapping[str, Any]) -> PollResult:
        now = utc(self._clock())
        try:
            return self._poll(state, now)
        except AuthError:
            self._stop_stream()  # it would only knock on the same locked door
            raise

    def _poll(self, state: Mapping[str, Any], now: datetime) -> PollResult:
        viewer, me = self._who = self._viewer(state)
        self._domain = viewer.domain
        self._protected.add(me.casefold())
        with self._lock:
            refetch, self._refetch = self._refetch, set()
            light = self._woken and self._last_full is not None
            light = light and now - self._last_full < self.settings.every  # type: ignore[operator]
            self._woken = False
        edited = state.get("edited")
        run = _Run(viewer, me, dict(edited) if isinstance(edited, Mapping) else {})
        listings = state.get("listings")
        old = dict(listings) if isinstance(listings, Mapping) else {}
        new: dict[str, Any] = dict(old)
        new["notifications"] = self._read_notifications(run, old.get("notifications"))
        ids = state.get("account_ids")
        account_ids = dict(ids) if isinstance(ids, Mapping) else {}
        if not light:
            for handle in self._authors:
                key = f"account:{handle.casefold()}"
                cursor = self._read_author(run, handle, account_ids, old.get(key))
                if cursor is not None:
                    new[key] = cursor
            if self.settings.search:
                for name in self._names:
                    key = f"search:{name.casefold()}"
                    new[key] = self._read_search(run, name, old.get(key))
            self._last_full = now
        for status_id in sorted(refetch, key=id_key):
            self._reread(run, status_id)
        self._ensure_stream(run.notes)
        kept = sorted(run.edited, key=id_key)[-EDITS_KEPT:]
        new_state = {
            "version": STATE_VERSION,
            "me": {"id": viewer.account_id, "acct": me},
            "domain": viewer.domain,
            "listings": new,
            "account_ids": account_ids,
            "edited": {k: run.edited[k] for k in kept},
        }
        run.observations.sort(key=lambda o: o.posted_at or now)
        return PollResult(run.observations, new_state, run.notes)

    def _viewer(self, state: Mapping[str, Any]) -> tuple[Viewer, str]:
        """The protected account (whose token this is) and its instance's domain."""
        me, domain = state.get("me"), state.get("domain")
        if (
            isinstance(me, Mapping)
            and isinstance(domain, str)
            and domain
            and isinstance(me.get("id"), str)
            and isinstance(me.get("acct"), str)
        ):
            return Viewer(me["id"], domain), me["acct"]
        with self._errors("instance"):
            domain = self._instance_domain()
        with self._errors("verify credentials"):
            self._client.account_verify_credentials()
            account = self._session.last_json("verify credentials")
        if not isinstance(account, dict) or not text_of(account.get("id")):
            raise TransientError("mastodon: verify credentials: answer is not an Account")
        return Viewer(account["id"], domain), qualify(str(account.get("acct", "")), domain)

    def _instance_domain(self) -> str:
        """The instance's own domain (``LOCAL_DOMAIN``, which may differ from its web
        address): it is the ``@instance`` part of its local accounts."""
        try:
            self._client.instance_v2()
            info = self._session.last_json("instance")
            key = "domain"
        except mastodon_errors.MastodonNotFoundError:
            self._client.instance_v1()
            info = self._session.last_json("instance")
            key = "uri"
        found = info.get(key) if isinstance(info, dict) else None
        return found if isinstance(found, str) and found else self._domain

    # ------------------------------------------------------------ listings

    def _read_notifications(self, run: _Run, cursor: object) -> dict[str, str]:
        def fetch(**params: Any) -> list[dict[str, Any]]:
            with self._errors("notifications"):
                self._client.notifications(types=NOTIFICATION_TYPES, **params)
                return _items(self._session.last_json("notifications"), "notifications")

        fresh, known, new_cursor = self._read_listing(fetch, cursor, run.notes, "notifications")
        for item in fresh + known:
            if isinstance(item.get("status"), dict):
                status = require_status(item["status"], "notifications")
                self._take(run, status, is_new=item in fresh)
        return new_cursor

    def _read_author(
        self, run: _Run, handle: str, account_ids: dict[str, str], cursor: object
    ) -> dict[str, str] | None:
        account_id = account_ids.get(handle.casefold())
        if account_id is None:
            info = self.lookup_account(handle)
            if info is None or info.account_id is None or info.status != "active":
                what = "not found" if info is None else info.status.replace("_", " ")
                run.notes.append(f"Mastodon: {handle} {what}; its statuses are not read")
                return None
            account_id = account_ids[handle.casefold()] = info.account_id

        def fetch(**params: Any) -> list[dict[str, Any]]:
            with self._errors(f"statuses of {handle}"):
                self._client.account_statuses(account_id, **params)
                return _items(self._session.last_json("statuses"), f"statuses of {handle}")

        fresh, known, new_cursor = self._read_listing(fetch, cursor, run.notes, handle)
        for status in fresh + known:
            self._take(run, require_status(status, handle), is_new=status in fresh)
        return new_cursor

    def _read_search(self, run: _Run, name: str, cursor: object) -> dict[str, str]:
        """Statuses naming the protected person, where the instance has full-text search
        (without it, Mastodon only finds statuses the account has interacted with)."""

        def fetch(**params: Any) -> list[dict[str, Any]]:
            with self._errors("search"):
                self._client.search_v2(f'"{name}"', resolve=False, result_type="statuses", **params)
                body = self._session.last_json("search")
            statuses = body.get("statuses") if isinstance(body, dict) else None
            return _items(statuses, "search")

        fresh, known, new_cursor = self._read_listing(fetch, cursor, run.notes, "search")
        for status in fresh + known:
            self._take(run, require_status(status, "search"), is_new=status in fresh)
        return new_cursor

    def _read_listing(
        self,
        fetch: Callable[..., list[dict[str, Any]]],
        cursor: object,
        notes: list[str],
        label: str,
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, str]]:
        """(new items, items already seen that are still in scope, new cursor).

        The cursor is ``{"since": newest id seen, "after": ids at or below this are out
        of scope}``; on the first poll only ``backlog`` items are taken."""
        since, after = _cursor(cursor)
        if since is None:
            wanted = self.settings.backlog
            page = fetch(limit=wanted + 1)
            top = newest(*(i["id"] for i in page)) or "0"
            if wanted == 0 or not page:
                return [], [], {"since": top, "after": top}
            taken = sorted(page, key=lambda i: id_key(i["id"]), reverse=True)
            floor = taken[wanted]["id"] if len(taken) > wanted else "0"
            return taken[:wanted], [], {"since": top, "after": floor}
        items = page = fetch(limit=PAGE)
        pages = 1
        while len(page) == PAGE and id_key(_oldest(page)) > id_key(since):
            if pages == MAX_PAGES:
                notes.append(f"Mastodon: over {PAGE * MAX_PAGES} new in {label}; older skipped")
                break
            page = fetch(limit=PAGE, max_id=_oldest(page))
            items = items + page
            pages += 1
        fresh = [i for i in items if id_key(i["id"]) > id_key(since)]
        known = [i for i in items if id_key(after) < id_key(i["id"]) <= id_key(since)]
        top = newest(since, *(i["id"] for i in items)) or since
        return fresh, known, {"since": top, "after": after}

    def _take(self, run: _Run, status: dict[str, Any], *, is_new: bool) -> None:
        """Keep a status: new ones always, seen ones when their ``edited_at`` changed."""
        shown = status["reblog"] if isinstance(status.get("reblog"), dict) else status
        key = status["id"]
        if key in run.seen:
            return
        edited_at = text_of(shown.get("edited_at"))
        changed = edited_at is not None and run.edited.get(shown["id"]) != edited_at
        if not is_new and not changed:
            return
        run.seen.add(key)
        history = self._history(shown["id"]) if edited_at else None
        if edited_at:
            run.edited[shown["id"]] = edited_at
        run.observations.append(observation(status, run.viewer, run.me, self.name, history))

    def _history(self, status_id: str) -> list[dict[str, Any]]:
        with self._errors("edit history"):
            self._client.status_history(status_id)
            return dicts(self._session.last_json("edit history"))

    def _reread(self, run: _Run, status_id: str) -> None:
        """A status the stream named (new or edited): read it (it may be gone already).
        Taken as new: one already stored adds nothing (the store keeps each version once)."""
        try:
            with self._errors("status"):
                self._client.status(status_id)
                status = require_status(self._session.last_json("status"), "status")
        except TransientError as exc:
            log.info("watcher %s: %s", self.name, exc)
            return
        self._take(run, status, is_new=True)

    # ------------------------------------------------------------ re-check

    def recheck(self, items: Sequence[RecheckItem]) -> list[RecheckResult]:
        """Read captured statuses again by id (watchers.mastodon_recheck)."""
        if self._recheck is None:
            self._recheck = StatusRecheck(
                partial(self._entity, "status", self._client.status),
                partial(self._entity, "account", self._client.account),
                self._edited_version,
                self._clock,
            )
        return self._recheck.run(items)

    def _entity(self, what: str, call: Callable[[str], object], entity_id: str) -> Any:
        try:
            with self._errors(what):
                call(entity_id)
                found = self._session.last_json(what)
        except TransientError as exc:
            if http_status(exc) in GONE:
                raise RecheckGone from exc
            raise
        if not isinstance(found, dict) or not text_of(found.get("id")):
            raise TransientError(f"mastodon: {what}: answer has no id")
        return found

    def _edited_version(self, status: dict[str, Any]) -> Observation:
        if self._who is None:  # for kind and recipients, read as polling reads them
            self._who = self._viewer({})
        viewer, me = self._who
        shown = status["reblog"] if isinstance(status.get("reblog"), dict) else status
        return observation(status, viewer, me, self.name, self._history(shown["id"]))

    # ------------------------------------------------------------ accounts

    def lookup_account(self, handle: str) -> AccountInfo | None:
        """Account facts (creation date, suspension) through ``accounts/lookup``, which
        answers for accounts this instance knows; cached for the watcher's life."""
        clean = qualify(handle, self._domain)
        cached = self._accounts.get(clean.casefold())
        if cached is not None:
            return cached
        try:
            with self._errors("account lookup"):
                self._client.account_lookup(clean)
                account = self._session.last_json("account lookup")
        except TransientError as exc:
            if not isinstance(exc.__cause__, mastodon_errors.MastodonNotFoundError):
                raise
            info = AccountInfo(handle=clean, status="not_found")
        else:
            if not isinstance(account, dict) or not text_of(account.get("id")):
                raise TransientError("mastodon: account lookup: answer is not an Account")
            info = account_info(account, self._domain)
        self._accounts[clean.casefold()] = info
        return info

    # ------------------------------------------------------------ streaming

    def _ensure_stream(self, notes: list[str]) -> None:
        if not self.settings.streaming or self._wake is None:
            return
        if self._stream is None:
            listener = Doorbell(self._ring, self._stream_state)
            try:
                with self._errors("streaming"):
                    self._stream = self._client.stream_user(
                        listener,
                        run_async=True,
                        reconnect_async=True,
                        reconnect_async_wait_sec=self.settings.stream_retry.total_seconds(),
                        timeout=STREAM_READ_TIMEOUT,
                    )
            except TransientError as exc:
                notes.append(f"Mastodon streaming: {exc}; polling only")
                return
        every = f"{self.settings.every.total_seconds():g}s"
        with self._lock:
            up = self._stream_up
        notes.append(
            "Mastodon streaming: connected"
            if up
            else f"Mastodon streaming: connecting; polling every {every} meanwhile"
        )

    def _stop_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    def _stream_state(self, up: bool) -> None:
        with self._lock:
            self._stream_up = up
        if up:
            self._ring("connected", None)

    def _ring(self, event: str, payload: Any) -> None:
        """Called on the stream's thread: note what to re-read, then wake the service."""
        if event in ("update", "status.update") and not self._concerns_us(payload):
            return
        with self._lock:
            if event in ("update", "status.update"):
                self._refetch.add(str(payload["id"]))
            self._woken = True
            wake = self._wake
        if wake is not None:
            wake()

    def _concerns_us(self, status: Any) -> bool:
        """A home-timeline status matters if a watched author wrote it or it tags us."""
        try:
            author = qualify(str(status["account"]["acct"]), self._domain).casefold()
            mentioned = {
                qualify(str(m["acct"]), self._domain).casefold() for m in status["mentions"]
            }
        except (KeyError, TypeError):
            return False
        watched = {h.casefold() for h in self._authors}
        return author in watched or bool(mentioned & self._protected)

    # ------------------------------------------------------------ errors

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        with translated_errors(
            what,
            self.settings.instance_url,
            self.settings.access_token.get_secret_value(),
            self._session,
            self._clock,
        ):
            yield


def _cursor(value: object) -> tuple[str | None, str]:
    if isinstance(value, Mapping):
        since, after = value.get("since"), value.get("after")
        if isinstance(since, str) and since and isinstance(after, str):
            return since, after
    return None, "0"


def _oldest(page: list[dict[str, Any]]) -> str:
    return min((str(i["id"]) for i in page), key=id_key)


def _items(body: object, what: str) -> list[dict[str, Any]]:
    if not isinstance(body, list):
        raise TransientError(f"mastodon: {what}: answer is not a list")
    items = dicts(body)
    if len(items) != len(body) or not all(isinstance(i.get("id"), str) for i in items):
        raise TransientError(f"mastodon: {what}: answer holds entries without an id")
    return items
