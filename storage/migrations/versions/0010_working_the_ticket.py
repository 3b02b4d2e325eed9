"""Working the ticket to the end: fix confirmations, duplicate reports filed under a P1, the
Tier 1 scope, attachments and the remote-session link.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 12:00:00
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Tickets opened before this revision: no scope shown, no link, nothing filed or confirmed.
# (fix_confirmed_at came with 0009: the report counts confirmed fixes.)
_TICKET_COLUMNS: list[sa.Column[Any]] = [
    sa.Column("support_tier", sa.String(length=8), nullable=False, server_default=""),
    sa.Column("remote_url", sa.Text(), nullable=False, server_default=""),
    sa.Column("p1_match", sa.String(length=32), nullable=False, server_default=""),
    sa.Column("filed_under", sa.String(length=32), nullable=True),
    sa.Column("filed_count", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("filed_users", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("fix_state", sa.String(length=16), nullable=False, server_default=""),
    sa.Column("fix_state_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("fix_confirmed_by", sa.String(length=255), nullable=False, server_default=""),
]
_TICKET_INDEXES = {
    "ix_tickets_priority_status": ["priority", "status", "id"],
    "ix_tickets_thread": ["source_thread", "source_channel"],
    "ix_tickets_filed_under": ["filed_under"],
    "ix_tickets_card": ["card_channel", "card_message"],
}


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        for column in _TICKET_COLUMNS:
            batch.add_column(column)
    for name, columns in _TICKET_INDEXES.items():
        op.create_index(name, "tickets", columns)
    op.create_table(
        "fix_confirmations",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("ticket_id", _ID, nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("platform", sa.String(length=8), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("asked_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_by", sa.String(length=255), nullable=True),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("nonce"),
    )
    op.create_index("ix_fix_confirmations_ticket", "fix_confirmations", ["ticket_id"])
    op.create_table(
        "ticket_attachments",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("ticket_id", _ID, nullable=False),
        sa.Column("platform", sa.String(length=8), nullable=False),
        sa.Column("file_key", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("content_type", sa.String(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("actor_id", sa.String(length=255), nullable=False),
        sa.Column("actor_name", sa.String(length=255), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ticket_id", "platform", "file_key", name="uq_ticket_attachments_file"),
    )
    op.create_index("ix_ticket_attachments_ticket", "ticket_attachments", ["ticket_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_ticket_attachments_ticket", table_name="ticket_attachments")
    op.drop_table("ticket_attachments")
    op.drop_index("ix_fix_confirmations_ticket", table_name="fix_confirmations")
    op.drop_table("fix_confirmations")
    for name in _TICKET_INDEXES:
        op.drop_index(name, table_name="tickets")
    with op.batch_alter_table("tickets") as batch:
        for column in reversed(_TICKET_COLUMNS):
            batch.drop_column(column.name)
