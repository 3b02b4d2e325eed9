"""Where each ticket's card message is, so the card can be refreshed (closed: no buttons).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 01:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("card_channel", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("card_message", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("card_message")
        batch.drop_column("card_channel")
