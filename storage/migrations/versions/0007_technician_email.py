"""The technician's e-mail on each ticket: cards name people by name and e-mail, not by id.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        # Tickets opened before this revision keep an empty e-mail (their cards show the name).
        batch.add_column(
            sa.Column("technician_email", sa.String(length=320), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("technician_email")
