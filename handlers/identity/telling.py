"""Where an identity check's outcome is told: privately, when the ticket's thread is not a
technician's.

A ticket a non-technician opened (a requester opening their own) has its card, and so its
thread, where they opened it: their channel thread or their own chat with the bot. The person
on the phone may be posing as that requester (vishing an executive's password reset is what
the check stops), so a manager's Deny told there tips them off, and the technician who asked
never hears it. Such a ticket's outcomes go to the technician who asked for the check, in a
direct message on the platform they asked from; a ticket a technician opened keeps them in
its thread, as SPEC says.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cards.model import Inline
from handlers import notify
from handlers.identity import cards
from storage import tickets as repo
from storage.models import IdentityCheck, Ticket, TicketEvent

log = logging.getLogger(__name__)


async def _asked_from(
    session: AsyncSession, ticket: Ticket, check: IdentityCheck
) -> tuple[str, str] | None:
    """(platform, user id) of who asked for `check` (its `identity.requested` event), or None
    when that was the ticket's opener (intake starts a gated ticket's check on its own)."""
    query = (
        select(TicketEvent.kind, TicketEvent.actor_platform, TicketEvent.actor_id)
        .where(
            TicketEvent.ticket_id == ticket.id,
            TicketEvent.actor_id == check.requested_by,
            TicketEvent.kind.in_(("identity.requested", "ticket.opened")),
        )
        .order_by(TicketEvent.id.desc())
    )
    rows = (await session.execute(query)).all()
    if not rows or any(row.kind == "ticket.opened" for row in rows):
        return None
    return str(rows[0].actor_platform), str(rows[0].actor_id)


async def recipient(
    session: AsyncSession, ticket: Ticket, check: IdentityCheck
) -> tuple[str, str] | None:
    """Who hears `check`'s outcome privately on a ticket a non-technician opened: the
    technician who asked for it; for a check its opener started (at intake), the technician
    who has taken the ticket since; None when there is none yet."""
    asked = await _asked_from(session, ticket, check)
    if asked is not None:
        return asked
    if ticket.technician_id and not await repo.untaken(session, ticket.id):
        return ticket.source_platform, ticket.technician_id
    return None


async def tell_technician(
    session: AsyncSession,
    ticket: Ticket,
    check: IdentityCheck,
    text: Inline,
    *,
    dedup_key: str | None = None,
) -> bool:
    """Tell the technician `check`'s outcome: in the ticket's thread (mentioning them) when a
    technician opened it; else in a direct message to the technician who asked (`recipient`),
    never in the thread its opener reads. With no technician to tell (nobody has taken a
    ticket whose opener started the check), nothing is posted: the card shows the check's
    state, and a Deny still reaches the `security` queue. False when nothing was queued
    (`dedup_key` queued before, or nobody to tell)."""
    if not await repo.opened_by_non_technician(session, ticket.id):
        return await notify.tell_technician(
            session, ticket, text, purpose=cards.PURPOSE, dedup_key=dedup_key
        )
    to = await recipient(session, ticket, check)
    if to is None:
        log.warning(
            "identity check %s on %s: nobody to tell its outcome (no technician has taken it)",
            check.id,
            ticket.number,
        )
        return False
    platform, user_id = to
    return await notify.dm(
        session,
        platform=platform,
        user_id=user_id,
        text=text,
        ticket=ticket,
        purpose=cards.PURPOSE,
        dedup_key=dedup_key,
    )
