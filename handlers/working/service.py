"""Working the ticket to the end, at intake and around it: the Tier 1 scope and its nudge, the
remote-session link, the open P1 a new ticket repeats, and telling the technician.

`confirm` (the requester confirms the fix), `linking` (duplicate reports filed under a P1)
and `attachments` (files shared on a ticket) hold the other use cases.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from handlers import diagnosis, notify, sla
from handlers.answers import is_placeholder
from handlers.config import HelpdeskConfig
from handlers.deps import Deps
from handlers.directory import Person
from handlers.durations import format_duration
from handlers.types import Actor
from handlers.working import cards, rules
from storage import working as repo
from storage.models import OutboxMessage, Ticket

log = logging.getLogger(__name__)


async def intake_facts(
    session: AsyncSession,
    config: HelpdeskConfig,
    *,
    category: str,
    asset: str,
    client: str,
    error_text: str,
) -> dict[str, str]:
    """The new ticket's scope, remote-session link and the open P1 it repeats (columns)."""
    remote = rules.remote_url(config.remote.url_template, asset)
    if config.remote.url_template and asset.strip() and not remote:
        log.warning("no Remote session link: the asset makes no usable link (%d chars)", len(asset))
    return {
        "support_tier": rules.support_tier(category, config.tier1_scope),
        "remote_url": remote,
        "p1_match": await open_p1_match(session, client=client, asset=asset, error=error_text),
    }


async def open_p1_match(session: AsyncSession, *, client: str, asset: str, error: str) -> str:
    """The open P1 with the same client and asset, else with the same error ('' for none);
    of several, the one reported first. An error text that is only a placeholder ("n/a",
    "-") matches nothing."""
    if is_placeholder(error):
        error = ""
    if not (client.strip() and asset.strip()) and not error.strip():
        return ""
    candidates = await repo.open_p1s(session)
    for p1 in candidates:
        if rules.same_place(client, asset, p1.client, p1.asset):
            return p1.number
    for p1 in candidates:
        if (
            error
            and not is_placeholder(p1.error_text)
            and diagnosis.same_error(error, p1.error_text)
        ):
            return p1.number
    return ""


async def on_ticket_opened(session: AsyncSession, deps: Deps, *, ticket: Ticket) -> None:
    """Queue the one nudge of a ticket outside Tier 1 scope, due `escalation.nudge_after`
    after it was opened (given up at delivery when it was escalated or closed by then)."""
    if ticket.support_tier != rules.TIER23:
        return
    after = deps.config.escalation.nudge_after
    seconds = int(after.total_seconds())
    await notify.tell_technician_in_chat(
        session,
        ticket,
        cards.nudge_text(
            ticket,
            format_duration(after) if seconds >= 60 else f"{seconds}s",
            # Escalation waits for a confirmed identity (handlers/identity: GATED_STATES); a
            # gated ticket starts "required" (a category in identity.categories, a VIP).
            identity_first=ticket.identity_state != "not_required",
        ),
        purpose=cards.NUDGE,
        due_at=ticket.created_at + after,
        dedup_key=f"{cards.NUDGE}:{ticket.id}",
        extra={"nudge": True},
    )


async def nudge_given_up(session: AsyncSession, message: OutboxMessage) -> str:
    """Why a due nudge is not sent any more ('' when it still is): its ticket was closed,
    escalated or filed under a P1 since it was queued."""
    ticket = await session.get(Ticket, message.ticket_id) if message.ticket_id else None
    if ticket is None:
        return "the ticket no longer exists"
    if ticket.status != "open":
        return f"{ticket.number} was {ticket.status} before the nudge was due"
    if ticket.filed_under:
        return f"{ticket.number} was filed under {ticket.filed_under} before the nudge was due"
    if await repo.was_escalated(session, ticket.id):
        return f"{ticket.number} was escalated before the nudge was due"
    return ""


async def first_response(
    session: AsyncSession,
    ticket: Ticket,
    actor: Actor,
    channel: str,
    *,
    at: datetime,
    action: str,
    person: Person | None = None,
) -> bool:
    """A technician worked the ticket (confirm, a message where it is worked): its first
    response if it has none yet (SPEC "SLA clock"); True when this was it. `person`: their
    directory entry, when known (for taking a ticket nobody has yet)."""
    return await sla.record_first_response(
        session, ticket, actor, channel, at=at, action=action, person=person
    )
