"""Evidence a court accepts (#14): markers of uninvolved observations, chain records.

``seen_items`` remembers an observation that involved nobody as a hash only, so that
dedup still works without keeping other people's words. ``chain_records`` holds the
chain's records that are not platform items (trusted timestamps, monitoring coverage,
re-check outcomes); they share ``seq`` and the hash chain with ``evidence``.
``coverage_state`` holds each watcher's monitoring period not yet closed into the chain.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "seen_items",
        sa.Column("marker", sa.String(length=64), nullable=False),
        sa.Column("seen_on", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("marker", name=op.f("pk_seen_items")),
    )
    op.create_table(
        "chain_records",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("record", sa.String(length=30), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("blob", sa.LargeBinary(), nullable=True),
        sa.Column("evidence_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("chain_sha256", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["evidence_id"], ["evidence.id"], name=op.f("fk_chain_records_evidence_id_evidence")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chain_records")),
        sa.UniqueConstraint("seq", name=op.f("uq_chain_records_seq")),
    )
    op.create_index(
        "ix_chain_records_record_evidence", "chain_records", ["record", "evidence_id"], unique=False
    )
    op.create_table(
        "coverage_state",
        sa.Column("watcher", sa.String(length=100), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_success", sa.DateTime(timezone=True), nullable=False),
        sa.Column("gap_reason", sa.Text(), nullable=True),
        sa.Column("cases", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("watcher", name=op.f("pk_coverage_state")),
    )


def downgrade() -> None:
    op.drop_table("coverage_state")
    op.drop_index("ix_chain_records_record_evidence", table_name="chain_records")
    op.drop_table("chain_records")
    op.drop_table("seen_items")
