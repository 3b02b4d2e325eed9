"""Working the ticket to the end in the core (no HTTP), on SQLite and PostgreSQL: which open P1
a new ticket repeats, and when a due nudge is given up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from handlers.config import HelpdeskConfig
from handlers.deps import Deps
from handlers.directory import EmptyDirectory
from handlers.working.service import nudge_given_up, open_p1_match
from storage import db
from storage import tickets as repo
from storage.models import OutboxMessage, Ticket

NOW = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)


@pytest.fixture
async def deps(db_url: str) -> AsyncIterator[Deps]:
    engine = db.create_engine(db_url)
    yield Deps(
        config=HelpdeskConfig(),
        sessions=db.session_factory(engine),
        directory=EmptyDirectory(),
        clock=lambda: NOW,
    )
    await engine.dispose()


async def ticket(deps: Deps, **fields: Any) -> Ticket:
    async with deps.sessions() as session, session.begin():
        seq, number = await repo.next_number(session, prefix="HD")
        values: dict[str, Any] = {
            "number": number,
            "prefix": "HD",
            "seq": seq,
            "status": "open",
            "summary": "VPN down",
            "reproducible": "yes",
            "priority": "P1",
            "category": "network",
            "tier": "standard",
            "requester_id": "UANA",
            "technician_id": "UTECH",
            "source_platform": "slack",
            "source_channel": "C0HELP",
            "created_at": NOW,
            "respond_by": NOW + timedelta(minutes=30),
            "resolve_by": NOW + timedelta(hours=4),
        }
        return await repo.create(session, **(values | fields))


async def match(deps: Deps, *, client: str = "", asset: str = "", error: str = "") -> str:
    async with deps.sessions() as session:
        return await open_p1_match(session, client=client, asset=asset, error=error)


async def test_the_open_p1_a_new_ticket_repeats(deps: Deps) -> None:
    await ticket(deps, client="Acme", asset="VPN-01", status="closed")  # HD-1: closed
    await ticket(deps, client="Acme", asset="VPN-01", priority="P2")  # HD-2: not a P1
    await ticket(deps, client="Globex", asset="FW-1", error_text="Error 0x80070005")  # HD-3
    await ticket(deps, client="Acme", asset="VPN-01", error_text="n/a")  # HD-4
    await ticket(deps, client="Acme", asset="VPN-01", filed_under="HD-4")  # HD-5: filed
    await ticket(deps, client="Acme", asset="VPN-01")  # HD-6: a later report of it
    assert await match(deps, client="ACME", asset=" vpn-01") == "HD-4"
    # The same place wins over the same error; the same error matches any client.
    assert await match(deps, client="Acme", asset="VPN-01", error="0x80070005") == "HD-4"
    assert await match(deps, client="Initech", error="denied: 0X80070005") == "HD-3"
    # Both client and asset are needed; placeholders are not an error.
    assert await match(deps, client="Acme") == ""
    assert await match(deps, asset="VPN-01") == ""
    assert await match(deps, error="N/A") == ""
    assert await match(deps, error="Error 809") == ""


async def test_a_due_nudge_is_given_up_once_the_ticket_was_worked(deps: Deps) -> None:
    open_one = await ticket(deps, priority="P3")
    closed = await ticket(deps, priority="P3", status="closed")
    filed = await ticket(deps, priority="P3", filed_under="HD-9")
    escalated = await ticket(deps, priority="P3")
    async with deps.sessions() as session, session.begin():
        await repo.add_event(session, ticket_id=escalated.id, kind="ticket.escalated")
    async with deps.sessions() as session:

        async def why(t: Ticket) -> str:
            return await nudge_given_up(session, OutboxMessage(ticket_id=t.id, payload={}))

        assert await why(open_one) == ""
        assert "closed" in await why(closed)
        assert "filed under HD-9" in await why(filed)
        assert "escalated" in await why(escalated)
