"""The web view's access log: every view of evidence content (#17).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "content_access",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("case_id", sa.String(length=100), nullable=False),
        sa.Column("violation_id", sa.String(length=36), nullable=True),
        sa.Column("evidence_seq", sa.BigInteger(), nullable=True),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_content_access")),
    )
    op.create_index("ix_content_access_case", "content_access", ["case_id", "at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_content_access_case", table_name="content_access")
    op.drop_table("content_access")
