"""Initial schema: cases, watcher state, evidence chain, violations, alert outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-21

Written from ``alembic revision --autogenerate`` against ``service.models`` and
reviewed. Types are spelled out here (not imported from ``service.models``) so that
this revision keeps meaning the same schema when the models change later.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

GENESIS_CHAIN = "0" * 64


def _row_id() -> sa.types.TypeEngine[int]:
    # BIGINT on PostgreSQL; INTEGER on SQLite, where only that aliases the rowid.
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=True),
        sa.Column("effective", sa.Date(), nullable=False),
        sa.Column("expires", sa.Date(), nullable=True),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cases")),
    )
    chain_head = op.create_table(
        "chain_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("chain_sha256", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chain_head")),
    )
    # The one row that every append locks; the chain starts from 64 zeros.
    op.bulk_insert(chain_head, [{"id": 1, "seq": 0, "chain_sha256": GENESIS_CHAIN}])
    op.create_table(
        "evidence",
        sa.Column("id", _row_id(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("platform", sa.String(length=50), nullable=False),
        sa.Column("native_id", sa.String(length=500), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("author_handle", sa.String(length=300), nullable=True),
        sa.Column("author_id", sa.String(length=300), nullable=True),
        sa.Column("author_display_name", sa.Text(), nullable=True),
        sa.Column("author_created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("addressed_to", sa.JSON(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("captured_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("watcher", sa.String(length=100), nullable=False),
        sa.Column("capture_method", sa.Text(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("raw_content_type", sa.String(length=100), nullable=False),
        sa.Column("raw_sha256", sa.String(length=64), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("text_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("chain_sha256", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evidence")),
        sa.UniqueConstraint(
            "platform", "native_id", "content_sha256", name="uq_evidence_item_content"
        ),
        sa.UniqueConstraint("platform", "native_id", "version", name="uq_evidence_item_version"),
        sa.UniqueConstraint("seq", name=op.f("uq_evidence_seq")),
    )
    op.create_index("ix_evidence_text_fingerprint", "evidence", ["text_fingerprint"])
    op.create_table(
        "heartbeat",
        sa.Column("instance", sa.String(length=200), nullable=False),
        sa.Column("beat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("instance", name=op.f("pk_heartbeat")),
    )
    op.create_table(
        "watcher_state",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("type", sa.String(length=50), nullable=False),
        sa.Column("cursor", sa.JSON(), nullable=False),
        sa.Column("last_poll_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("failing_alerted", sa.Boolean(), nullable=False),
        sa.Column("status_notes", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_watcher_state")),
    )
    op.create_table(
        "violations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("case_id", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("severity", sa.String(length=10), nullable=False),
        sa.Column("suspected", sa.Boolean(), nullable=False),
        sa.Column("score", sa.Double(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("author_key", sa.String(length=300), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("in_order_period", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_violations_case_id_cases")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_violations")),
    )
    op.create_index(
        "ix_violations_case_author", "violations", ["case_id", "author_key", "last_seen"]
    )
    op.create_table(
        "alert_outbox",
        sa.Column("id", _row_id(), nullable=False),
        sa.Column("dedup_key", sa.String(length=300), nullable=False),
        sa.Column("route", sa.String(length=100), nullable=False),
        sa.Column("category", sa.String(length=20), nullable=False),
        sa.Column("violation_id", sa.String(length=36), nullable=True),
        sa.Column("severity", sa.String(length=10), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["violation_id"],
            ["violations.id"],
            name=op.f("fk_alert_outbox_violation_id_violations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_outbox")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_alert_outbox_dedup_key")),
    )
    op.create_index("ix_alert_outbox_pending", "alert_outbox", ["state", "next_attempt_at"])
    op.create_table(
        "violation_evidence",
        sa.Column("violation_id", sa.String(length=36), nullable=False),
        sa.Column("evidence_id", _row_id(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["evidence_id"],
            ["evidence.id"],
            name=op.f("fk_violation_evidence_evidence_id_evidence"),
        ),
        sa.ForeignKeyConstraint(
            ["violation_id"],
            ["violations.id"],
            name=op.f("fk_violation_evidence_violation_id_violations"),
        ),
        sa.PrimaryKeyConstraint("violation_id", "evidence_id", name=op.f("pk_violation_evidence")),
    )
    op.create_table(
        "delivery_log",
        sa.Column("id", _row_id(), nullable=False),
        sa.Column("outbox_id", _row_id(), nullable=False),
        sa.Column("target_key", sa.String(length=64), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["outbox_id"],
            ["alert_outbox.id"],
            name=op.f("fk_delivery_log_outbox_id_alert_outbox"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_log")),
    )
    op.create_index(op.f("ix_delivery_log_outbox_id"), "delivery_log", ["outbox_id"])


def downgrade() -> None:
    # Dropping the tables destroys evidence; kept for development databases only.
    op.drop_index(op.f("ix_delivery_log_outbox_id"), table_name="delivery_log")
    op.drop_table("delivery_log")
    op.drop_table("violation_evidence")
    op.drop_index("ix_alert_outbox_pending", table_name="alert_outbox")
    op.drop_table("alert_outbox")
    op.drop_index("ix_violations_case_author", table_name="violations")
    op.drop_table("violations")
    op.drop_table("watcher_state")
    op.drop_table("heartbeat")
    op.drop_index("ix_evidence_text_fingerprint", table_name="evidence")
    op.drop_table("evidence")
    op.drop_table("chain_head")
    op.drop_table("cases")
