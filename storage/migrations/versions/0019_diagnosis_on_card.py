"""Whether a ticket's card shows its diagnosis section (similar tickets of every client, KB
articles, the pattern, change hints): only when a technician opened it. A ticket opened by
someone else has its card posted where they typed `/ticket`, and `similar` and `kb`, which
list the same, are for technicians only. The row is kept either way (the pattern's closure
rule, a technician's `show`). Existing tickets: shown, as before.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "ticket_diagnosis",
        sa.Column("on_card", sa.Boolean(), nullable=False, server_default=sa.true()),
    )


def downgrade() -> None:
    # Not a batch (SQLite's table copy): ALTER TABLE ... DROP COLUMN, SQLite 3.35 and later.
    op.drop_column("ticket_diagnosis", "on_card")
