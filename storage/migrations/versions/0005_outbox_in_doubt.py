"""Outbox rows whose last attempt may have reached its receiver without being recorded.

Set when a worker's lease ran out before it recorded an attempt (it died, or lost the
database) and when an attempt failed in a way that does not say whether it arrived (a
timeout); a message in doubt is looked up before it is sent again. Cleared on delivery.

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-05 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(
            sa.Column("in_doubt", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("in_doubt")
