"""Evidence a court accepts (#14): markers of uninvolved observations.

``seen_items`` remembers an observation that involved nobody as a hash only, so that
dedup still works without keeping other people's words.

Revision ID: evidence_0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "evidence_0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "seen_items",
        sa.Column("marker", sa.String(length=64), nullable=False),
        sa.Column("seen_on", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("marker", name=op.f("pk_seen_items")),
    )


def downgrade() -> None:
    op.drop_table("seen_items")
