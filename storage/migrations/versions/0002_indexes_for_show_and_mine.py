"""Indexes for `ticket show` (outbox by ticket) and `mine` (open tickets newest first).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 23:21:50
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_outbox_ticket", "outbox", ["ticket_id", "id"])
    for person in ("requester", "technician"):
        op.drop_index(f"ix_tickets_{person}_open", table_name="tickets")
        op.create_index(f"ix_tickets_{person}_open", "tickets", [f"{person}_id", "status", "id"])


def downgrade() -> None:
    for person in ("requester", "technician"):
        op.drop_index(f"ix_tickets_{person}_open", table_name="tickets")
        op.create_index(f"ix_tickets_{person}_open", "tickets", [f"{person}_id", "status"])
    op.drop_index("ix_outbox_ticket", table_name="outbox")
