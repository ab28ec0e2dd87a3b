"""One violation whole, for ``nocontact show ID``: the timeline record with every
evidence item, its dismissal if any, and every alert with each delivery attempt."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.access_log import ContentView, content_views
from service.deletions import deletions
from service.evidence import format_time
from service.marks import Dismissal, dismissals
from service.models import DeliveryAttempt, OutboxAlert, Violation
from service.timeline import ViolationEntry, iter_entries

MIN_PREFIX = 4


class ViolationNotFound(Exception):
    """No violation, or more than one, answers to the id given; one line for the user."""


@dataclasses.dataclass(frozen=True, slots=True)
class Delivery:
    route: str
    state: str
    created_at: datetime
    sent_at: datetime | None
    last_error: str | None
    attempts: tuple[tuple[datetime, str, bool, str | None], ...]  # at, target, ok, error

    def to_json(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "state": self.state,
            "queued_at": format_time(self.created_at),
            "sent_at": format_time(self.sent_at),
            "last_error": self.last_error,
            "attempts": [
                {"at": format_time(at), "target": target, "ok": ok, "error": error}
                for at, target, ok, error in self.attempts
            ],
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Deletion:
    """An item of the violation found gone (service.deletions): when, in which window."""

    platform: str
    native_id: str
    outcome: str  # deleted (by its author) | removed (by a moderator or the site)
    detail: str
    deleted_at: str
    deleted_between: tuple[str, str]
    seq: int  # its chain record

    def to_json(self) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "native_id": self.native_id,
            "outcome": self.outcome,
            "detail": self.detail,
            "deleted_at": self.deleted_at,
            "deleted_between": list(self.deleted_between),
            "chain_record": self.seq,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Detail:
    entry: ViolationEntry
    dismissal: Dismissal | None
    deliveries: tuple[Delivery, ...]
    # Who saw its content through the web view (service.access_log), oldest first.
    content_views: tuple[ContentView, ...] = ()
    deletions: tuple[Deletion, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            **self.entry.to_json(),
            "dismissed": self.dismissal.to_json() if self.dismissal else None,
            "alerts": [delivery.to_json() for delivery in self.deliveries],
            "content_views": [view.to_json() for view in self.content_views],
            "deletions": [deletion.to_json() for deletion in self.deletions],
        }


def resolve_id(session: Session, given: str) -> str:
    """The full id of the violation whose id is ``given`` or starts with it."""
    given = given.strip().lower()
    if len(given) < MIN_PREFIX:
        raise ViolationNotFound(f"give at least {MIN_PREFIX} characters of the violation id")
    found = list(
        session.scalars(select(Violation.id).where(Violation.id.startswith(given)).limit(5))
    )
    if not found:
        raise ViolationNotFound(
            f"no violation id starts with {given!r}; `nocontact timeline --all` lists them"
        )
    if len(found) > 1:
        raise ViolationNotFound(
            f"{given!r} is the start of {len(found)} violation ids; give more characters"
        )
    return found[0]


def violation_detail(session: Session, violation_id: str) -> Detail:
    violation = session.get(Violation, violation_id)
    if violation is None:
        raise ViolationNotFound(f"no violation {violation_id!r}")
    # The pager is the one reader of timeline records (a case's pages, then this one).
    entry = next(
        e
        for e in iter_entries(session, case_id=violation.case_id, include_outside=True)
        if e.id == violation_id
    )
    return Detail(
        entry=entry,
        dismissal=dismissals(session, [violation_id]).get(violation_id),
        deliveries=tuple(_deliveries(session, violation_id)),
        content_views=tuple(content_views(session, violation_id)),
        deletions=_deletions(session, entry),
    )


def _deletions(session: Session, entry: ViolationEntry) -> tuple[Deletion, ...]:
    keys = list(dict.fromkeys((item.platform, item.native_id) for item in entry.evidence))
    gone = deletions(session, keys)
    return tuple(
        Deletion(
            platform,
            native_id,
            fact["outcome"],
            fact["detail"],
            fact["deleted_at"],
            (fact["deleted_between"][0], fact["deleted_between"][1]),
            fact["seq"],
        )
        for platform, native_id in keys
        if (fact := gone.get((platform, native_id))) is not None
    )


def _deliveries(session: Session, violation_id: str) -> list[Delivery]:
    rows = session.scalars(
        select(OutboxAlert).where(OutboxAlert.violation_id == violation_id).order_by(OutboxAlert.id)
    ).all()
    result = []
    for row in rows:
        attempts = session.execute(
            select(
                DeliveryAttempt.attempted_at,
                DeliveryAttempt.target,
                DeliveryAttempt.ok,
                DeliveryAttempt.error,
            )
            .where(DeliveryAttempt.outbox_id == row.id)
            .order_by(DeliveryAttempt.id)
        ).all()
        result.append(
            Delivery(
                row.route,
                row.state,
                row.created_at,
                row.sent_at,
                row.last_error,
                tuple((a[0], a[1], a[2], a[3]) for a in attempts),
            )
        )
    return result
