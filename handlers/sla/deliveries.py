"""Outbox hooks of the SLA clock: a warning or breach row is written just before it is sent.

Checked in the worker's transaction (the ticket is locked): a row whose clock has stopped, or
whose target has moved since it was queued, is given up; otherwise its text, thread and
channel come from the ticket as it is now, and a breach stores the target as missed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from cards.model import Inline, kept_text
from handlers import notify
from handlers.sla.cards import breach_channel_text, breach_thread_text, due_of, warning_text
from handlers.sla.rules import TARGETS, Target
from handlers.sla.service import clock_stopped, mark_missed, queue_breach
from storage import tickets as repo
from storage.models import OutboxMessage, Ticket


@dataclass(frozen=True)
class Ready:
    """The payload to send now, or None with why it never will be."""

    payload: dict[str, Any] | None
    give_up: str = ""


def is_alarm(message: OutboxMessage) -> bool:
    """A warning or breach row (see service.schedule)."""
    info = message.payload.get("sla")
    return isinstance(info, dict) and info.get("target") in TARGETS


async def prepare_alarm(session: AsyncSession, *, message: OutboxMessage, now: datetime) -> Ready:
    """Complete a warning or breach from the ticket, or give it up (clock stopped, moved)."""
    info = message.payload["sla"]
    target: Target = info["target"]
    ticket = await session.get(Ticket, message.ticket_id) if message.ticket_id else None
    if ticket is None:
        return Ready(None, give_up="the ticket no longer exists")
    if clock_stopped(ticket, target):
        why = "it was closed" if ticket.status != "open" else "it had its first response"
        return Ready(None, give_up=f"not needed: {ticket.number}'s {target} clock stopped ({why})")
    if int(due_of(ticket, target).timestamp()) != int(info.get("due", 0)):
        return Ready(None, give_up=f"not needed: {ticket.number}'s {target} target moved")
    payload = dict(message.payload)
    payload["platform"] = ticket.source_platform
    # Nobody has taken a ticket a non-technician opened: its opener, on it as its technician,
    # is neither pinged nor DMed (the thread, whoever watches it, is told nobody has taken it).
    untaken = await repo.untaken(session, ticket.id)
    payload["fallback_user"] = "" if untaken else ticket.technician_id
    if info.get("stage") == "warning":
        # The breach is queued as the warning goes (idempotent: a deferred warning comes back).
        await queue_breach(session, ticket, target, now=now)
        if now >= due_of(ticket, target):
            return Ready(None, give_up=f"too late: {ticket.number}'s {target} target is due")
        text: Inline = warning_text(ticket, target, now, untaken=untaken)
    else:
        await mark_missed(session, ticket, target)
        text = (
            breach_channel_text(ticket, target, now, untaken=untaken)
            if info.get("place") == "channel"
            else breach_thread_text(ticket, target, now, untaken=untaken)
        )
    if info.get("place") == "channel":
        # A new message in the channel, not in the card's thread: on Teams a card in a
        # channel's reply chain has the chain for its conversation, hence `top_level`.
        payload["channel"], payload["thread"] = ticket.card_channel or ticket.source_channel, None
        payload["top_level"] = True
    else:
        payload["channel"], payload["thread"] = ticket.source_channel, ticket.source_thread
        # Said to the technician, who does not follow the card's thread (Slack) or reply
        # chain (Teams): mentioned, unless it is their 1:1 chat.
        # The breach's new message in the channel names them without one: it is for the
        # channel, and the thread's breach has notified them.
        if not untaken and (lead := notify.technician_mention(ticket)):
            payload[notify.MENTION] = lead
    payload.update(kept_text(text))
    return Ready(payload)
