"""System of record: the ticket's PSA id and number, where its tier came from, the PSA's state.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(
            sa.Column("tier_source", sa.String(length=16), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column("tier_contract", sa.String(length=200), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column("psa_system", sa.String(length=16), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("psa_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("psa_number", sa.String(length=64), nullable=True))
    op.create_table(
        "psa_state",
        sa.Column("system", sa.String(length=16), primary_key=True),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("auth_failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("auth_error", sa.Text(), nullable=False, server_default=""),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("psa_state")
    with op.batch_alter_table("tickets") as batch:
        for column in ("psa_number", "psa_id", "psa_system", "tier_contract", "tier_source"):
            batch.drop_column(column)
