"""The answer a change gave, kept with its delivery's claim: a redelivery of that delivery
(a Slack retry, a redelivered Teams activity) is answered with it instead of nothing
(storage.inbound, handlers.dispatch). Ids claimed before: no answer kept (NULL), their
redeliveries answered with nothing, as before.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("inbound_deliveries", sa.Column("answer", sa.Text(), nullable=True))


def downgrade() -> None:
    # Not a batch (SQLite's table copy): ALTER TABLE ... DROP COLUMN, SQLite 3.35 and later.
    op.drop_column("inbound_deliveries", "answer")
