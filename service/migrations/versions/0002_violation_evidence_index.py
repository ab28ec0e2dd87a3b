"""Index violation_evidence.evidence_id.

The same-text join (one post seen through two sources) looks up the violation of a
piece of evidence; the primary key leads with violation_id, so without this index
that lookup scanned every link.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index(
        "ix_violation_evidence_evidence_id", "violation_evidence", ["evidence_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_violation_evidence_evidence_id", table_name="violation_evidence")
