"""The Bluesky watcher's JSON state between polls (``PollResult.state``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from watchers.bluesky_records import parse_time

STATE_VERSION = 1
# URIs of captured posts by accounts that are not watched (network: all), so that their
# deletion is recorded; older ones are forgotten first.
MAX_CAPTURED = 5000


@dataclasses.dataclass(slots=True)
class BlueskyState:
    # configured handle (lower case) → DID, kept when the handle later changes hands
    dids: dict[str, str] = dataclasses.field(default_factory=dict)
    resolved_at: datetime | None = None
    # DID → last handle seen, to notice a handle change across restarts
    handles: dict[str, str] = dataclasses.field(default_factory=dict)
    # Jetstream time_us of the newest event stored (microseconds since the epoch)
    cursor_us: int | None = None
    notifications_newest: datetime | None = None
    # DID → indexedAt of the newest post read from its author feed
    feeds: dict[str, datetime] = dataclasses.field(default_factory=dict)
    captured: list[str] = dataclasses.field(default_factory=list)
    # "time_us:did" of the events stored in the last REWIND_US before the cursor: a
    # resumed stream replays those, and they are skipped rather than stored again.
    recent: list[str] = dataclasses.field(default_factory=list)
    # What the last resolution found wrong (shown by every poll until the next one).
    identity_notes: list[str] = dataclasses.field(default_factory=list)

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> BlueskyState:
        if value.get("v") != STATE_VERSION:
            return cls()
        cursor = value.get("cursor_us")
        return cls(
            dids=_str_map(value.get("dids")),
            resolved_at=parse_time(value.get("resolved_at")),
            handles=_str_map(value.get("handles")),
            cursor_us=cursor if isinstance(cursor, int) and cursor > 0 else None,
            notifications_newest=parse_time(value.get("notifications_newest")),
            feeds={k: t for k, v in _str_map(value.get("feeds")).items() if (t := parse_time(v))},
            captured=_strings(value.get("captured")),
            recent=_strings(value.get("recent")),
            identity_notes=_strings(value.get("identity_notes")),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "dids": dict(sorted(self.dids.items())),
            "resolved_at": _iso(self.resolved_at),
            "handles": dict(sorted(self.handles.items())),
            "cursor_us": self.cursor_us,
            "notifications_newest": _iso(self.notifications_newest),
            "feeds": {k: _iso(v) for k, v in sorted(self.feeds.items())},
            "captured": self.captured[-MAX_CAPTURED:],
            "recent": self.recent,
            "identity_notes": self.identity_notes,
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _str_map(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def _strings(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
