"""Ticket repository: numbering, create, look-ups, audit events, inbound de-duplication."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, union, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import InboundDelivery, Ticket, TicketCounter, TicketEvent, TimeEntry


def _insert_ignore(session: AsyncSession, model: Any) -> Any:
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(model)


async def next_number(session: AsyncSession, *, prefix: str) -> tuple[int, str]:
    """Reserve the next `<prefix>-<n>`; the UPDATE takes a row/writer lock until commit."""
    bump = (
        update(TicketCounter)
        .where(TicketCounter.prefix == prefix)
        .values(last_value=TicketCounter.last_value + 1)
        .returning(TicketCounter.last_value)
    )
    value = (await session.execute(bump)).scalar_one_or_none()
    if value is None:
        await session.execute(
            _insert_ignore(session, TicketCounter)
            .values(prefix=prefix, last_value=0)
            .on_conflict_do_nothing(index_elements=["prefix"])
        )
        value = (await session.execute(bump)).scalar_one()
    return value, f"{prefix}-{value}"


async def claim_delivery(session: AsyncSession, key: str) -> bool:
    """Record an inbound delivery id; False when it was handled before (a retry).

    One INSERT ... ON CONFLICT DO NOTHING: no savepoint, and a concurrent duplicate waits on
    the first one's key (PostgreSQL) instead of failing the transaction.
    """
    stmt = (
        _insert_ignore(session, InboundDelivery)
        .values(key=key)
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(InboundDelivery.key)
    )
    return (await session.execute(stmt)).scalar_one_or_none() is not None


async def create(session: AsyncSession, **fields: Any) -> Ticket:
    ticket = Ticket(**fields)
    session.add(ticket)
    await session.flush()
    return ticket


async def get_by_number(session: AsyncSession, number: str, *, lock: bool = False) -> Ticket | None:
    query = select(Ticket).where(Ticket.number == number.strip().upper())
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


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


async def list_open_for(
    session: AsyncSession, *, person_id: str, limit: int = 25
) -> list[TicketLine]:
    """Open tickets where the person is the requester or the technician, newest first.

    One statement: the union of two index range scans (one per role, each already newest
    first and limited), rather than an OR the planner answers by sorting every open ticket.
    """

    def newest(column: Any) -> Any:
        return (
            select(Ticket.id, Ticket.number, Ticket.priority, Ticket.summary, Ticket.resolve_by)
            .where(column == person_id, Ticket.status == "open")
            .order_by(Ticket.id.desc())
            .limit(limit)
            .subquery()
        )

    both = union(
        select(newest(Ticket.requester_id)), select(newest(Ticket.technician_id))
    ).subquery()
    rows = await session.execute(select(both).order_by(both.c.id.desc()).limit(limit))
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
    """Append one audit event (never updated or deleted)."""
    session.add(
        TicketEvent(
            ticket_id=ticket_id,
            kind=kind,
            actor_platform=actor_platform,
            actor_id=actor_id,
            channel=channel,
            data=data or {},
        )
    )


async def events_for(session: AsyncSession, ticket_id: int) -> Sequence[TicketEvent]:
    query = select(TicketEvent).where(TicketEvent.ticket_id == ticket_id).order_by(TicketEvent.id)
    return (await session.execute(query)).scalars().all()


async def time_entries_for(session: AsyncSession, ticket_id: int) -> Sequence[TimeEntry]:
    query = select(TimeEntry).where(TimeEntry.ticket_id == ticket_id).order_by(TimeEntry.id)
    return (await session.execute(query)).scalars().all()
