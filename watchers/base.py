"""What every watcher shares: the Observation it emits, its settings, its errors.

A watcher turns one platform's API into Observations and nothing more: it knows
nothing of cases, matching, storage or alerts (it never imports ``service``).
What it needs to know about the people involved arrives as plain ``Targets``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pytimeparse.timeparse import timeparse as parse_timespan

ObservationKind = Literal[
    "post",
    "comment",
    "reply",
    "mention",
    "direct_message",
    "email",
    "feed_entry",
    "account",
    "boost",  # a share of someone else's post (a Mastodon boost): it spreads that post
]

PartyRole = Literal["restrained", "associate"]


def _parse_duration(value: object) -> object:
    """Accept ``90s``, ``5m``, ``1h``, ``1h30m`` or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration like 90s, 5m or 1h")
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    if isinstance(value, str):
        seconds = parse_timespan(value.strip())
        if seconds is None:
            raise ValueError("not a duration; write it like 90s, 5m or 1h")
        return timedelta(seconds=seconds)
    raise ValueError("expected a duration like 90s, 5m or 1h")


Duration = Annotated[timedelta, BeforeValidator(_parse_duration)]


# Longest value of each Observation field that the store keeps as it is (the same on
# SQLite and PostgreSQL). A hostile platform can send a megabyte-long author or guid;
# longer values are cut when the Observation is made, the cut is written into
# ``capture_method`` (so the evidence says so), and ``raw`` always stays whole.
FIELD_LIMITS: dict[str, int] = {
    "platform": 50,
    "native_id": 500,
    "author_handle": 300,
    "author_id": 300,
    "author_display_name": 1000,
    "url": 4000,
    "text": 200_000,
    "raw_content_type": 100,
    "watcher": 100,
    "capture_method": 2000,
}
# Identifiers are cut so that two long ones stay distinct: a prefix, then a hash of
# the whole value.
_ID_FIELDS = frozenset({"platform", "native_id", "author_handle", "author_id", "watcher"})
ADDRESSEES_MAX = 1000


def fit_id(value: str, limit: int) -> str:
    """``value`` if it fits in ``limit`` characters, else a prefix and the SHA-256 of the
    whole value (distinct long values stay distinct; the same value always maps alike)."""
    if len(value) <= limit:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{value[: limit - 73]}…#sha256:{digest}"


def fit_text(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def utc(dt: datetime) -> datetime:
    """Return ``dt`` as an aware UTC datetime (naive values are taken as UTC)."""
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class Observation:
    """One thing seen on a platform, exactly as the platform gave it."""

    platform: str
    native_id: str
    kind: ObservationKind
    raw: bytes
    watcher: str
    url: str | None = None
    author_handle: str | None = None
    author_id: str | None = None
    author_display_name: str | None = None
    author_created_at: datetime | None = None
    addressed_to: tuple[str, ...] = ()
    text: str = ""
    posted_at: datetime | None = None
    raw_content_type: str = "application/json"
    # Set when the source itself belongs to a party (a feed only the restrained
    # party writes), so the author is known even when the entry names nobody.
    posted_by: PartyRole | None = None
    # How the item was captured, for the evidence report ("Reddit API via praw").
    capture_method: str = ""
    # Facts checked at capture and kept beside the raw payload, JSON-serialisable (an
    # e-mail's DKIM/ARC verdicts with the key records used, the server's INTERNALDATE).
    # Not part of the content identity: a re-check that differs is not an edit.
    provenance: Mapping[str, Any] | None = dataclasses.field(default=None, hash=False)

    def __post_init__(self) -> None:
        if not self.platform or not self.native_id:
            raise ValueError("an Observation needs a platform and a native_id")
        for name in ("posted_at", "author_created_at"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, utc(value))
        self._fit_fields()

    def _fit_fields(self) -> None:
        cuts: list[str] = []
        for name, limit in FIELD_LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, str) and len(value) > limit:
                fit = fit_id if name in _ID_FIELDS else fit_text
                object.__setattr__(self, name, fit(value, limit))
                cuts.append(f"{name} ({len(value):,} characters)")
        addressed = self.addressed_to
        if len(addressed) > ADDRESSEES_MAX or any(len(a) > 300 for a in addressed):
            object.__setattr__(
                self, "addressed_to", tuple(fit_id(a, 300) for a in addressed[:ADDRESSEES_MAX])
            )
            cuts.append(f"addressed_to ({len(addressed):,} addressees)")
        if cuts:
            note = f"; cut to fit the store, raw kept whole: {', '.join(cuts)}"
            limit = FIELD_LIMITS["capture_method"]
            method = self.capture_method[: limit - len(note)] + note
            object.__setattr__(self, "capture_method", method)


RecheckOutcome = Literal["unchanged", "edited", "deleted", "removed", "unavailable"]


@dataclasses.dataclass(frozen=True, slots=True)
class RecheckItem:
    """A captured item to read again: its id, link, newest stored text and raw payload
    (where a platform's local id lives, such as a Mastodon status's id)."""

    native_id: str
    url: str | None
    text: str
    raw: bytes | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class RecheckResult:
    """What a re-read found. ``deleted``: by its author; ``removed``: by the platform
    or a moderator (or the page answers 404/410); ``unavailable``: cannot be read now,
    ``detail`` says why (``account suspended``); ``edited`` carries the new version."""

    native_id: str
    outcome: RecheckOutcome
    detail: str = ""
    observation: Observation | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Gone:
    """A captured item the platform itself announced gone (a Bluesky Jetstream delete
    event): recorded like a re-check's ``deleted`` (a chain record, never a version,
    which would say its author edited it). ``at`` is the platform's time of the event,
    ``raw`` the event as received."""

    platform: str
    native_id: str
    at: datetime
    raw: bytes
    detail: str = "deleted by its author"


@dataclasses.dataclass(frozen=True, slots=True)
class AccountInfo:
    """What a platform says about an account, for judging look-alike accounts."""

    handle: str
    status: Literal["active", "suspended", "deleted", "not_found"] = "active"
    account_id: str | None = None
    created_at: datetime | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Targets:
    """Who a watcher should look for on its platform, merged over the cases it serves.

    Handles are as written in config (no ``@`` / ``u/`` prefix); names are the
    protected person's names and aliases, for search.
    """

    protected_handles: frozenset[str] = frozenset()
    protected_names: frozenset[str] = frozenset()
    restrained_handles: frozenset[str] = frozenset()
    associate_handles: frozenset[str] = frozenset()
    restrained_names: frozenset[str] = frozenset()


@dataclasses.dataclass(slots=True)
class PollResult:
    """What one poll produced: observations, and the state to keep for the next poll.

    ``state`` must be JSON-serialisable; it replaces the previous state whole and is
    stored only when the poll's observations are stored.
    """

    observations: list[Observation]
    state: dict[str, Any]
    # Free-form lines for ``nocontact status`` (for example an X read budget).
    status_notes: list[str] = dataclasses.field(default_factory=list)
    # Captured items the platform announced deleted (service.deletions records them).
    gone: list[Gone] = dataclasses.field(default_factory=list)


class WatcherError(Exception):
    """A poll failed. The message is one line, safe to show (no secrets)."""


class TransientError(WatcherError):
    """Down, timing out, 5xx, garbage: try again at the next interval."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimitedError(TransientError):
    """The platform asked us to slow down; ``retry_after`` says for how long (s)."""


class AuthError(WatcherError):
    """Credentials rejected: the watcher is disabled until the config is fixed."""


class WatcherConfigError(WatcherError):
    """The watcher's settings cannot work (for example a URL that is not a feed)."""


class WatcherSettings(BaseModel):
    """Settings every watcher has. A platform's watcher subclasses this."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    name: str | None = None
    every: Duration = Field(default=timedelta(minutes=10))
    cases: list[str] | None = None

    @property
    def display_name(self) -> str:
        return self.name or self.type

    def secret_fields(self) -> frozenset[str]:
        """Names of fields that hold secrets, to be masked wherever shown."""
        return frozenset()


@runtime_checkable
class Watcher(Protocol):
    """What the service drives. Implementations are registered under the
    ``nocontact.watchers`` entry-point group by their ``type_name``."""

    type_name: ClassVar[str]
    platform: ClassVar[str]
    settings_model: ClassVar[type[WatcherSettings]]

    @property
    def name(self) -> str: ...

    def poll(self, state: Mapping[str, Any]) -> PollResult:
        """Fetch what is new since ``state``; raise a ``WatcherError`` on failure."""
        ...

    def lookup_account(self, handle: str) -> AccountInfo | None:
        """Account facts for a possible look-alike author, or None if unsupported."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Wakeable(Protocol):
    """A watcher that learns of new items between polls (a stream, IMAP IDLE) and asks
    for an early poll. The service hands it ``wake`` once; the watcher calls it from any
    thread, and the next ``poll`` reads what is new as usual. A watcher that is never
    given ``wake`` (``run --once``) just polls."""

    def set_wakeup(self, wake: Callable[[], None]) -> None: ...


@runtime_checkable
class Rechecking(Protocol):
    """Optional: a watcher that can re-read captured items (deletions and edits).

    ``recheck`` reads ``items`` within the platform's limits and returns one result
    per item it could judge; an item it leaves out is tried again later. Raises a
    ``WatcherError`` like ``poll``. Read-only, like everything a watcher does."""

    def recheck(self, items: Sequence[RecheckItem]) -> list[RecheckResult]: ...
