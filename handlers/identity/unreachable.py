"""A manager's request that cannot be delivered for good opens the call-back (SPEC "No manager
on file: ... call back the number on file"): the check becomes one no manager can answer.

Only a delivery the outbox gave up (`permanent`: Slack `user_not_found`, a Teams conversation
refused, ...) does it; a request still being retried, unanswered, or answered too late keeps
the manager's answer as the second channel. The number on file was read from the directory
when the request was made (never typed); it goes only to the technician who asked, in a direct
message with the **Called back: confirmed** button, as when no manager is on file. The
manager's late answer to the given-up request no longer counts, and `verify` asks again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from cards.model import Inline
from handlers import notify
from handlers.directory import Person
from handlers.formatting import who_acted
from handlers.identity import cards, telling
from handlers.types import Actor
from storage import tickets as repo
from storage.models import IdentityCheck, OutboxMessage, Ticket

log = logging.getLogger(__name__)
PURPOSE = cards.PURPOSE
CALLBACK_DM_KEY = cards.CALLBACK_DM_KEY
# Outbox payload key of the manager's request: where the number on file goes if it fails.
ROUTE_KEY = "callback_to"


def number_route(
    ticket: Ticket, actor: Actor, asker: Person | None, usable: Sequence[str]
) -> dict[str, Any]:
    """Where the technician who asked gets the number on file privately: on the ticket's
    platform when the directory knows them there, else where they asked."""
    platform: str = actor.platform
    user_id = actor.id
    if asker is not None and actor.platform != ticket.source_platform:
        platform, user_id = notify.pick_platform(asker, ticket.source_platform, usable) or (
            platform,
            user_id,
        )
    same = (platform, user_id) == (actor.platform, actor.id)
    aad = actor.aad_object_id if same else (asker.aad_object_id if asker else None)
    return {
        "platform": platform,
        "user": user_id,
        "technician": who_acted(actor, asker).plain(),
        **({"aad_object_id": aad} if aad and platform == "teams" else {}),
    }


async def send_number(
    session: AsyncSession,
    ticket: Ticket,
    check: IdentityCheck,
    route: dict[str, Any],
    text: Inline,
) -> str:
    """DM the call-back notice (the number on file, and the **Called back: confirmed**
    button) through the outbox, retried like every DM. Returns who it went to."""
    who = str(route.get("technician") or "the technician")
    aad = route.get("aad_object_id")
    await notify.dm(
        session,
        platform=str(route["platform"]),
        user_id=str(route["user"]),
        text=text,
        card=cards.callback_card(ticket, check, text),
        ticket=ticket,
        purpose=PURPOSE,
        dedup_key=f"identity-callback:{check.id}",
        extra={
            CALLBACK_DM_KEY: check.id,
            "technician": who,
            **({"aad_object_id": aad} if aad else {}),
        },
    )
    return who


async def record(
    session: AsyncSession,
    ticket: Ticket,
    check: IdentityCheck,
    *,
    message: OutboxMessage,
    error: str,
    permanent: bool,
) -> None:
    """Audit `identity.unreachable`: the request to the manager has failed, still retried
    (`permanent` False, once per check) or given up (True, once per check)."""
    await repo.add_event(
        session,
        ticket_id=ticket.id,
        kind="identity.unreachable",
        data={
            "check": check.id,
            "attempts": message.attempts,
            "permanent": permanent,
            "error": error[:500],
        },
    )


async def give_up(session: AsyncSession, *, message: OutboxMessage, error: str) -> None:
    """The manager's request was given up (a permanent delivery failure): while it is still
    the ticket's open request, turn it into a call-back check and tell the technician."""
    check = await session.get(
        IdentityCheck, message.payload.get("identity_check"), with_for_update=True
    )
    ticket = await session.get(Ticket, message.ticket_id) if message.ticket_id else None
    if check is None or ticket is None or check.state != "pending":
        return  # superseded or answered meanwhile: nothing is open on it
    check.state = "unreachable"
    if ticket.identity_state == "pending":
        ticket.identity_state = "required"
        await notify.refresh_ticket_card(session, ticket)
    route = message.payload.get(ROUTE_KEY)
    told = ""
    if ticket.status == "open":  # a closed ticket needs no call-back (nor its number sent)
        if check.callback_phone and isinstance(route, dict) and route.get("user"):
            text = cards.unreachable_callback_text(ticket, check, error=error)
            told = await send_number(session, ticket, check, route, text)
        await telling.tell_technician(
            session,
            ticket,
            check,
            cards.unreachable_text(ticket, check, error=error, technician=told),
            dedup_key=f"identity-unreachable:{check.id}:given-up",
        )
    await record(session, ticket, check, message=message, error=error, permanent=True)
    # Why the call-back opened on a ticket whose manager is on file and reachable in theory.
    await repo.add_event(
        session,
        ticket_id=ticket.id,
        kind="identity.no_manager",
        data={
            "check": check.id,
            "reason": "manager unreachable",
            "manager": check.manager_email or None,
            "platform": check.manager_platform,
            "manager_id": check.manager_id,
            "error": error[:500],
            "phone_on_file": bool(check.callback_phone),
            "number_sent_to": told or None,
        },
    )
    log.warning(
        "identity check on %s: the request to the manager was given up (%s); call-back opened",
        ticket.number,
        error[:200],
    )
