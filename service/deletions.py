"""What re-checks found gone (service.recheck), for the timeline, ``show`` and the
report: ``deleted_at`` is when nocontact found the item gone, ``deleted_between`` the
window in which it went (from when it was last seen present).

A platform that announces a deletion itself (a Bluesky Jetstream delete event,
``watchers.base.Gone``) gets the same ``recheck`` chain record, with the event's time
as ``event_at`` (then ``deleted_at``) and the event's bytes as the record's blob,
covered by ``event_sha256``: a deletion is a fact about the item, not a version of it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from service import chain
from service.evidence import format_time, sha256_hex
from service.models import ChainRecord, Evidence, Violation, ViolationEvidence
from watchers.base import Gone

FINAL = ("deleted", "removed")
# Keys per query: well under SQLite's 32,766 bound parameters (two per key).
_KEYS_PER_QUERY = 500


def deletions(
    session: Session, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """(platform, native_id) → ``{"deleted_at", "deleted_between", "outcome", "detail",
    "seq"}`` (``seq``: the chain record's)."""
    wanted = sorted(set(keys))
    found: dict[tuple[str, str], dict[str, Any]] = {}
    # Only the re-check records of the wanted items are read (through their evidence
    # rows and the (record, evidence_id) index): a timeline page or an export costs the
    # same whether the store holds a hundred re-checks or a million.
    for start in range(0, len(wanted), _KEYS_PER_QUERY):
        chunk = wanted[start : start + _KEYS_PER_QUERY]
        ids = session.scalars(
            select(Evidence.id).where(tuple_(Evidence.platform, Evidence.native_id).in_(chunk))
        ).all()
        if not ids:
            continue
        rows = session.execute(
            select(ChainRecord.seq, ChainRecord.data)
            .where(ChainRecord.record == "recheck", ChainRecord.evidence_id.in_(ids))
            .order_by(ChainRecord.seq)
        ).all()
        for seq, text in rows:
            data = json.loads(text)
            key = (data["platform"], data["native_id"])
            if data["outcome"] in FINAL and key not in found:
                found[key] = _fact(seq, data)
    return found


def _fact(seq: int, data: dict[str, Any]) -> dict[str, Any]:
    when = data.get("event_at") or data["checked_at"]
    return {
        "deleted_at": when,
        "deleted_between": [data["last_seen_at"], when],
        "outcome": data["outcome"],
        "detail": data["detail"],
        "seq": seq,
        "by_event": "event_at" in data,  # the platform's own delete event
    }


def annotate(session: Session, entries: Iterable[dict[str, Any]]) -> None:
    """Add ``deleted_at`` / ``deleted_between`` (null when not found gone) to timeline
    evidence entries."""
    listed = list(entries)
    gone = deletions(session, ((e["platform"], e["native_id"]) for e in listed))
    for entry in listed:
        fact = gone.get((entry["platform"], entry["native_id"]), {})
        entry["deleted_at"] = fact.get("deleted_at")
        entry["deleted_between"] = fact.get("deleted_between")


def _case_items(session: Session, case_id: str) -> list[tuple[int, str, str]]:
    rows = session.execute(
        select(Evidence.seq, Evidence.platform, Evidence.native_id)
        .join(ViolationEvidence, ViolationEvidence.evidence_id == Evidence.id)
        .join(Violation, Violation.id == ViolationEvidence.violation_id)
        .where(Violation.case_id == case_id)
    ).all()
    return [(seq, platform, native_id) for seq, platform, native_id in rows]


def case_deletions(session: Session, case_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    """``deletions`` of the case's items, for evidence.json."""
    return deletions(session, ((p, n) for _, p, n in _case_items(session, case_id)))


def case_notes(session: Session, case_id: str) -> dict[int, str]:
    """Evidence seq → the report's line about its deletion, for the case's items."""
    rows = _case_items(session, case_id)
    gone = deletions(session, ((platform, native_id) for _, platform, native_id in rows))
    notes: dict[int, str] = {}
    for seq, platform, native_id in rows:
        fact = gone.get((platform, native_id))
        if fact is not None:
            start, end = fact["deleted_between"]
            how = "Platform delete event" if fact["by_event"] else "Re-check"
            notes[seq] = (
                f"{how}: {fact['outcome'].upper()} ({fact['detail']}) between {start} and "
                f"{end} UTC; the stored copy above is what was captured before"
            )
    return notes


def record_gone(session: Session, watcher: str, gone: Iterable[Gone], now: datetime) -> int:
    """Chain a ``deleted`` record for each captured item a platform announced gone, in
    the poll's transaction; items never stored or already found gone are skipped (a
    replayed stream repeats its events). Returns how many were recorded."""
    recorded = 0
    for event in gone:
        rows = session.execute(
            select(Evidence.id, Evidence.seq, Evidence.captured_at)
            .where(Evidence.platform == event.platform, Evidence.native_id == event.native_id)
            .order_by(Evidence.seq)
        ).all()
        if not rows:
            continue
        last_seen = rows[-1].captured_at
        known = session.scalars(
            select(ChainRecord).where(
                ChainRecord.record == "recheck",
                ChainRecord.evidence_id.in_([row.id for row in rows]),
            )
        )
        outcomes = [(json.loads(r.data)["outcome"], r.recorded_at) for r in known]
        if any(outcome in FINAL for outcome, _ in outcomes):
            continue
        seen = [at for outcome, at in outcomes if outcome in ("unchanged", "edited")]
        data = {
            "platform": event.platform,
            "native_id": event.native_id,
            "evidence_seq": rows[-1].seq,
            "outcome": "deleted",
            "detail": event.detail,
            "checked_at": format_time(now),
            "event_at": format_time(event.at),
            "last_seen_at": format_time(max([last_seen, *seen])),
            "source": f"{watcher}: the platform's own delete event",
            "event_sha256": sha256_hex(event.raw),
        }
        chain.append(session, "recheck", data, now, blob=event.raw, evidence_id=rows[-1].id)
        recorded += 1
    return recorded


def recent(session: Session, case_ids: Sequence[str], since: datetime) -> Counter[tuple[str, str]]:
    """(kind, platform) → how many of the cases' items were found deleted by their
    author since ``since`` (for the daily digest: a deletion is never pushed at once)."""
    found: Counter[tuple[str, str]] = Counter()
    rows = session.execute(
        select(ChainRecord.data, Evidence.kind, Evidence.platform, Evidence.native_id)
        .join(Evidence, Evidence.id == ChainRecord.evidence_id)
        .where(ChainRecord.record == "recheck", ChainRecord.recorded_at > since)
    ).all()
    for data, kind, platform, native_id in rows:
        if json.loads(data).get("outcome") != "deleted":
            continue
        linked = session.scalar(
            select(Violation.id)
            .join(ViolationEvidence, ViolationEvidence.violation_id == Violation.id)
            .join(Evidence, Evidence.id == ViolationEvidence.evidence_id)
            .where(
                Violation.case_id.in_(case_ids),
                Evidence.platform == platform,
                Evidence.native_id == native_id,
            )
            .limit(1)
        )
        if linked is not None:
            found[(kind, platform)] += 1
    return found
