"""Evidence rows as ``Store`` writes them: what is stored of an item already (the
dedup look-up), one row with its hashes (``docs/evidence.md``), and the ids of rows
by their chain position.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from service import evidence
from service.models import Evidence
from watchers.base import Observation

_CHUNK = 500

ItemKey = tuple[str, str]  # (platform, native_id)


def observation_content_sha256(obs: Observation) -> str:
    """Identity of one version of a platform item: what its author wrote
    (``evidence.authored_sha256``). Neither the raw payload (a feed's XML changes with
    every poll), the capture time, the endpoint's ``kind``, the recipients nor the
    author's display name is included: re-reading an unchanged item through another
    endpoint or after a rename never makes a new version.
    """
    return evidence.authored_sha256(obs.text)


# Built once, with an expanding IN that takes a poll's keys as one parameter: building
# the statement per call coerced every key into it and made a new cache key (#15).
_STORED_ITEMS = select(
    Evidence.native_id, Evidence.content_sha256, Evidence.version, Evidence.text
).where(
    Evidence.platform == bindparam("platform"),
    Evidence.native_id.in_(bindparam("native_ids", expanding=True)),
)
_IDS_BY_SEQ = select(Evidence.seq, Evidence.id).where(
    Evidence.seq.in_(bindparam("seqs", expanding=True))
)


@dataclasses.dataclass(slots=True)
class StoredItem:
    contents: set[str]
    max_version: int


def stored_items(session: Session, keys: Iterable[ItemKey]) -> dict[ItemKey, StoredItem]:
    """The stored content hashes and newest version of each (platform, native_id)."""
    by_platform: dict[str, set[str]] = {}
    for platform, native_id in keys:
        by_platform.setdefault(platform, set()).add(native_id)
    found: dict[ItemKey, StoredItem] = {}
    for platform, native_ids in by_platform.items():
        ordered = sorted(native_ids)
        for start in range(0, len(ordered), _CHUNK):
            chunk = ordered[start : start + _CHUNK]
            rows = session.execute(_STORED_ITEMS, {"platform": platform, "native_ids": chunk})
            for native_id, content, version, text in rows:
                item = found.setdefault((platform, native_id), StoredItem(set(), 0))
                # Rows of the first release keep the content hash they were stored with
                # (records are never rewritten); their authored identity is recomputed
                # from the stored text so that they still match what is polled now.
                item.contents.update((content, evidence.authored_sha256(text)))
                item.max_version = max(item.max_version, version)
    return found


def evidence_ids(session: Session, seqs: Sequence[int]) -> dict[int, int]:
    """The ids of the evidence rows of these chain positions."""
    found: dict[int, int] = {}
    for start in range(0, len(seqs), _CHUNK):
        chunk = seqs[start : start + _CHUNK]
        rows = session.execute(_IDS_BY_SEQ, {"seqs": chunk})
        found.update((seq, evidence_id) for seq, evidence_id in rows)
    return found


def evidence_row(
    obs: Observation, watcher: str, version: int, seq: int, captured_at: datetime
) -> dict[str, Any]:
    raw_sha256 = evidence.sha256_hex(obs.raw)
    canonical = {
        "seq": seq,
        "platform": obs.platform,
        "native_id": obs.native_id,
        "version": version,
        "url": obs.url,
        "author_handle": obs.author_handle,
        "author_id": obs.author_id,
        "posted_at": evidence.format_time(obs.posted_at),
        "captured_at": evidence.format_time(captured_at),
        "text": obs.text,
        "raw_sha256": raw_sha256,
    }
    return {
        **canonical,
        "posted_at": obs.posted_at,
        "captured_at": captured_at,
        "kind": obs.kind,
        "author_display_name": obs.author_display_name,
        "author_created_at": obs.author_created_at,
        "addressed_to": list(obs.addressed_to),
        "watcher": watcher,
        "capture_method": obs.capture_method,
        "raw": obs.raw,
        "raw_content_type": obs.raw_content_type,
        "provenance": dict(obs.provenance) if obs.provenance is not None else None,
        "text_fingerprint": evidence.text_fingerprint(obs.text),
        "sha256": evidence.record_sha256(canonical),
    }
