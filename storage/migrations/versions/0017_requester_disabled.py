"""Whether the requester's account was disabled in the directory when last looked up.

A disabled requester has most likely left: a call in their name asking for a password reset
is a classic social-engineering move. The ticket card and `show` warn about it, so it is kept
with the ticket (set at intake, refreshed by each identity check). Existing tickets: false.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "tickets",
        sa.Column("requester_disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    # Not a batch (SQLite's table copy): ALTER TABLE ... DROP COLUMN, SQLite 3.35 and later.
    op.drop_column("tickets", "requester_disabled")
