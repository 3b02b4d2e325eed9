"""Index inbound delivery ids by when they were handled, for the prune of old ones.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 09:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_inbound_deliveries_at", "inbound_deliveries", ["at"])


def downgrade() -> None:
    op.drop_index("ix_inbound_deliveries_at", table_name="inbound_deliveries")
