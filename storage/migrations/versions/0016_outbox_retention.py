"""Finished outbox rows are trimmed once old (storage.outbox_retention): when, and an index of
the rows not trimmed yet, by age.

Every row is untrimmed at the upgrade, so the index is built over the whole outbox once (a few
seconds per million rows); from then on it holds only the rows not trimmed yet.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

UNTRIMMED = sa.text("trimmed_at IS NULL")


def upgrade() -> None:
    op.add_column("outbox", sa.Column("trimmed_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_outbox_untrimmed",
        "outbox",
        ["due_at"],
        sqlite_where=UNTRIMMED,
        postgresql_where=UNTRIMMED,
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_untrimmed", table_name="outbox")
    # Not a batch (SQLite's table copy): ALTER TABLE ... DROP COLUMN, SQLite 3.35 and later.
    op.drop_column("outbox", "trimmed_at")
