"""The store's tables (SQLAlchemy 2.0 typed ORM). Migrations live in ``service/migrations``.

Nothing here is ever deleted or overwritten by the service: an edit of a platform item
is a new ``Evidence`` version, a failed delivery is a new ``DeliveryAttempt``.
All datetimes are stored as aware UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite forgets the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use aware UTC datetimes")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime,
        dict[str, Any]: JSON,
        list[str]: JSON,
    }


class Case(Base):
    """A case as last loaded from config (config is the source of truth)."""

    __tablename__ = "cases"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    reference: Mapped[str | None] = mapped_column(String(200))
    effective: Mapped[date] = mapped_column(Date)
    expires: Mapped[date | None] = mapped_column(Date)
    # The case's config (parties, handles, terms) as JSON, for the export cover.
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime]


class WatcherState(Base):
    __tablename__ = "watcher_state"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    type: Mapped[str] = mapped_column(String(50))
    cursor: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    last_poll_at: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None]
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    # Set after an auth error: not polled again until the config changes.
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    # Whether the "watcher is failing" alert went out for the current failure run.
    failing_alerted: Mapped[bool] = mapped_column(Boolean, default=False)
    status_notes: Mapped[list[str]] = mapped_column(JSON, default=list)


class ChainHead(Base):
    """One row (id=1): the newest chain position and hash. Appending evidence locks
    it, so that concurrent replicas append one after another."""

    __tablename__ = "chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    chain_sha256: Mapped[str] = mapped_column(String(64))


class Evidence(Base):
    """One version of one platform item, exactly as captured, in the hash chain."""

    __tablename__ = "evidence"
    __table_args__ = (
        UniqueConstraint(
            "platform", "native_id", "content_sha256", name="uq_evidence_item_content"
        ),
        UniqueConstraint("platform", "native_id", "version", name="uq_evidence_item_version"),
        Index("ix_evidence_text_fingerprint", "text_fingerprint"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    # Position in the hash chain, 1-based, gap-free.
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    platform: Mapped[str] = mapped_column(String(50))
    native_id: Mapped[str] = mapped_column(String(500))
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(30))
    url: Mapped[str | None] = mapped_column(Text)
    author_handle: Mapped[str | None] = mapped_column(String(300))
    author_id: Mapped[str | None] = mapped_column(String(300))
    author_display_name: Mapped[str | None] = mapped_column(Text)
    author_created_at: Mapped[datetime | None]
    addressed_to: Mapped[list[str]] = mapped_column(JSON, default=list)
    text: Mapped[str] = mapped_column(Text)
    posted_at: Mapped[datetime | None]
    captured_at: Mapped[datetime]
    watcher: Mapped[str] = mapped_column(String(100))
    capture_method: Mapped[str] = mapped_column(Text, default="")
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    raw_content_type: Mapped[str] = mapped_column(String(100))
    # Facts checked at capture (an e-mail's DKIM verdicts and key records); not hashed:
    # the raw payload is, and the key records let anyone re-check the verdict.
    provenance: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    raw_sha256: Mapped[str] = mapped_column(String(64))
    # Dedup key for versions: hash of what the platform says (not of capture time).
    content_sha256: Mapped[str] = mapped_column(String(64))
    # Normalised-text hash: the same post seen through two sources shares it.
    text_fingerprint: Mapped[str] = mapped_column(String(64))
    # SHA-256 over the canonical form (docs/evidence.md) and the chain hash.
    sha256: Mapped[str] = mapped_column(String(64))
    chain_sha256: Mapped[str] = mapped_column(String(64))


class Violation(Base):
    __tablename__ = "violations"
    __table_args__ = (Index("ix_violations_case_author", "case_id", "author_key", "last_seen"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"))
    kind: Mapped[str] = mapped_column(String(30))
    severity: Mapped[str] = mapped_column(String(10))
    suspected: Mapped[bool] = mapped_column(Boolean, default=False)
    score: Mapped[float | None]
    reason: Mapped[str] = mapped_column(Text)
    # Normalised author, for grouping hits of one author into one violation.
    author_key: Mapped[str] = mapped_column(String(300))
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]
    created_at: Mapped[datetime]
    # False for hits before the order took effect or after it expired: kept, shown
    # with ``timeline --all``, never alerted.
    in_order_period: Mapped[bool] = mapped_column(Boolean, default=True)

    evidence_links: Mapped[list[ViolationEvidence]] = relationship(
        back_populates="violation", order_by="ViolationEvidence.evidence_id"
    )


class ViolationEvidence(Base):
    __tablename__ = "violation_evidence"

    violation_id: Mapped[str] = mapped_column(ForeignKey("violations.id"), primary_key=True)
    # Indexed on its own: finding the violation of a piece of evidence (same post seen
    # through another source) must not scan every link of a large store.
    evidence_id: Mapped[int] = mapped_column(
        ForeignKey("evidence.id"), primary_key=True, index=True
    )
    reason: Mapped[str] = mapped_column(Text)

    violation: Mapped[Violation] = relationship(back_populates="evidence_links")
    evidence: Mapped[Evidence] = relationship()


class OutboxAlert(Base):
    """One alert to one route. ``dedup_key`` makes it exactly one per (violation,
    route) and one per watcher-health event per route."""

    __tablename__ = "alert_outbox"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(300), unique=True)
    route: Mapped[str] = mapped_column(String(100))
    category: Mapped[str] = mapped_column(String(20))  # violation | health | test
    violation_id: Mapped[str | None] = mapped_column(ForeignKey("violations.id"))
    severity: Mapped[str] = mapped_column(String(10))
    # Pre-rendered text for health/test alerts; violation alerts render at send time
    # so that evidence grouped in during group_wait is included.
    title: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    due_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(10), default="pending")  # pending | sent
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    # The dispatcher ("host:pid") holding the row's lease; None when unclaimed. A claim
    # of a process that is gone is taken over at once, not after the lease.
    claimed_by: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (Index("ix_alert_outbox_pending", "state", "next_attempt_at"),)


class DeliveryAttempt(Base):
    """Every attempt at every target of a route, with the target's URL masked."""

    __tablename__ = "delivery_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    outbox_id: Mapped[int] = mapped_column(ForeignKey("alert_outbox.id"), index=True)
    # SHA-256 of the full target URL: identifies the target without storing secrets.
    target_key: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(Text)  # masked URL, safe to show
    attempted_at: Mapped[datetime]
    ok: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(Text)
    # The notification this row went out in: attempts sharing it were one message
    # (a flood or quiet-hours fold lists which alerts it carried).
    message: Mapped[str | None] = mapped_column(String(36), index=True)


class Heartbeat(Base):
    """Written by a running service so that ``status --health`` can tell it is alive."""

    __tablename__ = "heartbeat"

    instance: Mapped[str] = mapped_column(String(200), primary_key=True)
    beat_at: Mapped[datetime]
    started_at: Mapped[datetime]


class WatcherLease(Base):
    """Which replica polls a watcher: the holder renews it at each poll; another replica
    takes it over once ``until`` has passed (the holder died or stopped)."""

    __tablename__ = "watcher_leases"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    until: Mapped[datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class SeenItem(Base):
    """An observation that involved nobody of any case, remembered only as a hash of
    (platform, native id, authored content) so that it is not matched again at every
    poll. Nothing it said, nor who said it, is kept: evidence holds the case, not the
    world (DESIGN principle 9)."""

    __tablename__ = "seen_items"

    marker: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The day it was first seen, for pruning old markers one day; no finer time.
    seen_on: Mapped[date] = mapped_column(Date)


class ChainRecord(Base):
    """A record in the hash chain that is not a platform item: a trusted timestamp of
    the chain head, a period of monitoring coverage, the outcome of a re-check. It
    shares ``seq`` and the chain with ``Evidence``; its canonical form is in
    docs/evidence.md ("Other chain records")."""

    __tablename__ = "chain_records"
    __table_args__ = (Index("ix_chain_records_record_evidence", "record", "evidence_id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    record: Mapped[str] = mapped_column(String(30))  # timestamp | coverage | recheck
    recorded_at: Mapped[datetime]
    # The record's fields as canonical JSON text, exactly as hashed.
    data: Mapped[str] = mapped_column(Text)
    # A binary the record names by hash (an RFC 3161 response), else None.
    blob: Mapped[bytes | None] = mapped_column(LargeBinary)
    # The evidence item a re-check outcome is about, so a packet discloses only its case's.
    evidence_id: Mapped[int | None] = mapped_column(ForeignKey("evidence.id"))
    sha256: Mapped[str] = mapped_column(String(64))
    chain_sha256: Mapped[str] = mapped_column(String(64))


class CoverageState(Base):
    """The open monitoring period of one watcher (service.coverage). Closed periods
    and gaps are chain records of kind ``coverage``; this row is only the part not
    yet written to the chain."""

    __tablename__ = "coverage_state"

    watcher: Mapped[str] = mapped_column(String(100), primary_key=True)
    period_start: Mapped[datetime]
    last_success: Mapped[datetime]
    # The first error since the last successful poll: the reason of a gap, if one opens.
    gap_reason: Mapped[str | None] = mapped_column(Text)
    # The cases the watcher serves, as shown in its coverage records.
    cases: Mapped[list[str]] = mapped_column(JSON, default=list)


class ContentAccess(Base):
    """Who saw evidence content through the web view, and when (#17): every text
    revealed, raw payload downloaded and packet exported. Appended to, never changed."""

    __tablename__ = "content_access"
    __table_args__ = (Index("ix_content_access_case", "case_id", "at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime]
    username: Mapped[str] = mapped_column(String(100))
    case_id: Mapped[str] = mapped_column(String(100))
    violation_id: Mapped[str | None] = mapped_column(String(36))
    evidence_seq: Mapped[int | None] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(20))  # text | raw | export
