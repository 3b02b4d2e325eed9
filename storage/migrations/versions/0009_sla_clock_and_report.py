"""The SLA clock (first response, met/missed per target) and what `report` aggregates.

Tickets get their first response (when, who, which channel), the outcome of each target, and
the figures the QBR report reads from the ticket row alone (seconds to first response and to
resolution, minutes logged, CSAT answer and survey sent, fix confirmed), with the indexes its
queries walk. Existing tickets are filled in from what was recorded: the first technician
action in the audit trail (time logged, escalated, raised to P1, closed), their time entries,
their survey and its delivery.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 20:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# Audit events that were a technician working the ticket (SPEC "SLA clock": a card button,
# `time`, `verify`, `escalate`, `p1`, `close`); before this revision only these left a trace.
FIRST_RESPONSE_EVENTS = (
    "('time.logged', 'ticket.escalated', 'ticket.priority_raised', 'ticket.closed')"
)
REPORT_COLUMNS = [
    "priority",
    "category",
    "resolution_category",
    "client",
    "created_at",
    "status",
    "respond_met",
    "resolve_met",
    "respond_by",
    "resolve_by",
    "time_minutes",
    "csat_rating",
    "csat_sent_at",
    "fix_confirmed_at",
]


def _seconds(later: str, earlier: str) -> str:
    """Whole seconds between two timestamp columns, in this database's SQL."""
    if op.get_bind().dialect.name == "postgresql":
        return f"CAST(FLOOR(EXTRACT(EPOCH FROM ({later} - {earlier}))) AS INTEGER)"
    return f"CAST((julianday({later}) - julianday({earlier})) * 86400 + 0.0005 AS INTEGER)"


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("first_response_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("first_response_by", sa.String(255), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column("first_response_channel", sa.String(255), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("respond_met", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("resolve_met", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("first_response_seconds", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("resolution_seconds", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("time_minutes", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("csat_rating", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("csat_sent_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("fix_confirmed_at", sa.DateTime(timezone=True), nullable=True))

    def first(value: str) -> str:
        return (
            f"(SELECT {value} FROM ticket_events e WHERE e.ticket_id = tickets.id "
            f"AND e.kind IN {FIRST_RESPONSE_EVENTS} ORDER BY e.at, e.id LIMIT 1)"
        )

    channel = (
        "CASE WHEN e.channel = '' THEN e.actor_platform "
        "ELSE e.actor_platform || ':' || e.channel END"
    )
    op.execute(
        "UPDATE tickets SET "
        f"first_response_at = {first('e.at')}, "
        f"first_response_by = COALESCE({first('e.actor_id')}, ''), "
        f"first_response_channel = COALESCE({first(channel)}, '')"
    )
    op.execute(
        "UPDATE tickets SET "
        "time_minutes = (SELECT COALESCE(SUM(t.minutes), 0) FROM time_entries t "
        "WHERE t.ticket_id = tickets.id), "
        "csat_rating = (SELECT s.rating FROM csat_surveys s WHERE s.ticket_id = tickets.id), "
        "csat_sent_at = (SELECT o.delivered_at FROM outbox o "
        "WHERE o.dedup_key = 'csat-survey:' || CAST(tickets.id AS VARCHAR(20)) "
        "AND o.status = 'delivered')"
    )
    op.execute(
        "UPDATE tickets SET "
        "respond_met = (first_response_at <= respond_by), "
        f"first_response_seconds = {_seconds('first_response_at', 'created_at')} "
        "WHERE first_response_at IS NOT NULL"
    )
    op.execute(
        "UPDATE tickets SET "
        "resolve_met = (closed_at <= resolve_by), "
        f"resolution_seconds = {_seconds('closed_at', 'created_at')} "
        "WHERE closed_at IS NOT NULL"
    )
    op.create_index("ix_tickets_report", "tickets", REPORT_COLUMNS)
    op.create_index(
        "ix_tickets_first_response", "tickets", ["first_response_seconds", "created_at", "client"]
    )
    op.create_index(
        "ix_tickets_resolution", "tickets", ["resolution_seconds", "created_at", "client"]
    )


def downgrade() -> None:
    for name in (
        "ix_tickets_resolution",
        "ix_tickets_first_response",
        "ix_tickets_report",
    ):
        op.drop_index(name, table_name="tickets")
    with op.batch_alter_table("tickets") as batch:
        for column in (
            "fix_confirmed_at",
            "csat_sent_at",
            "csat_rating",
            "time_minutes",
            "resolution_seconds",
            "first_response_seconds",
            "resolve_met",
            "respond_met",
            "first_response_channel",
            "first_response_by",
            "first_response_at",
        ):
            batch.drop_column(column)
