"""delivery_log.message: which alerts went out in which notification.

Flood control and quiet hours fold many alerts into one message; every attempt of one
message shares this id, so the notification log says which alerts each carried.

Revision ID: 0004
Revises: 0003 (re-chained after 0003_watcher_leases at the merge into hardening)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("delivery_log") as batch:
        batch.add_column(sa.Column("message", sa.String(length=36), nullable=True))
        batch.create_index("ix_delivery_log_message", ["message"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("delivery_log") as batch:
        batch.drop_index("ix_delivery_log_message")
        batch.drop_column("message")
