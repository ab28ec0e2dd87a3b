"""The alert outbox's one insert, and the dialect helpers behind exactly-once rows.

Only the planner (``service.planner``) queues alerts, through ``queue_alert``, inside
the transaction of the change it is about; ``service.alerts`` delivers them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy.orm import Session

from service.db import StoreError
from service.models import OutboxAlert


def dialect_insert(session: Session, table: Table) -> Any:
    """An INSERT that supports ``on_conflict_do_*`` on the session's backend."""
    # Each dialect's module is imported here, by the backend in use: the other one's
    # (PostgreSQL's is large) stays unloaded (#15).
    name = session.get_bind().dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)
    raise StoreError(f"unsupported database backend {name!r}: use sqlite or postgresql")


def insert_ignore(session: Session, table: Table, values: Mapping[str, Any], key: str) -> bool:
    """Insert a row unless one with the same ``key`` exists; True when inserted."""
    statement = dialect_insert(session, table).values(**values)
    statement = statement.on_conflict_do_nothing(index_elements=[key]).returning(table.c[key])
    # RETURNING, not rowcount: drivers disagree on rowcount for INSERT … ON CONFLICT.
    return session.connection().execute(statement).first() is not None


def queue_alert(
    session: Session,
    *,
    dedup_key: str,
    route: str,
    category: str,
    severity: str,
    now: datetime,
    due_at: datetime,
    title: str | None = None,
    body: str | None = None,
    violation_id: str | None = None,
) -> bool:
    """Queue one alert unless an alert with ``dedup_key`` was ever queued (exactly-once
    per key, across replicas and restarts). Returns True when a row was added."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("the outbox needs aware UTC datetimes, got a naive one")
    # Unflushed violations must reach the database before an alert refers to them.
    session.flush()
    return insert_ignore(
        session,
        OutboxAlert.__table__,  # type: ignore[arg-type]
        {
            "dedup_key": dedup_key,
            "route": route,
            "category": category,
            "violation_id": violation_id,
            "severity": severity,
            "title": title,
            "body": body,
            "created_at": now,
            "due_at": due_at,
            "next_attempt_at": due_at,
            "attempts": 0,
            "state": "pending",
        },
        "dedup_key",
    )
