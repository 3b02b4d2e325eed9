"""Repository of working a ticket to the end: fix confirmations, reports filed under a P1,
attachments, and the look-ups the thread and intake need."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, exists, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage import statements
from storage.models import FixConfirmation, Ticket, TicketAttachment, TicketEvent

# Open P1s are few; more than this many at once is a bad day, and the oldest count.
MAX_OPEN_P1 = 200
_ATTACHMENTS = statements.table_of(TicketAttachment)
_BUILT: dict[str, Any] = {}


@dataclass(frozen=True)
class OpenP1:
    """What intake compares a new ticket with."""

    number: str
    client: str
    asset: str
    error_text: str


_OPEN_P1 = (
    select(Ticket.number, Ticket.client, Ticket.asset, Ticket.error_text)
    .where(Ticket.priority == "P1", Ticket.status == "open", Ticket.filed_under.is_(None))
    .order_by(Ticket.id)
    .limit(MAX_OPEN_P1)
)


async def open_p1s(session: AsyncSession) -> list[OpenP1]:
    """Open P1 tickets that are not themselves filed under another one, oldest first."""
    conn = await statements.connection(session)
    rows = await conn.execute(_OPEN_P1)
    return [OpenP1(r.number, r.client, r.asset, r.error_text) for r in rows]


_IN_THREAD = (
    select(Ticket)
    .where(
        Ticket.source_thread == bindparam("thread"),
        Ticket.source_channel == bindparam("channel"),
    )
    .order_by(Ticket.id.desc())
    .limit(5)
)


async def ticket_in_thread(session: AsyncSession, *, channel: str, thread: str) -> Ticket | None:
    """The ticket whose thread this is (its card's message, or the thread it was opened in);
    of several opened in one thread, the one whose card starts it, else the newest."""
    found = (await session.execute(_IN_THREAD, {"thread": thread, "channel": channel})).scalars()
    tickets = list(found.all())
    for ticket in tickets:
        if ticket.card_message == thread:
            return ticket
    return tickets[0] if tickets else None


_CARD_AT = select(Ticket).where(
    Ticket.card_channel == bindparam("channel"), Ticket.card_message == bindparam("message")
)
_CARD_IN = (
    select(Ticket)
    .where(Ticket.card_channel == bindparam("conversation"))
    .order_by(Ticket.id.desc())
    .limit(1)
)


async def ticket_of_chain(session: AsyncSession, *, channel: str, root: str) -> Ticket | None:
    """A Teams reply chain's ticket: the one whose card is the chain's first post, else the
    newest whose card was answered inside the chain (`channel;messageid=root`)."""
    found = await session.execute(_CARD_AT, {"channel": channel, "message": root})
    ticket = found.scalars().first()
    if ticket is None:
        chain = f"{channel};messageid={root}"
        ticket = (await session.execute(_CARD_IN, {"conversation": chain})).scalar_one_or_none()
    return ticket


async def filed_under(session: AsyncSession, number: str, *, lock: bool = False) -> list[Ticket]:
    """The tickets filed under the P1 `number`, oldest first."""
    query = select(Ticket).where(Ticket.filed_under == number).order_by(Ticket.id)
    if lock:
        query = query.with_for_update()
    return list((await session.execute(query)).scalars().all())


async def matching_p1(session: AsyncSession, number: str, *, lock: bool = False) -> list[Ticket]:
    """Open tickets, filed nowhere, whose card offers filing them under the P1 `number` (its
    intake found they match it), oldest first."""
    query = (
        select(Ticket)
        .where(Ticket.p1_match == number, Ticket.status == "open", Ticket.filed_under.is_(None))
        .order_by(Ticket.id)
    )
    if lock:
        query = query.with_for_update()
    return list((await session.execute(query)).scalars().all())


async def escalations(session: AsyncSession, ticket_id: int) -> Sequence[TicketEvent]:
    """The ticket's accepted escalations (their audit events), oldest first."""
    query = (
        select(TicketEvent)
        .where(TicketEvent.ticket_id == ticket_id, TicketEvent.kind == "ticket.escalated")
        .order_by(TicketEvent.id)
    )
    return (await session.execute(query)).scalars().all()


async def was_escalated(session: AsyncSession, ticket_id: int) -> bool:
    """True when an escalation of the ticket was accepted (its audit event exists)."""
    query = select(
        exists().where(TicketEvent.ticket_id == ticket_id, TicketEvent.kind == "ticket.escalated")
    )
    return bool((await session.execute(query)).scalar())


# -- fix confirmations -------------------------------------------------------------------------


async def confirmation_by_nonce(
    session: AsyncSession, nonce: str, *, lock: bool = False
) -> FixConfirmation | None:
    query = select(FixConfirmation).where(FixConfirmation.nonce == nonce)
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def ticket_of_confirmation(session: AsyncSession, nonce: str) -> int | None:
    query = select(FixConfirmation.ticket_id).where(FixConfirmation.nonce == nonce)
    return (await session.execute(query)).scalar_one_or_none()


async def open_confirmations(session: AsyncSession, ticket_id: int) -> Sequence[FixConfirmation]:
    """Requests of the ticket that can still be answered or commented on, locked."""
    query = (
        select(FixConfirmation)
        .where(
            FixConfirmation.ticket_id == ticket_id,
            FixConfirmation.state.in_(("pending", "broken")),
        )
        .with_for_update()
    )
    return (await session.execute(query)).scalars().all()


# -- attachments ---------------------------------------------------------------------------------


def _insert_attachment(session: AsyncSession) -> Any:
    name = statements.dialect(session)
    stmt = _BUILT.get(name)
    if stmt is None:
        insert = pg_insert if name == "postgresql" else sqlite_insert
        stmt = (
            insert(_ATTACHMENTS)
            .on_conflict_do_nothing(index_elements=["ticket_id", "platform", "file_key"])
            .returning(_ATTACHMENTS.c.id)
        )
        _BUILT[name] = stmt
    return stmt


async def add_attachment(session: AsyncSession, **values: Any) -> bool:
    """Record one file on a ticket; False when that file was recorded on it before."""
    conn = await statements.connection(session)
    inserted = await conn.execute(_insert_attachment(session), values)
    return inserted.first() is not None


async def attachments_of(session: AsyncSession, ticket_id: int) -> Sequence[TicketAttachment]:
    query = (
        select(TicketAttachment)
        .where(TicketAttachment.ticket_id == ticket_id)
        .order_by(TicketAttachment.id)
    )
    return (await session.execute(query)).scalars().all()
