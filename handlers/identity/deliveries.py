"""Outbox hooks for identity requests (called by handlers.deliveries in the worker's txn)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from handlers import notify
from handlers.identity import cards
from storage import tickets as repo
from storage.models import IdentityCheck, OutboxMessage, Ticket, utcnow

PURPOSE = cards.PURPOSE
# Tell the technician the manager could not be reached after this many failed attempts.
REPORT_AFTER_ATTEMPTS = 3


def _is_request(message: OutboxMessage) -> bool:
    return (
        message.kind == "dm"
        and message.payload.get("purpose") == PURPOSE
        and isinstance(message.payload.get("identity_check"), int)
    )


async def on_delivered(session: AsyncSession, *, message: OutboxMessage) -> None:
    """The manager got the request: audit it, and count the answer window from now."""
    if not _is_request(message):
        return
    check = await session.get(
        IdentityCheck, message.payload.get("identity_check"), with_for_update=True
    )
    if check is None or check.state != "pending" or check.sent_at is not None:
        return
    now = utcnow()
    if check.expires_at is not None:
        check.expires_at = now + (check.expires_at - check.created_at)
    check.sent_at = now
    await repo.add_event(
        session,
        ticket_id=check.ticket_id,
        kind="identity.delivered",
        data={
            "check": check.id,
            "platform": check.manager_platform,
            "attempts": message.attempts,
            "expires_at": check.expires_at.isoformat() if check.expires_at else None,
        },
    )


async def on_failed(
    session: AsyncSession, *, message: OutboxMessage, error: str, permanent: bool
) -> None:
    """Tell the technician once when the manager could not be reached."""
    if not _is_request(message) or not (permanent or message.attempts >= REPORT_AFTER_ATTEMPTS):
        return
    check = await session.get(IdentityCheck, message.payload.get("identity_check"))
    ticket = await session.get(Ticket, message.ticket_id) if message.ticket_id else None
    if check is None or ticket is None or check.state != "pending":
        return
    text = cards.unreachable_text(
        ticket,
        check,
        phone=str(message.payload.get("callback_phone") or ""),
        error=error,
        on_file=bool(message.payload.get("phone_on_file")),
    )
    if await notify.tell_technician(
        session, ticket, text, purpose=PURPOSE, dedup_key=f"identity-unreachable:{check.id}"
    ):
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
