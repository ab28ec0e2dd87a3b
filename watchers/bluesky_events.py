"""What one Bluesky poll gathered, turned into Observations (``watchers.bluesky``).

Posts from XRPC (notifications, author feeds) and Jetstream events are collected first;
the authors not seen yet are then looked up in one batch (``getProfiles``: handle,
display name and account ``createdAt``), and only then are Observations built, so that a
post reads the same whichever way it arrived.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from watchers.base import Gone, Observation
from watchers.bluesky_records import (
    PLATFORM,
    POST_NSID,
    NamePrefilter,
    account_observation,
    addressed_dids,
    parse_time,
    raw_json,
)
from watchers.bluesky_stream import (
    REWIND_US,
    JetstreamReader,
    StreamEvent,
    StreamGap,
    us_to_datetime,
)

if TYPE_CHECKING:
    from watchers.bluesky import BlueskyWatcher
    from watchers.bluesky_state import BlueskyState


JETSTREAM_DELETE = "deleted by its author (Jetstream delete event)"


@dataclasses.dataclass(frozen=True, slots=True)
class _Pending:
    uri: str
    cid: str | None
    record: Mapping[str, Any]
    via: str


class EventSink:
    def __init__(self, watcher: BlueskyWatcher, st: BlueskyState, notes: list[str]) -> None:
        self._watcher = watcher
        self._st = st
        self.notes = notes
        targets = watcher.targets
        self.wanted = watcher.role_dids(targets.restrained_handles | targets.associate_handles)
        self.protected = watcher.role_dids(targets.protected_handles)
        self._watched = self.wanted | self.protected
        self._names = NamePrefilter([*targets.protected_names, *targets.protected_handles])
        self._all = watcher.settings.network == "all"
        self._captured = set(st.captured)
        self._pending: list[_Pending] = []
        self._other: list[Observation] = []
        self.gone: list[Gone] = []
        self._drained: tuple[list[StreamEvent], list[StreamGap]] = ([], [])
        for handle, did in st.dids.items():
            st.handles.setdefault(did, handle)

    def post(self, uri: object, cid: object, record: object, via: str) -> None:
        if isinstance(uri, str) and isinstance(record, dict):
            self._pending.append(_Pending(uri, cid if isinstance(cid, str) else None, record, via))

    # ------------------------------------------------------------ Jetstream

    def stream(self, events: list[StreamEvent], gaps: list[StreamGap]) -> None:
        self._drained = (events, gaps)
        for gap in gaps:
            self._gap(gap)
        recent = set(self._st.recent)
        for event in events:
            if self._st.cursor_us is None or event.time_us > self._st.cursor_us:
                self._st.cursor_us = event.time_us
            # A resumed stream replays REWIND_US before the cursor: skip what was stored.
            key = f"{event.time_us}:{event.did}"
            if key in recent:
                continue
            recent.add(key)
            if event.kind == "commit":
                self._commit(event)
            elif event.kind == "identity" and event.did in self._watched:
                self._identity(event)
            elif event.kind == "account" and event.did in self.wanted:
                self._account(event)
        if self._st.cursor_us is not None:
            floor = self._st.cursor_us - REWIND_US
            self._st.recent = sorted(k for k in recent if int(k.split(":", 1)[0]) >= floor)

    def give_back(self, reader: JetstreamReader | None) -> None:
        """The poll failed: hand the drained events back, to be read by the next poll."""
        if reader is not None:
            reader.requeue(*self._drained)

    def _commit(self, event: StreamEvent) -> None:
        commit = event.body.get("commit")
        if not isinstance(commit, dict) or commit.get("collection") != POST_NSID:
            return
        rkey, operation = commit.get("rkey"), commit.get("operation")
        if not isinstance(rkey, str):
            return
        uri = f"at://{event.did}/{POST_NSID}/{rkey}"
        if operation == "delete":
            # A fact about a stored post, not a version of it: the service chains it
            # (and ignores it when the post was never stored).
            if event.did in self.wanted or uri in self._captured:
                when = us_to_datetime(event.time_us)
                self.gone.append(Gone(PLATFORM, uri, when, event.raw, JETSTREAM_DELETE))
            return
        record = commit.get("record")
        if operation not in ("create", "update") or not isinstance(record, dict):
            return
        if event.did in self.wanted or self._concerns_protected(record):
            cid = commit.get("cid")
            self._pending.append(
                _Pending(uri, cid if isinstance(cid, str) else None, record, "Jetstream")
            )
            if event.did not in self.wanted and uri not in self._captured:
                self._captured.add(uri)
                self._st.captured.append(uri)

    def _concerns_protected(self, record: Mapping[str, Any]) -> bool:
        """Whole network: only posts that address or may name the protected person."""
        if not self._all:
            return False
        if any(did in self.protected for did in addressed_dids(record)):
            return True
        text = record.get("text")
        return isinstance(text, str) and self._names(text)

    def _identity(self, event: StreamEvent) -> None:
        identity = event.body.get("identity")
        handle = identity.get("handle") if isinstance(identity, dict) else None
        if not isinstance(handle, str) or not isinstance(identity, dict):
            return
        old = self._st.handles.get(event.did)
        self._st.handles[event.did] = handle
        self._watcher.set_handle(event.did, handle)
        # Only the other side's renames are evidence; the protected person's are not.
        if old is None or old == handle or event.did not in self.wanted:
            return
        seq = identity.get("seq", event.time_us)
        self._other.append(
            account_observation(
                event.did,
                f"{event.did}#identity-{seq}",
                f"Bluesky handle changed from @{old} to @{handle} (same account {event.did})",
                parse_time(identity.get("time")) or us_to_datetime(event.time_us),
                event.raw,
                self._watcher.name,
            )
        )

    def _account(self, event: StreamEvent) -> None:
        account = event.body.get("account")
        if not isinstance(account, dict):
            return
        active = account.get("active") is True
        status = account.get("status")
        state = "active" if active else f"inactive ({status or 'no status given'})"
        seq = account.get("seq", event.time_us)
        self._other.append(
            account_observation(
                event.did,
                f"{event.did}#account-{seq}",
                f"Bluesky account {self._watcher.profile(event.did).handle or event.did} "
                f"is {state}",
                parse_time(account.get("time")) or us_to_datetime(event.time_us),
                event.raw,
                self._watcher.name,
            )
        )

    def _gap(self, gap: StreamGap) -> None:
        start, end = us_to_datetime(gap.start_us), us_to_datetime(gap.end_us)
        text = (
            f"Coverage gap: Jetstream events from {start:%Y-%m-%d %H:%M:%S} to "
            f"{end:%Y-%m-%d %H:%M:%S} UTC could not be read ({gap.reason})"
        )
        self.notes.append(f"Bluesky: {text}")
        self._other.append(
            Observation(
                platform="bluesky",
                native_id=f"jetstream-gap:{gap.start_us}-{gap.end_us}",
                kind="feed_entry",
                raw=raw_json(dataclasses.asdict(gap)),
                watcher=self._watcher.name,
                text=text,
                posted_at=end,
                capture_method="Bluesky Jetstream coverage record",
            )
        )

    # ------------------------------------------------------------ result

    def observations(self) -> list[Observation]:
        self._watcher.fetch_profiles(
            [p.uri.removeprefix("at://").split("/", 1)[0] for p in self._pending]
        )
        found: list[Observation] = []
        for pending in self._pending:
            obs = self._watcher.make_post(pending.uri, pending.cid, pending.record, pending.via)
            if obs is not None:
                found.append(obs)
        return found + self._other
