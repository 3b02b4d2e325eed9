"""What the core does when an outbox row was delivered or failed (runs in the same txn)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import tickets as repo
from storage.models import OutboxMessage, Ticket


async def after_delivery(
    session: AsyncSession, *, message: OutboxMessage, result: dict[str, Any]
) -> None:
    """Remember where the ticket card landed: its message is the ticket's thread."""
    if message.ticket_id is None:
        return
    if message.payload.get("sets_ticket_thread") and result.get("ts"):
        await session.execute(
            update(Ticket)
            .where(Ticket.id == message.ticket_id, Ticket.source_thread.is_(None))
            .values(source_thread=str(result["ts"]), source_channel=str(result["channel"]))
        )
    await repo.add_event(
        session, ticket_id=message.ticket_id, kind="delivery.delivered",
        data={"outbox_id": message.id, "kind": message.kind, "attempts": message.attempts},
    )


async def after_failure(
    session: AsyncSession, *, message: OutboxMessage, error: str, permanent: bool
) -> None:
    """Audit the failed attempt."""
    if message.ticket_id is None:
        return
    await repo.add_event(
        session, ticket_id=message.ticket_id, kind="delivery.failed",
        data={"outbox_id": message.id, "kind": message.kind, "attempts": message.attempts,
              "error": error[:500], "permanent": permanent},
    )
