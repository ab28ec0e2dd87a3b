"""Dismissals: a false positive is marked, never deleted.

``nocontact dismiss ID --reason TEXT`` appends a record to the hash chain (platform
``nocontact``, kind ``dismissal``; ``undismiss`` appends kind ``undismissal``): who, when
and why are in the chain like any evidence, so ``verify`` covers them and nothing about
the violation itself changes. The newest mark of a violation decides whether it is
dismissed. The store writes the record (``Store.record_mark``); this module reads them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.evidence import format_time
from service.models import Evidence

MARK_PLATFORM = "nocontact"
MARK_WATCHER = "nocontact"
MarkKind = Literal["dismissal", "undismissal"]


def mark_native_id(violation_id: str) -> str:
    return f"violation:{violation_id}"


def mark_payload(violation_id: str, kind: MarkKind, reason: str, by: str, at: datetime) -> bytes:
    """The raw payload of a mark: what was decided, as JSON (hashed like any raw)."""
    document = {
        "action": kind,
        "violation_id": violation_id,
        "reason": reason,
        "by": by,
        "at": format_time(at),
    }
    return json.dumps(document, ensure_ascii=False, sort_keys=True).encode("utf-8")


@dataclasses.dataclass(frozen=True, slots=True)
class Dismissal:
    violation_id: str
    reason: str
    by: str
    at: datetime
    seq: int

    def to_json(self) -> dict[str, Any]:
        return {"reason": self.reason, "by": self.by, "at": format_time(self.at), "seq": self.seq}


def dismissals(
    session: Session, violation_ids: Iterable[str] | None = None
) -> dict[str, Dismissal]:
    """The violations whose newest mark is a dismissal, by violation id."""
    query = (
        select(Evidence.native_id, Evidence.kind, Evidence.text, Evidence.author_handle,
               Evidence.captured_at, Evidence.seq)
        .where(Evidence.platform == MARK_PLATFORM)
        .order_by(Evidence.seq)
    )  # fmt: skip
    if violation_ids is not None:
        query = query.where(Evidence.native_id.in_([mark_native_id(v) for v in violation_ids]))
    newest: dict[str, Dismissal | None] = {}
    for native_id, kind, reason, by, at, seq in session.execute(query):
        violation_id = native_id.removeprefix("violation:")
        newest[violation_id] = (
            Dismissal(violation_id, reason, by or "", at, seq) if kind == "dismissal" else None
        )
    return {key: value for key, value in newest.items() if value is not None}
