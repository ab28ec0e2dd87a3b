"""Re-check captured items for deletions and edits (#14 item 2).

Each item is read again on a decaying schedule after its first capture — 1 h, 6 h,
1 d, 3 d, 7 d and 30 d, as far as ``evidence.recheck.for`` reaches — by the watcher
that captured it, when that watcher can (``watchers.base.Rechecking``: Reddit through
``/api/info`` in batches of 100, RSS through the entry's own page; X cannot, as its
reads cost money). Every outcome is a chain record of kind ``recheck``: ``unchanged``,
``edited`` (the new text is stored as the item's next version, joined to the same
violations), ``deleted`` (by its author), ``removed`` (by a moderator or the site) or
``unavailable`` (with the reason). A deletion found is never alerted at once.
After ``deleted`` or ``removed`` an item is not read again.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service import chain
from service.evidence import format_time
from service.models import Evidence, Violation, ViolationEvidence
from service.store import Store
from watchers.base import Rechecking, RecheckItem, RecheckResult, Watcher, WatcherError

log = logging.getLogger(__name__)

SCHEDULE = (
    timedelta(hours=1),
    timedelta(hours=6),
    timedelta(days=1),
    timedelta(days=3),
    timedelta(days=7),
    timedelta(days=30),
)
FINAL = ("deleted", "removed")
REASON = "a later version of this item, found by re-checking it"


@dataclasses.dataclass(slots=True)
class _Item:
    evidence_id: int  # newest version
    seq: int
    platform: str
    native_id: str
    url: str | None
    text: str
    watcher: str
    first_captured: datetime
    last_seen: datetime  # newest time it was seen present (capture or check)
    checks: int = 0
    final: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Change:
    """One outcome other than ``unchanged``, for ``nocontact recheck`` to print."""

    platform: str
    native_id: str
    outcome: str
    detail: str
    between: tuple[str | None, str | None]


def _items(session: Session, case_id: str | None) -> dict[tuple[str, str], _Item]:
    """Each stored item (its newest version), with how often it was re-checked."""
    keys: set[tuple[str, str]] | None = None
    if case_id is not None:
        linked = (
            select(ViolationEvidence.evidence_id)
            .join(Violation, Violation.id == ViolationEvidence.violation_id)
            .where(Violation.case_id == case_id)
        )
        rows = session.execute(
            select(Evidence.platform, Evidence.native_id).where(Evidence.id.in_(linked))
        )
        keys = {(platform, native_id) for platform, native_id in rows}
    found: dict[tuple[str, str], _Item] = {}
    for row in session.execute(select(*_COLUMNS).order_by(Evidence.seq)):
        key = (row.platform, row.native_id)
        if keys is not None and key not in keys:
            continue
        first = found[key].first_captured if key in found else row.captured_at
        found[key] = _Item(row.id, row.seq, row.platform, row.native_id, row.url, row.text,
                           row.watcher, first, row.captured_at)  # fmt: skip
    for record in chain.iter_records(session, "recheck"):
        data = json.loads(record.data)
        item = found.get((data["platform"], data["native_id"]))
        if item is None:
            continue
        item.checks += 1
        if data["outcome"] in FINAL:
            item.final = True
        elif data["outcome"] in ("unchanged", "edited"):
            item.last_seen = max(item.last_seen, record.recorded_at)
    return found


_COLUMNS = (
    Evidence.id,
    Evidence.seq,
    Evidence.platform,
    Evidence.native_id,
    Evidence.url,
    Evidence.text,
    Evidence.watcher,
    Evidence.captured_at,
)


def _raws(session: Session, ids: Sequence[int]) -> dict[int, bytes]:
    """The stored raw payloads of ``ids``, a page at a time (bind-parameter limits)."""
    found: dict[int, bytes] = {}
    for start in range(0, len(ids), 500):
        page = ids[start : start + 500]
        rows = session.execute(select(Evidence.id, Evidence.raw).where(Evidence.id.in_(page)))
        found.update((evidence_id, raw) for evidence_id, raw in rows)
    return found


def is_due(item: _Item, now: datetime, window: timedelta) -> bool:
    if item.final or item.checks >= len(SCHEDULE):
        return False
    wait = SCHEDULE[item.checks]
    return wait <= window and now >= item.first_captured + wait


class Rechecker:
    """Runs re-checks through the pipeline's watchers and records their outcomes."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        store: Store,
        watcher_for: Callable[[str], Watcher | None],
        *,
        clock: Callable[[], datetime],
    ) -> None:
        self.sessions = sessions
        self.store = store
        self.watcher_for = watcher_for
        self.clock = clock

    def run(
        self, window: timedelta, *, case_id: str | None = None, every_item: bool = False
    ) -> list[Change]:
        """Re-check what is due (every item of ``case_id``, when ``every_item``)."""
        now = self.clock()
        with self.sessions() as session:
            items = _items(session, case_id)
        due = [
            item
            for item in items.values()
            if (every_item and not item.final) or is_due(item, now, window)
        ]
        by_watcher: dict[str, list[_Item]] = {}
        for item in due:
            by_watcher.setdefault(item.watcher, []).append(item)
        changes: list[Change] = []
        for name, batch in sorted(by_watcher.items()):
            changes.extend(self._run_watcher(name, batch))
        return changes

    def _run_watcher(self, name: str, batch: Sequence[_Item]) -> list[Change]:
        watcher = self.watcher_for(name)
        if watcher is None or not isinstance(watcher, Rechecking):
            return []
        with self.sessions() as session:
            raws = _raws(session, [item.evidence_id for item in batch])
        wanted = [
            RecheckItem(item.native_id, item.url, item.text, raws.get(item.evidence_id))
            for item in batch
        ]
        try:
            results = watcher.recheck(wanted)
        except WatcherError as exc:
            log.warning("re-check through %s failed: %s; tried again later", name, exc)
            return []
        by_id = {item.native_id: item for item in batch}
        return [
            change
            for result in results
            if result.native_id in by_id
            for change in self._record(by_id[result.native_id], result)
        ]

    def _record(self, item: _Item, result: RecheckResult) -> Iterable[Change]:
        now = self.clock()
        data: dict[str, Any] = {
            "platform": item.platform,
            "native_id": item.native_id,
            "evidence_seq": item.seq,
            "outcome": result.outcome,
            "detail": result.detail,
            "checked_at": format_time(now),
            "last_seen_at": format_time(item.last_seen),
        }
        with self.sessions.begin() as session:
            if result.outcome == "edited" and result.observation is not None:
                data["new_version_seq"] = self._add_version(session, item, result, now)
            chain.append(session, "recheck", data, now, evidence_id=item.evidence_id)
        if result.outcome != "unchanged":
            yield Change(item.platform, item.native_id, result.outcome, result.detail,
                         (data["last_seen_at"], data["checked_at"]))  # fmt: skip

    def _add_version(
        self, session: Session, item: _Item, result: RecheckResult, now: datetime
    ) -> int | None:
        assert result.observation is not None  # noqa: S101 - checked by the caller
        _, fresh = self.store._append_evidence(session, item.watcher, [result.observation], now)
        if not fresh:
            return None  # the same text as a version already stored
        violations = session.scalars(
            select(ViolationEvidence.violation_id).where(
                ViolationEvidence.evidence_id == item.evidence_id
            )
        ).all()
        new_id = fresh[0].evidence_id
        for violation_id in violations:
            session.add(
                ViolationEvidence(violation_id=violation_id, evidence_id=new_id, reason=REASON)
            )
        seq = session.scalar(select(Evidence.seq).where(Evidence.id == fresh[0].evidence_id))
        return int(seq) if seq is not None else None
