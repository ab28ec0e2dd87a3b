"""What every watcher shares: the Observation it emits, its settings, its errors.

A watcher turns one platform's API into Observations and nothing more: it knows
nothing of cases, matching, storage or alerts (it never imports ``service``).
What it needs to know about the people involved arrives as plain ``Targets``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
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

    def __post_init__(self) -> None:
        if not self.platform or not self.native_id:
            raise ValueError("an Observation needs a platform and a native_id")
        for name in ("posted_at", "author_created_at"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, utc(value))


RecheckOutcome = Literal["unchanged", "edited", "deleted", "removed", "unavailable"]


@dataclasses.dataclass(frozen=True, slots=True)
class RecheckItem:
    """A captured item to read again: its id, link and newest stored text."""

    native_id: str
    url: str | None
    text: str


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
class Rechecking(Protocol):
    """Optional: a watcher that can re-read captured items (deletions and edits).

    ``recheck`` reads ``items`` within the platform's limits and returns one result
    per item it could judge; an item it leaves out is tried again later. Raises a
    ``WatcherError`` like ``poll``. Read-only, like everything a watcher does."""

    def recheck(self, items: Sequence[RecheckItem]) -> list[RecheckResult]: ...
