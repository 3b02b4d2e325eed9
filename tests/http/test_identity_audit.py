"""Every identity decision is in the audit trail with who, when and through which channel."""

from __future__ import annotations

from sqlalchemy import select

from storage.models import TicketEvent
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness
from tests.http.test_identity_slack import click, manager_dm, new_ticket, start


async def events(app: AppHarness, kind: str) -> list[TicketEvent]:
    async with app.services.sessions() as session:
        query = select(TicketEvent).where(TicketEvent.kind == kind).order_by(TicketEvent.id)
        return list((await session.execute(query)).scalars().all())


async def test_approve_and_deny_are_audited_with_the_channel_they_came_through(
    make_app, slack_api: FakeSlack
):
    # HD-1: Tom's `verify` (typed in C0HELP) replaces the request the intake sent; Bo approves
    # in his DM. HD-2: Bo denies. Security reads these events: each says where it happened.
    app = await start(make_app, slack_api)
    await new_ticket(app, slack_api, category="password-reset")
    await manager_dm(slack_api)
    await app.slash("verify HD-1")
    fresh = await manager_dm(slack_api, count=2)
    assert "confirmed the identity" in await click(app, slack_api, fresh, "Approve", "U0BO")
    await new_ticket(app, slack_api, category="password-reset")
    second = await manager_dm(slack_api, count=3)
    assert "stopped" in await click(app, slack_api, second, "Deny", "U0BO")

    for kind in ("identity.approved", "identity.denied", "ticket.flagged"):
        [event] = await events(app, kind)
        assert (event.actor_platform, event.actor_id, event.channel) == ("slack", "U0BO", "DU0BO")
        assert event.at is not None
    # The verify that asked again, and the request it replaced, name where it was typed.
    requested = await events(app, "identity.requested")
    assert [(e.actor_id, e.channel) for e in requested] == [
        ("UTECH", "C0HELP"),  # the intake's, opened in C0HELP
        ("UTECH", "C0HELP"),  # the verify
        ("UTECH", "C0HELP"),  # HD-2's intake
    ]
    [superseded] = await events(app, "identity.superseded")
    assert (superseded.actor_id, superseded.channel) == ("UTECH", "C0HELP")
