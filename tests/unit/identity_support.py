"""Helpers for the identity core tests: a directory, a steerable clock, tickets and answers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from cards.model import ActionId
from handlers import identity, tickets
from handlers.commands import Command
from handlers.deps import Deps
from handlers.types import Actor, Conversation, Interaction, Reply
from storage import tickets as repo
from storage.models import IdentityCheck, OutboxMessage, Ticket, TicketEvent

TECH = Actor("slack", "UTECH", "tom")
BO_SLACK = Actor("slack", "U0BO", "bo")
PEOPLE = [
    {
        "email": "ana@example.com",
        "name": "Ana Lopez",
        "slack_id": "U0ANA",
        "teams_id": "29:1ana",
        "phone": "+1 555 0100",
        "manager": "bo@example.com",
    },
    {"email": "bo@example.com", "name": "Bo Boss", "slack_id": "U0BO", "teams_id": "29:1bo"},
    {
        "email": "tom@example.com",
        "name": "Tom Tech",
        "slack_id": "UTECH",
        "teams_id": "29:1tech",
        "technician": True,
    },
    {"email": "cy@example.com", "name": "Cy Solo", "slack_id": "U0CY", "phone": "+1 555 0199"},
    {"email": "dee@example.com", "name": "Dee", "slack_id": "U0DEE", "manager": "eve@example.com"},
    {"email": "eve@example.com", "name": "Eve Offline"},
    {
        "email": "fay@example.com",
        "name": "Fay",
        "teams_id": "29:1fay",
        "manager": "gus@example.com",
    },
    {"email": "gus@example.com", "name": "Gus", "slack_id": "U0GUS"},
    {
        "email": "vic@example.com",
        "name": "Vic VIP",
        "slack_id": "U0VIC",
        "vip": True,
        "manager": "bo@example.com",
    },
]


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def turn(
    actor: Actor = TECH,
    *,
    text: str = "",
    action: ActionId | None = None,
    data: dict[str, Any] | None = None,
    delivery_id: str | None = None,
) -> Interaction:
    conversation = Conversation(actor.platform, "C0HELP" if actor.platform == "slack" else "a:1")
    return Interaction(
        actor=actor,
        conversation=conversation,
        text=text,
        action=action,
        data=data or {},
        delivery_id=delivery_id,
    )


async def new_ticket(
    deps: Deps, requester: str = "U0ANA", *, category: str = "printer", actor: Actor = TECH
) -> str:
    data = {
        "requester": requester,
        "summary": "Locked out <!channel>",
        "error_text": "",
        "doing": "",
        "reproducible": "yes",
        "users_affected": "1",
        "priority": "P2",
        "category": category,
        "asset": "",
        "client": "",
    }
    reply = await tickets.create_ticket(deps, turn(actor, action=ActionId.TICKET_CREATE, data=data))
    return reply.text.removeprefix("Opened ")


async def verify(deps: Deps, number: str, actor: Actor = TECH) -> Reply:
    return await identity.verify_command(deps, turn(actor), Command("verify", number))


async def answer(deps: Deps, nonce: Any, actor: Actor = BO_SLACK, *, approve: bool = True) -> Reply:
    handler = identity.approve if approve else identity.deny
    action = ActionId.IDENTITY_APPROVE if approve else ActionId.IDENTITY_DENY
    return await handler(deps, turn(actor, action=action, data={"check": nonce}))


async def state(
    deps: Deps, number: str
) -> tuple[Ticket, list[IdentityCheck], list[str], list[OutboxMessage]]:
    async with deps.sessions() as session:
        ticket = await repo.get_by_number(session, number)
        assert ticket is not None
        checks = (
            (
                await session.execute(
                    select(IdentityCheck)
                    .where(IdentityCheck.ticket_id == ticket.id)
                    .order_by(IdentityCheck.id)
                )
            )
            .scalars()
            .all()
        )
        events = (
            (
                await session.execute(
                    select(TicketEvent.kind)
                    .where(TicketEvent.ticket_id == ticket.id)
                    .order_by(TicketEvent.id)
                )
            )
            .scalars()
            .all()
        )
        rows = (
            (await session.execute(select(OutboxMessage).order_by(OutboxMessage.id)))
            .scalars()
            .all()
        )
    return ticket, list(checks), list(events), list(rows)


def texts(rows: list[OutboxMessage], **match: str) -> list[str]:
    return [
        r.payload.get("text", "")
        for r in rows
        if r.kind == "message" and all(r.payload.get(k) == v for k, v in match.items())
    ]
