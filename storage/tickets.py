"""Ticket repository: numbering, create, look-ups, audit events, inbound de-duplication."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, String, and_, bindparam, case, func, insert, select, union, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached

from storage import inbound, statements
from storage.models import (
    InboundDelivery,
    Ticket,
    TicketCounter,
    TicketDiagnosis,
    TicketEvent,
    TimeEntry,
)

# Hot-path statements are built once (see storage.statements for why) and run on the
# session's connection (Core), not through the ORM unit of work.
_COUNTERS = statements.table_of(TicketCounter)
_TICKETS = statements.table_of(Ticket)
_EVENTS = statements.table_of(TicketEvent)
_BUMP = (
    update(_COUNTERS)
    .where(_COUNTERS.c.prefix == bindparam("counter_prefix"))
    .values(last_value=_COUNTERS.c.last_value + 1)
    .returning(_COUNTERS.c.last_value)
)
_INSERT_TICKET = insert(_TICKETS).returning(_TICKETS.c.id)
_INSERT_EVENT = insert(_EVENTS)
_SET_CARD = (
    update(_TICKETS)
    .where(_TICKETS.c.id == bindparam("ticket_id"))
    .values(card_channel=bindparam("channel"), card_message=bindparam("message"))
)
_SET_CARD_FORM = (
    update(_TICKETS)
    .where(_TICKETS.c.id == bindparam("ticket_id"))
    .values(card_form_until=bindparam("until"))
)
_CLEAR_CARD_FORM = (
    update(_TICKETS)
    .where(_TICKETS.c.id == bindparam("ticket_id"), _TICKETS.c.card_form_until.is_not(None))
    .values(card_form_until=None)
)
_SET_THREAD = (
    update(_TICKETS)
    .where(_TICKETS.c.id == bindparam("ticket_id"), _TICKETS.c.source_thread.is_(None))
    .values(source_thread=bindparam("thread"), source_channel=bindparam("channel"))
)
# Both in one statement (the ticket card's delivery): SET reads the row as it was, so the
# thread is taken only when none was known, as with _SET_THREAD.
_NO_THREAD = _TICKETS.c.source_thread.is_(None)
_SET_CARD_AND_THREAD = (
    update(_TICKETS)
    .where(_TICKETS.c.id == bindparam("ticket_id"))
    .values(
        card_channel=bindparam("channel"),
        card_message=bindparam("message"),
        source_thread=case((_NO_THREAD, bindparam("thread")), else_=_TICKETS.c.source_thread),
        source_channel=case((_NO_THREAD, bindparam("channel")), else_=_TICKETS.c.source_channel),
    )
)


async def next_number(session: AsyncSession, *, prefix: str) -> tuple[int, str]:
    """Reserve the next `<prefix>-<n>`; the UPDATE takes a row/writer lock until commit."""
    conn = await statements.connection(session)
    value = (await conn.execute(_BUMP, {"counter_prefix": prefix})).scalar_one_or_none()
    if value is None:
        await conn.execute(
            statements.insert_new(session, _COUNTERS, "prefix"), {"prefix": prefix, "last_value": 0}
        )
        value = (await conn.execute(_BUMP, {"counter_prefix": prefix})).scalar_one()
    return value, f"{prefix}-{value}"


async def claim_delivery(session: AsyncSession, key: str) -> bool:
    """Record an inbound delivery id; False when it was handled before (a retry).

    Requests routed through `handlers.dispatch` need not call this: their state-changing
    transaction claims the delivery by itself (`storage.inbound`), and then this answers True.
    One INSERT ... ON CONFLICT DO NOTHING: no savepoint, and a concurrent duplicate waits on
    the first one's key (PostgreSQL) instead of failing the transaction.
    """
    conn = await statements.connection(session)
    if inbound.holds(session, key):
        return True
    stmt = statements.insert_new(session, statements.table_of(InboundDelivery), "key")
    inserted = await conn.execute(stmt, {"key": inbound.key_for(key)})
    return inserted.scalar_one_or_none() is not None


def _column_defaults(table: Any) -> dict[str, Callable[[], Any]]:
    """What the model would fill in for each column a caller leaves out."""

    def default_of(column: Any) -> Callable[[], Any]:
        default = column.default
        if default is not None and default.is_scalar:
            return lambda: default.arg
        if default is not None and default.is_callable:
            return lambda: default.arg(None)
        if column.nullable:
            return lambda: None

        def required() -> Any:
            raise TypeError(f"{table.name}.{column.key} needs a value")

        return required

    return {c.key: default_of(c) for c in table.columns if c.key != "id"}


_DEFAULTS = _column_defaults(_TICKETS)


async def create(session: AsyncSession, **fields: Any) -> Ticket:
    """Insert a ticket (one Core statement) and return it as a persistent ORM object.

    Every column is given a value, so the returned object is complete (nothing to lazy-load);
    it joins the session as if loaded, and later changes to it flush as UPDATEs.
    """
    unknown = set(fields) - set(_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown ticket fields: {sorted(unknown)}")
    values = {key: fields[key] if key in fields else make() for key, make in _DEFAULTS.items()}
    conn = await statements.connection(session)
    ticket_id = (await conn.execute(_INSERT_TICKET, values)).scalar_one()
    ticket = Ticket(id=ticket_id, **values)
    make_transient_to_detached(ticket)
    session.add(ticket)
    return ticket


async def set_card(
    session: AsyncSession,
    *,
    ticket_id: int,
    channel: str,
    message: str,
    returning: tuple[str, ...] = (),
) -> Row[Any] | None:
    """Remember where the ticket card message is (to refresh it when the ticket changes).
    `returning`: columns of the ticket as updated, read by the same statement (None when
    there is no such ticket, or no columns were asked for)."""
    conn = await statements.connection(session)
    done = await conn.execute(
        _returning(_SET_CARD, returning),
        {"ticket_id": ticket_id, "channel": channel, "message": message},
    )
    return done.first() if returning else None


async def set_card_form_until(session: AsyncSession, *, ticket_id: int, until: datetime) -> None:
    """A form holds the place of the ticket card's message until `until` (Teams)."""
    conn = await statements.connection(session)
    await conn.execute(_SET_CARD_FORM, {"ticket_id": ticket_id, "until": until})


async def clear_card_form(session: AsyncSession, *, ticket_id: int) -> bool:
    """No form holds the card message's place any longer; True when one did."""
    conn = await statements.connection(session)
    done = await conn.execute(_CLEAR_CARD_FORM, {"ticket_id": ticket_id})
    return bool(done.rowcount)


async def set_card_and_thread(
    session: AsyncSession,
    *,
    ticket_id: int,
    channel: str,
    message: str,
    thread: str,
    returning: tuple[str, ...] = (),
) -> Row[Any] | None:
    """`set_card` and `set_thread` in one UPDATE (`returning` as in `set_card`)."""
    conn = await statements.connection(session)
    done = await conn.execute(
        _returning(_SET_CARD_AND_THREAD, returning),
        {"ticket_id": ticket_id, "channel": channel, "message": message, "thread": thread},
    )
    return done.first() if returning else None


_RETURNING: dict[tuple[int, tuple[str, ...]], Any] = {}


def _returning(stmt: Any, columns: tuple[str, ...]) -> Any:
    """`stmt` with `RETURNING columns`, built once per statement and columns."""
    if not columns:
        return stmt
    key = (id(stmt), columns)
    built = _RETURNING.get(key)
    if built is None:
        built = _RETURNING[key] = stmt.returning(*(_TICKETS.c[name] for name in columns))
    return built


async def set_thread(session: AsyncSession, *, ticket_id: int, channel: str, thread: str) -> None:
    """Remember where the ticket card landed (its thread), unless a thread is known already."""
    conn = await statements.connection(session)
    await conn.execute(_SET_THREAD, {"ticket_id": ticket_id, "channel": channel, "thread": thread})


_BY_NUMBER = select(Ticket).where(Ticket.number == bindparam("number"))
_BY_NUMBER_LOCKED = _BY_NUMBER.with_for_update()


async def get_by_number(session: AsyncSession, number: str, *, lock: bool = False) -> Ticket | None:
    query = _BY_NUMBER_LOCKED if lock else _BY_NUMBER
    found = await session.execute(query, {"number": number.strip().upper()})
    return found.scalar_one_or_none()


async def lock(session: AsyncSession, ticket_id: int) -> None:
    """Take the ticket's row lock (PostgreSQL; SQLite already serialises writers)."""
    if session.bind is not None and session.bind.dialect.name == "sqlite":
        return
    await session.execute(select(Ticket.id).where(Ticket.id == ticket_id).with_for_update())


@dataclass(frozen=True)
class TicketLine:
    """The few columns a ticket list shows (no full ORM rows: `mine` stays cheap)."""

    number: str
    priority: str
    summary: str
    resolve_by: datetime


def on_file_by_email(requester_id: str) -> bool:
    """Whether a ticket's requester is on file by the e-mail given (no chat id was known: the
    id is the address; Slack, Teams and AAD object ids hold no '@'). Only such a ticket is
    matched to a caller by their directory e-mail (`list_open_for`'s `email`)."""
    return "@" in requester_id


def _open_for(limit: int, *, by_email: bool = False, other: bool = False) -> Any:
    """One statement: the union of index range scans (one per role and id, each already
    newest first and limited), rather than an OR the planner answers by sorting every open
    ticket. A requester may be on file by a second id (`alias`: Teams' AAD object id), and
    (`by_email`) by e-mail, compared in any case as ix_tickets_requester_email_open holds it
    (only tickets `on_file_by_email`). `other`: the person's ids on their other platform
    (`other0`, `other1`), as requester or technician."""

    def newest(where: Any) -> Any:
        return (
            select(Ticket.id, Ticket.number, Ticket.priority, Ticket.summary, Ticket.resolve_by)
            .where(where, Ticket.status == "open")
            .order_by(Ticket.id.desc())
            .limit(limit)
            .subquery()
        )

    scans = [
        newest(Ticket.requester_id == bindparam("person")),
        newest(Ticket.requester_id == bindparam("alias")),
        newest(Ticket.technician_id == bindparam("person")),
    ]
    if other:
        for slot in ("other0", "other1"):
            scans.append(newest(Ticket.requester_id == bindparam(slot)))
            scans.append(newest(Ticket.technician_id == bindparam(slot)))
    if by_email:
        scans.append(
            newest(
                and_(
                    func.lower(Ticket.requester_email)
                    == func.lower(bindparam("email", type_=String)),
                    Ticket.requester_id.contains("@", autoescape=True),
                )
            )
        )
    every = union(*(select(scan) for scan in scans)).subquery()
    return select(every).order_by(every.c.id.desc()).limit(limit)


_OPEN_FOR = {
    (limit, by_email, other): _open_for(limit, by_email=by_email, other=other)
    for limit in (25, 26)
    for by_email in (False, True)
    for other in (False, True)
}


async def list_open_for(
    session: AsyncSession,
    *,
    person_id: str,
    limit: int = 25,
    alias: str | None = None,
    email: str = "",
    others: Sequence[str] = (),
) -> list[TicketLine]:
    """Open tickets where the person is the requester or the technician, newest first.
    `alias`: another id the person may be on file as requester by (Teams: the AAD object id
    a directory gave for someone who had no chat with the bot yet). `email`: the person's
    e-mail as the directory gives it, for tickets whose requester is on file by e-mail (any
    case); never an address the person typed. `others`: up to two ids the directory gives
    the same person on their other platform (Slack user id; Teams id and AAD object id), for
    tickets opened or worked there."""
    by_email = bool(email.strip())
    extra = [o for o in others if o and o != person_id][:2]
    key = (limit, by_email, bool(extra))
    query = (
        _OPEN_FOR[key]
        if key in _OPEN_FOR
        else _open_for(limit, by_email=by_email, other=bool(extra))
    )
    slots = (
        {f"other{i}": (extra[i] if i < len(extra) else extra[0]) for i in range(2)} if extra else {}
    )
    conn = await statements.connection(session)
    rows = await conn.execute(
        query,
        {"person": person_id, "alias": alias or person_id, "email": email.strip(), **slots},
    )
    return [TicketLine(r.number, r.priority, r.summary, r.resolve_by) for r in rows]


async def add_event(
    session: AsyncSession,
    *,
    ticket_id: int | None,
    kind: str,
    actor_platform: str = "",
    actor_id: str = "",
    channel: str = "",
    data: dict[str, Any] | None = None,
) -> None:
    """Append one audit event (never updated or deleted); written at once, in the caller's
    transaction."""
    conn = await statements.connection(session)
    await conn.execute(
        _INSERT_EVENT,
        {
            "ticket_id": ticket_id,
            "kind": kind,
            "actor_platform": actor_platform,
            "actor_id": actor_id,
            "channel": channel,
            "data": data or {},
        },
    )


# The audit event of a technician taking a ticket a non-technician opened (handlers/sla).
TAKEN = "ticket.taken"


async def opened_by_non_technician(session: AsyncSession, ticket_id: int) -> bool:
    """Whether whoever opened the ticket was no technician when they opened it (a requester
    opening their own ticket, say; also when the directory could not say): intake's verdict,
    kept with the card's diagnosis section, which such a ticket's card leaves out."""
    row = await session.get(TicketDiagnosis, ticket_id)
    return row is not None and row.on_card is False


async def untaken(session: AsyncSession, ticket_id: int) -> bool:
    """Whether the ticket has no technician yet: a non-technician opened it (they are on it as
    its opener, in the technician columns) and no technician has taken it since."""
    if not await opened_by_non_technician(session, ticket_id):
        return False
    query = select(TicketEvent.id).where(
        TicketEvent.ticket_id == ticket_id, TicketEvent.kind == TAKEN
    )
    return (await session.execute(query.limit(1))).first() is None


async def events_for(session: AsyncSession, ticket_id: int) -> Sequence[TicketEvent]:
    query = select(TicketEvent).where(TicketEvent.ticket_id == ticket_id).order_by(TicketEvent.id)
    return (await session.execute(query)).scalars().all()


async def time_entries_for(session: AsyncSession, ticket_id: int) -> Sequence[TimeEntry]:
    query = select(TimeEntry).where(TimeEntry.ticket_id == ticket_id).order_by(TimeEntry.id)
    return (await session.execute(query)).scalars().all()
