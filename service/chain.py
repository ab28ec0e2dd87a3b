"""Chain records that are not platform items (#14): trusted timestamps of the chain
head, monitoring coverage, re-check outcomes.

They share ``seq`` and the hash chain with evidence records, so removing, changing or
reordering any of them breaks the chain like an evidence record would. Canonical form
(docs/evidence.md, "Other chain records"): the JSON object ``{"data": …, "record": …,
"recorded_at": …, "seq": …}`` encoded exactly like an evidence record's; a binary a
record carries (an RFC 3161 response) is covered through a SHA-256 inside ``data``.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service import evidence
from service.db import StoreError
from service.models import ChainHead, ChainRecord, Evidence

RECORD_KINDS = ("timestamp", "coverage", "recheck")
_PAGE = 1000


def canonical_bytes(seq: int, record: str, recorded_at: str, data: Mapping[str, Any]) -> bytes:
    value = {"seq": seq, "record": record, "recorded_at": recorded_at, "data": dict(data)}
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def data_text(data: Mapping[str, Any]) -> str:
    """``data`` as stored: canonical JSON text, so that it hashes the same when read."""
    return json.dumps(dict(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_sha256(row: Any) -> str:
    """Recompute a stored chain record's hash from its columns."""
    recorded_at = evidence.format_time(row.recorded_at) or ""
    return evidence.sha256_hex(
        canonical_bytes(row.seq, row.record, recorded_at, json.loads(row.data))
    )


def append(
    session: Session,
    record: str,
    data: Mapping[str, Any],
    now: datetime,
    *,
    blob: bytes | None = None,
    evidence_id: int | None = None,
) -> ChainRecord:
    """Append one record to the chain in the caller's transaction (locks the head)."""
    if record not in RECORD_KINDS:
        raise ValueError(f"unknown chain record kind {record!r}")
    head = session.scalars(
        select(ChainHead).where(ChainHead.id == 1).with_for_update()
    ).one_or_none()
    if head is None:
        raise StoreError("the evidence chain head is missing; was the database migrated?")
    recorded_at = evidence.truncate_to_second(now)
    seq = head.seq + 1
    sha = evidence.sha256_hex(
        canonical_bytes(seq, record, evidence.format_time(recorded_at) or "", data)
    )
    row = ChainRecord(
        seq=seq,
        record=record,
        recorded_at=recorded_at,
        data=data_text(data),
        blob=blob,
        evidence_id=evidence_id,
        sha256=sha,
        chain_sha256=evidence.chain_sha256(head.chain_sha256, sha),
    )
    session.add(row)
    head.seq, head.chain_sha256 = seq, row.chain_sha256
    session.flush()
    return row


def iter_records(session: Session, record: str | None = None) -> Iterator[ChainRecord]:
    """Chain records in seq order (of one kind when given), a page at a time."""
    after = 0
    while True:
        query = select(ChainRecord).where(ChainRecord.seq > after).order_by(ChainRecord.seq)
        if record is not None:
            query = query.where(ChainRecord.record == record)
        page = list(session.scalars(query.limit(_PAGE)))
        if not page:
            return
        yield from page
        after = page[-1].seq


def iter_links(session: Session, last_seq: int) -> Iterator[tuple[int, str, str]]:
    """(seq, sha256, chain_sha256) of every record of both tables up to ``last_seq``."""

    def links(model: type[Evidence] | type[ChainRecord]) -> Iterator[tuple[int, str, str]]:
        after = 0
        while after < last_seq:
            page = session.execute(
                select(model.seq, model.sha256, model.chain_sha256)
                .where(model.seq > after, model.seq <= last_seq)
                .order_by(model.seq)
                .limit(_PAGE)
            ).all()
            if not page:
                return
            yield from ((seq, sha, link) for seq, sha, link in page)
            after = page[-1][0]

    yield from heapq.merge(links(Evidence), links(ChainRecord))


def json_record(row: ChainRecord) -> dict[str, Any]:
    """A chain record as the packet's ``chain_records`` lists it."""
    return {
        "seq": row.seq,
        "record": row.record,
        "recorded_at": evidence.format_time(row.recorded_at),
        "data": json.loads(row.data),
        "sha256": row.sha256,
        "chain_sha256": row.chain_sha256,
    }
