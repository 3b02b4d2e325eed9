"""The SLA clock's use cases on the database: queueing, moving and cancelling the rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from handlers import sla
from handlers.config import HelpdeskConfig
from handlers.sla.service import mark_missed
from handlers.types import Actor
from storage import db
from storage import tickets as repo
from storage.models import OutboxMessage, Ticket, TicketEvent

OPENED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CONFIG = HelpdeskConfig()  # standard tier, warn_before 15m
TECH = Actor("slack", "UTECH", "tom")


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = db.create_engine(db_url)
    yield db.session_factory(engine)
    await engine.dispose()


async def p3_ticket(session: AsyncSession) -> Ticket:
    seq, number = await repo.next_number(session, prefix="HD")
    due = sla.due_times(CONFIG.sla, client="", priority="P3", opened_at=OPENED)
    values: dict[str, Any] = {
        "status": "open",
        "summary": "Printer jams",
        "reproducible": "yes",
        "priority": "P3",
        "tier": due.tier,
        "requester_id": "UANA",
        "technician_id": "UTECH",
        "source_platform": "slack",
        "source_channel": "C0HELP",
        "source_thread": "1700000000.000100",
        "created_at": OPENED,
        "respond_by": due.respond_by,
        "resolve_by": due.resolve_by,
    }
    return await repo.create(session, number=number, prefix="HD", seq=seq, **values)


async def rows(session: AsyncSession) -> set[tuple[str, str, datetime, str]]:
    found = (await session.execute(select(OutboxMessage))).scalars().all()
    return {
        (r.payload["sla"]["target"], r.payload["sla"]["stage"], r.due_at, r.status) for r in found
    }


async def test_a_raise_moves_both_running_targets_and_their_warnings(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        ticket = await p3_ticket(session)
        assert await sla.schedule(session, CONFIG, ticket, now=OPENED) == 2
        assert await sla.schedule(session, CONFIG, ticket, now=OPENED) == 0  # once
        # Raised to P1 five minutes in, with no first response yet (a raise that is not one).
        ticket.priority = "P1"
        await sla.retarget(session, CONFIG, ticket, now=OPENED + timedelta(minutes=5))
        assert (ticket.respond_by, ticket.resolve_by) == (
            OPENED + timedelta(minutes=30),
            OPENED + timedelta(hours=4),
        )
        assert await rows(session) == {
            ("respond", "warning", OPENED + timedelta(hours=7, minutes=45), "cancelled"),
            ("resolve", "warning", OPENED + timedelta(days=3, minutes=-15), "cancelled"),
            ("respond", "warning", OPENED + timedelta(minutes=15), "pending"),
            ("resolve", "warning", OPENED + timedelta(hours=3, minutes=45), "pending"),
        }


async def test_the_first_response_is_recorded_once_and_stops_the_respond_clock(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        ticket = await p3_ticket(session)
        await sla.schedule(session, CONFIG, ticket, now=OPENED)
        at = OPENED + timedelta(hours=8, seconds=1)  # a second late
        assert await sla.record_first_response(
            session, ticket, TECH, "C0HELP", at=at, action="time"
        )
        later = at + timedelta(minutes=5)
        other = Actor("teams", "29:1other")
        assert not await sla.record_first_response(session, ticket, other, "19:x", at=later)
    async with sessions() as session:
        stored = await session.get(Ticket, ticket.id)
        assert stored is not None
        assert (stored.first_response_at, stored.first_response_by) == (at, "UTECH")
        assert (stored.first_response_channel, stored.first_response_seconds) == (
            "slack:C0HELP",
            8 * 3600 + 1,
        )
        assert (stored.respond_met, stored.resolve_met) == (False, None)
        statuses = {(target, status) for target, _, _, status in await rows(session)}
        assert statuses == {("respond", "cancelled"), ("resolve", "pending")}
        [event] = (
            (
                await session.execute(
                    select(TicketEvent).where(TicketEvent.kind == "sla.first_response")
                )
            )
            .scalars()
            .all()
        )
        assert (event.actor_id, event.channel, event.data) == (
            "UTECH",
            "C0HELP",
            {"action": "time", "met": False, "seconds": 8 * 3600 + 1},
        )


async def test_moved_targets_judge_a_first_response_again_and_move_the_running_rows(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # A tier that arrives after the first response (the PSA's contract) moves both targets.
    async with sessions() as session, session.begin():
        ticket = await p3_ticket(session)
        await sla.schedule(session, CONFIG, ticket, now=OPENED)
        responded = OPENED + timedelta(hours=3)
        assert await sla.record_first_response(session, ticket, TECH, "C0HELP", at=responded)
        assert ticket.respond_met is True  # against the 8h of standard P3
        moved = await sla.move_targets(
            session,
            CONFIG,
            ticket,
            respond_by=OPENED + timedelta(hours=1),
            resolve_by=OPENED + timedelta(hours=8),
            now=responded + timedelta(minutes=1),
            reason="HD-1 has the gold tier now: its targets moved",
        )
        assert moved == ("respond", "resolve")
    async with sessions() as session:
        stored = await session.get(Ticket, ticket.id)
        assert stored is not None
        assert (stored.respond_by, stored.resolve_by) == (
            OPENED + timedelta(hours=1),
            OPENED + timedelta(hours=8),
        )
        assert (stored.respond_met, stored.resolve_met) == (False, None)
        # The respond clock stopped at the first response: only resolve is queued again.
        assert await rows(session) == {
            ("respond", "warning", OPENED + timedelta(hours=7, minutes=45), "cancelled"),
            ("resolve", "warning", OPENED + timedelta(days=3, minutes=-15), "cancelled"),
            ("resolve", "warning", OPENED + timedelta(hours=7, minutes=45), "pending"),
        }


async def test_a_breached_target_that_moves_is_not_announced_again(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        ticket = await p3_ticket(session)
        await sla.schedule(session, CONFIG, ticket, now=OPENED)
        await sla.record_first_response(session, ticket, TECH, "C0HELP", at=OPENED)
        # Resolve-by (3 days) passed: its breach was said and the target stored as missed.
        breached = OPENED + timedelta(days=3, seconds=1)
        assert await mark_missed(session, ticket, "resolve")
        # Raised to P1 afterwards: the P1 resolve target (4h) is far behind it as well.
        ticket.priority = "P1"
        await sla.retarget(session, CONFIG, ticket, now=breached + timedelta(hours=1))
        assert ticket.resolve_met is False
        assert ticket.resolve_by == OPENED + timedelta(hours=4)
        assert {status for _, _, _, status in await rows(session)} == {"cancelled"}


async def test_moved_targets_of_a_closed_ticket_judge_the_closure_again(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        ticket = await p3_ticket(session)
        await sla.schedule(session, CONFIG, ticket, now=OPENED)
        closed = OPENED + timedelta(hours=5)
        await sla.record_first_response(session, ticket, TECH, "C0HELP", at=closed)
        ticket.status, ticket.closed_at = "closed", closed
        await sla.on_closed(session, ticket, at=closed)
        assert (ticket.respond_met, ticket.resolve_met) == (True, True)
        await sla.move_targets(
            session,
            CONFIG,
            ticket,
            respond_by=OPENED + timedelta(hours=1),
            resolve_by=OPENED + timedelta(hours=4),
            now=closed + timedelta(seconds=1),
            reason="HD-1 has the gold tier now: its targets moved",
        )
        assert (ticket.respond_met, ticket.resolve_met) == (False, False)
        assert {status for _, _, _, status in await rows(session)} == {"cancelled"}
