"""Until when a form holds the place of a Teams ticket card's message.

On Teams the card's **Close** and **Escalate** are Action.Execute buttons whose answer, the
form, replaces the card's message; a refresh of the card delivered meanwhile overwrote the
form while the technician was typing in it. The time the form is kept there is stored with
the ticket, so the outbox holds the card's refreshes until it (handlers.notify). Existing
tickets: none (NULL).

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "tickets", sa.Column("card_form_until", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    # Not a batch (SQLite's table copy): ALTER TABLE ... DROP COLUMN, SQLite 3.35 and later.
    op.drop_column("tickets", "card_form_until")
