"""Recompute the error signatures stored before the sign-in page's codes were read.

Tickets stored earlier keep what the older rules read: the Entra sign-in page's 'Error Code:
53003' as error:53003 instead of aadsts:53003 (and 500121 not at all), the first group of its
GUIDs as hex codes (hex:0xd3590ed6, Office's app id, on every Office sign-in failure), HTTP
200/302 as http:200, 'zip code 10001' as error:10001, 'code 401' as error:401. The signature
backfill only fills tickets that have none, so this revision reads every ticket's error text
and summary again and keeps its rows in step with what a new ticket gets: rows no longer
read are deleted, new ones added, the rest left alone (a ticket's resolution, diagnosis row
and card are not touched).

The rules are the running release's (handlers.diagnosis.rules), which is what new tickets are
compared with.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

BATCH = 500


def upgrade() -> None:
    from handlers.diagnosis.rules import signatures

    conn = op.get_bind()
    tickets = sa.table(
        "tickets",
        sa.column("id", sa.Integer),
        sa.column("error_text", sa.Text),
        sa.column("summary", sa.Text),
    )
    stored = sa.table(
        "ticket_signatures",
        sa.column("ticket_id", sa.Integer),
        sa.column("signature", sa.String),
    )
    after = 0
    while True:
        rows = conn.execute(
            sa.select(tickets.c.id, tickets.c.error_text, tickets.c.summary)
            .where(tickets.c.id > after)
            .order_by(tickets.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        after = rows[-1][0]
        had: dict[int, set[str]] = {}
        for ticket_id, key in conn.execute(
            sa.select(stored.c.ticket_id, stored.c.signature).where(
                stored.c.ticket_id.in_([r[0] for r in rows])
            )
        ):
            had.setdefault(ticket_id, set()).add(key)
        # Each batch's changes go in one delete and one insert (executemany): a statement per
        # ticket made PostgreSQL's upgrade of a large database wait on round trips.
        gone: list[dict[str, object]] = []
        added: list[dict[str, object]] = []
        for ticket_id, error_text, summary in rows:
            found = signatures(error_text or "", summary=summary or "")
            keys = list(dict.fromkeys(s.key for s in found))
            old = had.get(ticket_id, set())
            gone += [{"t": ticket_id, "s": k} for k in sorted(old - set(keys))]
            added += [{"ticket_id": ticket_id, "signature": k} for k in keys if k not in old]
        if gone:
            conn.execute(
                stored.delete().where(
                    stored.c.ticket_id == sa.bindparam("t"), stored.c.signature == sa.bindparam("s")
                ),
                gone,
            )
        if added:
            conn.execute(stored.insert(), added)


def downgrade() -> None:
    """Nothing to put back: the rows replaced said something untrue."""
