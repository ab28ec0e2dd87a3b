"""Keep the case, not the world (DESIGN principle 9, #14 item 5).

Evidence holds the observations that produced a hit (in or out of the order period),
those written by someone a case knows or suspects (restrained party, associate,
suspected alt), and every later version of an item already held. Any other
observation leaves no text in the store: only a marker, the SHA-256 of (platform,
native id, authored content, author), so that the next poll does not match it again.
A marker cannot be read back into words or names; an edit of that item, or a renamed
author, has another marker and is matched afresh.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime

from sqlalchemy import Engine, bindparam, select
from sqlalchemy.orm import Session

from service import evidence
from service.db import database_errors, session_factory
from service.hits import Hit
from service.models import Evidence, SeenItem
from service.outbox import dialect_insert
from watchers.base import Observation

_CHUNK = 500
# Built once, with an expanding IN that takes a poll's keys as one parameter (#15).
_KNOWN_MARKERS = select(SeenItem.marker).where(
    SeenItem.marker.in_(bindparam("markers", expanding=True))
)
_HELD_ITEMS = (
    select(Evidence.native_id)
    .where(
        Evidence.platform == bindparam("platform"),
        Evidence.native_id.in_(bindparam("native_ids", expanding=True)),
    )
    .distinct()
)


def marker(obs: Observation) -> str:
    """The only trace an uninvolved observation leaves. The author's handle and display
    name are in it: an account renamed to look like the restrained party is matched
    again, as is any edit."""
    identity = [
        obs.platform,
        obs.native_id,
        evidence.authored_sha256(obs.text),
        obs.author_handle,
        obs.author_display_name,
    ]
    return evidence.sha256_hex(json.dumps(identity, ensure_ascii=False).encode("utf-8"))


@dataclasses.dataclass(frozen=True, slots=True)
class Split:
    """One poll's new observations sorted into evidence and markers.

    ``hits`` is keyed by the index into ``kept``, as ``Store.record_poll`` expects.
    """

    kept: list[Observation]
    hits: dict[int, list[Hit]]
    markers: list[str]


def remember_markers(session: Session, markers: Iterable[str], now: datetime) -> None:
    """Store the markers in the caller's transaction (``Store.record_poll`` stores a
    poll's with its evidence). Idempotent, as replicas may store the same ones; sorted,
    so that two transactions storing the same markers lock them in the same order."""
    unique = sorted(set(markers))
    for start in range(0, len(unique), _CHUNK):
        rows = [{"marker": m, "seen_on": now.date()} for m in unique[start : start + _CHUNK]]
        statement = dialect_insert(session, SeenItem.__table__)  # type: ignore[arg-type]
        session.execute(statement.values(rows).on_conflict_do_nothing())


def unmarked(session: Session, observations: Sequence[Observation]) -> list[Observation]:
    """The observations not already remembered as uninvolved, read in the caller's
    transaction."""
    marks = [marker(obs) for obs in observations]
    keys = sorted(set(marks))
    known: set[str] = set()
    for start in range(0, len(keys), _CHUNK):
        known.update(session.scalars(_KNOWN_MARKERS, {"markers": keys[start : start + _CHUNK]}))
    return [obs for obs, mark in zip(observations, marks, strict=True) if mark not in known]


class Retention:
    """Reads and writes the markers; decides what a poll keeps."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._write = session_factory(engine)
        self._read = session_factory(engine, readonly=True)

    def unmarked(self, observations: Sequence[Observation]) -> list[Observation]:
        """The observations not already remembered as uninvolved."""
        with database_errors(self.engine), self._read() as session:
            return unmarked(session, observations)

    def split(
        self,
        observations: Sequence[Observation],
        hits: Mapping[int, Sequence[Hit]],
        involved: Callable[[Observation], bool],
        held: Collection[tuple[str, str]] | None = None,
    ) -> Split:
        """``held``: the (platform, native id) of these items with evidence stored, when
        the caller has read them already (``Store.screen``); else they are read here."""
        if held is None:
            held = self._held_items(observations)
        kept: list[Observation] = []
        kept_hits: dict[int, list[Hit]] = {}
        markers: list[str] = []
        for index, obs in enumerate(observations):
            found = list(hits.get(index, ()))
            if found or (obs.platform, obs.native_id) in held or involved(obs):
                if found:
                    kept_hits[len(kept)] = found
                kept.append(obs)
            else:
                markers.append(marker(obs))
        return Split(kept, kept_hits, markers)

    def remember(self, markers: Iterable[str], now: datetime) -> None:
        """Store the markers (idempotent: replicas may store the same ones)."""
        unique = sorted(set(markers))
        if not unique:
            return
        with database_errors(self.engine), self._write.begin() as session:
            remember_markers(session, unique, now)

    def _held_items(self, observations: Sequence[Observation]) -> set[tuple[str, str]]:
        """Items with evidence already: their later versions are evidence too."""
        by_platform: dict[str, list[str]] = {}
        for obs in observations:
            by_platform.setdefault(obs.platform, []).append(obs.native_id)
        held: set[tuple[str, str]] = set()
        with database_errors(self.engine), self._read() as session:
            for platform, ids in by_platform.items():
                unique = sorted(set(ids))
                for start in range(0, len(unique), _CHUNK):
                    chunk = unique[start : start + _CHUNK]
                    rows = session.scalars(_HELD_ITEMS, {"platform": platform, "native_ids": chunk})
                    held.update((platform, native_id) for native_id in rows)
        return held
