"""Evidence provenance: facts checked at capture, kept beside the raw payload.

An e-mail's DKIM/ARC verdicts with the public key records they used, the receiving
server's Authentication-Results and the IMAP INTERNALDATE (issue #11). Nullable: other
platforms have none.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("evidence") as batch:
        batch.add_column(sa.Column("provenance", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("evidence") as batch:
        batch.drop_column("provenance")
