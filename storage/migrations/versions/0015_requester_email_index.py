"""An index for `mine` over the tickets whose requester is on file by e-mail.

A requester the directory knew by no chat id when the ticket was opened (or a ticket opened
while the directory could not be reached) is on file by e-mail; `mine` looks those up by the
caller's directory e-mail in any case, one index range scan like the other roles.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_tickets_requester_email_open",
        "tickets",
        [sa.text("lower(requester_email)"), "status", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_tickets_requester_email_open", table_name="tickets")
