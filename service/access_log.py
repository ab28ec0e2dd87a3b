"""Who saw evidence content, and when (#17): every text revealed, raw payload downloaded
and packet exported through the web view is a ``ContentAccess`` row. ``show`` and the
evidence packet list them, so that the person protected can tell who has read what."""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.evidence import format_time
from service.models import ContentAccess
from service.timeline import safe_cell

ACCESS_LOG_FILE = "access-log.csv"
_COLUMNS = ("at", "username", "action", "violation_id", "evidence_seq")


def log_access(
    sessions: sessionmaker[Session],
    *,
    at: datetime,
    username: str,
    case_id: str,
    action: str,
    violation_id: str | None = None,
    seqs: Iterable[int | None] = (None,),
) -> None:
    """One row per evidence record seen (``action``: text, raw or export)."""
    with sessions.begin() as session:
        for seq in seqs:
            session.add(
                ContentAccess(
                    at=at,
                    username=username,
                    case_id=case_id,
                    violation_id=violation_id,
                    evidence_seq=seq,
                    action=action,
                )
            )


@dataclasses.dataclass(frozen=True, slots=True)
class ContentView:
    at: datetime
    username: str
    action: str
    evidence_seq: int | None

    def to_json(self) -> dict[str, Any]:
        return {"at": format_time(self.at), "user": self.username, "action": self.action,
                "seq": self.evidence_seq}  # fmt: skip


def content_views(session: Session, violation_id: str) -> list[ContentView]:
    """Who saw this violation's content, oldest first (for ``show``)."""
    rows = session.scalars(
        select(ContentAccess)
        .where(ContentAccess.violation_id == violation_id)
        .order_by(ContentAccess.at, ContentAccess.id)
    )
    return [ContentView(row.at, row.username, row.action, row.evidence_seq) for row in rows]


def access_entries(session: Session, case_id: str) -> list[ContentAccess]:
    """Every view of the case's evidence content, oldest first."""
    return list(
        session.scalars(
            select(ContentAccess)
            .where(ContentAccess.case_id == case_id)
            .order_by(ContentAccess.at, ContentAccess.id)
        )
    )


def access_log(sessions: sessionmaker[Session], case_id: str) -> list[ContentAccess]:
    with sessions() as session:
        return access_entries(session, case_id)


def write_access_log(
    session: Session, case_id: str, out: Path, open_text: Callable[[Path], IO[str]]
) -> bool:
    """``access-log.csv`` of the packet, written only when anyone viewed content."""
    entries = access_entries(session, case_id)
    if not entries:
        return False
    with open_text(out) as handle:
        writer = csv.writer(handle)
        writer.writerow(_COLUMNS)
        for entry in entries:
            row = (format_time(entry.at), entry.username, entry.action, entry.violation_id,
                   entry.evidence_seq)  # fmt: skip
            writer.writerow([safe_cell(value) for value in row])
    return True
