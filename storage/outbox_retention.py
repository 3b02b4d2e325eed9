"""What is kept of a finished outbox row, and for how long (bot.retention runs it).

A row's payload is what was sent (whole rendered cards, DMs, pages: a few KB). Once the row is
finished (delivered, dead or cancelled), what still reads it is:
- `ticket show` and its PSA lines (`outbox.states_for`): kind, the payload's `purpose` and
  `ticket_card`, status, attempts, last_error, due_at, whether it is claimed, the result's
  `went_without`;
- its dedup key: queuing the key again is refused (`outbox.enqueue`), and that is what stops
  a second survey, page, notice, nudge, SLA warning or report of the same cause, ever;
- an edit of the message it posted: a notice update (or a page's resolve) queued `after` it
  copies the result's `channel`, `ts` and `activity_id`; retiring the buttons of an identity
  or `confirm` DM reads the same;
- the ticket's next PSA write (status and due_at of the write before it) and a PSA write
  looking for its create (kind and status).
The rest of the payload (where a notice went, what a page said) is read only while its ticket
is open: raising to P1, filing under it, closing it. A ticket card's message and thread are
kept on the ticket itself. Closing is final, so once a ticket has been closed for KEEP and a
row of it finished KEEP ago, nothing reads more of the row than the above.

`trim` then keeps exactly that: every column (the dedup key, status, attempts, last_error,
times, ...), the payload's KEPT_PAYLOAD keys and the result's KEPT_RESULT keys; the rest of the
payload and result and the last worker's name go. A row with no ticket and no dedup key (an
answer sent again after throttling, a queue notice about no ticket) is read by nothing once
finished: `delete_orphans` removes it KEEP after it finished. Rows of open tickets, rows not
finished (pending or claimed) and rows in doubt are never touched; a row with a dedup key is
never deleted.

Both are one statement over at most `limit` rows, oldest first: the caller commits, so a
batch holds its locks only that long. Rows another process is trimming are skipped, not waited
for (PostgreSQL; SQLite has one writer at a time).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    delete,
    false,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from storage import statements
from storage.models import OutboxMessage, Ticket, UtcDateTime

# How long a finished row is kept whole: after it finished, and after its ticket was closed.
KEEP = timedelta(days=30)
KEPT_PAYLOAD = ("purpose", "ticket_card")
# Where a posted message is (for its edits), and what a PSA write went without (`show`).
KEPT_RESULT = ("channel", "ts", "activity_id", "went_without")
# The first batch's lower bound (rows are walked by due_at, each batch after the last one).
_START = datetime(1970, 1, 1, tzinfo=UTC)

_OUTBOX = statements.table_of(OutboxMessage)
_TICKETS = statements.table_of(Ticket)
_BEFORE = bindparam("keep_before", type_=UtcDateTime())
_ORPHAN = and_(_OUTBOX.c.ticket_id.is_(None), _OUTBOX.c.dedup_key.is_(None))
# A row of no ticket, or of one closed before `keep_before`. A join, not EXISTS: PostgreSQL
# would hash every closed ticket for the EXISTS of an OR, on every batch.
_WITH_TICKET = _OUTBOX.outerjoin(_TICKETS, _TICKETS.c.id == _OUTBOX.c.ticket_id)
_NO_TICKET_OR_CLOSED = or_(
    _OUTBOX.c.ticket_id.is_(None),
    and_(_TICKETS.c.status == "closed", _TICKETS.c.closed_at < _BEFORE),
)


def _oldest(source: Any, *which: Any) -> Any:
    """Ids of finished rows not trimmed yet, finished before `keep_before`, from `from_due` on,
    oldest first: ix_outbox_untrimmed in its order, `batch_limit` rows at most."""
    return (
        select(_OUTBOX.c.id)
        .select_from(source)
        .where(
            _OUTBOX.c.trimmed_at.is_(None),
            _OUTBOX.c.due_at < _BEFORE,
            _OUTBOX.c.due_at >= bindparam("from_due", type_=UtcDateTime()),
            # Every status but pending is final. Said so, not as an IN of them: with the IN,
            # SQLite walks ix_outbox_due, which holds every trimmed row too.
            _OUTBOX.c.status != "pending",
            _OUTBOX.c.claimed_until.is_(None),
            _OUTBOX.c.in_doubt == false(),
            _OUTBOX.c.delivered_at.is_(None) | (_OUTBOX.c.delivered_at < _BEFORE),
            *which,
        )
        .order_by(_OUTBOX.c.due_at)
        .limit(bindparam("batch_limit"))
        .with_for_update(skip_locked=True, of=_OUTBOX)
    )


def _quoted(text: str) -> Any:
    return literal_column("'" + text.replace("'", "''") + "'")


def _kept(dialect: str, column: Any, keys: tuple[str, ...]) -> Any:
    """The JSON object of `column`'s `keys` that are set (none set: `{}`), in SQL."""
    if dialect == "postgresql":
        pairs = [part for k in keys for part in (_quoted(k), column.op("->")(_quoted(k)))]
        return func.json_strip_nulls(func.json_build_object(*pairs))
    # SQLite: a merge patch drops the keys whose value is null.
    pairs = [p for k in keys for p in (_quoted(k), func.json_extract(column, _quoted(f"$.{k}")))]
    return func.json_patch(_quoted("{}"), func.json_object(*pairs))


_BUILT: dict[tuple[str, str], Any] = {}


def _trim_statement(dialect: str) -> Any:
    stmt = _BUILT.get(("trim", dialect))
    if stmt is None:
        rows = _oldest(_WITH_TICKET, ~_ORPHAN, _NO_TICKET_OR_CLOSED)
        stmt = _BUILT["trim", dialect] = (
            update(_OUTBOX)
            .where(_OUTBOX.c.id.in_(rows.scalar_subquery()))
            .values(
                payload=_kept(dialect, _OUTBOX.c.payload, KEPT_PAYLOAD),
                result=_kept(dialect, _OUTBOX.c.result, KEPT_RESULT),
                claimed_by=None,
                trimmed_at=bindparam("trim_at", type_=UtcDateTime()),
            )
            .returning(_OUTBOX.c.due_at)
        )
    return stmt


_DELETE = (
    delete(_OUTBOX)
    .where(_OUTBOX.c.id.in_(_oldest(_OUTBOX, _ORPHAN).scalar_subquery()))
    .returning(_OUTBOX.c.due_at)
)


@dataclass
class Cursor:
    """Where a run has got to: each batch goes on after the last one's rows (rows it passed
    over, of open tickets, are not walked again in the same run)."""

    trim_from: datetime = _START
    delete_from: datetime = _START


async def trim(
    conn: AsyncConnection, *, before: datetime, limit: int, cursor: Cursor, now: datetime
) -> int:
    """Trim at most `limit` rows finished before `before` (of tickets closed before it, or of
    none); how many were."""
    stmt = _trim_statement(conn.dialect.name)
    found = await conn.execute(
        stmt,
        {"keep_before": before, "from_due": cursor.trim_from, "batch_limit": limit, "trim_at": now},
    )
    due = [row[0] for row in found]
    if due:
        cursor.trim_from = max(due)
    return len(due)


async def delete_orphans(
    conn: AsyncConnection, *, before: datetime, limit: int, cursor: Cursor
) -> int:
    """Delete at most `limit` rows of no ticket and no dedup key finished before `before`;
    how many went."""
    found = await conn.execute(
        _DELETE, {"keep_before": before, "from_due": cursor.delete_from, "batch_limit": limit}
    )
    due = [row[0] for row in found]
    if due:
        cursor.delete_from = max(due)
    return len(due)
