"""Outbox hooks for identity requests (called by handlers.deliveries in the worker's txn)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from cards.model import Card
from handlers import notify
from handlers.identity import cards, telling, unreachable
from storage import outbox
from storage import tickets as repo
from storage.models import IdentityCheck, OutboxMessage, Ticket, utcnow

PURPOSE = cards.PURPOSE
CALLBACK_DM_KEY = cards.CALLBACK_DM_KEY
# Tell the technician the manager could not be reached after this many failed attempts.
REPORT_AFTER_ATTEMPTS = 3


def is_request(message: OutboxMessage) -> bool:
    """The manager's request (its deadline is set as it is sent: `prepare`)."""
    return (
        message.kind == "dm"
        and message.payload.get("purpose") == PURPOSE
        and isinstance(message.payload.get("identity_check"), int)
    )


def _is_callback_dm(message: OutboxMessage) -> bool:
    return (
        message.kind == "dm"
        and message.payload.get("purpose") == PURPOSE
        and isinstance(message.payload.get(CALLBACK_DM_KEY), int)
    )


async def prepare(
    session: AsyncSession, *, message: OutboxMessage, payload: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """The manager's request as it goes out: its Answer by is when the window, counted from
    now (the send), ends. Queued while Slack or Teams held it back, it would otherwise show the
    deadline counted from the queuing, perhaps passed already, though the answer counts
    longer (`on_delivered`)."""
    if not is_request(message) or not isinstance(payload.get("card"), dict):
        return payload
    check = await session.get(IdentityCheck, message.payload.get("identity_check"))
    if check is None or check.state != "pending" or check.sent_at is not None:
        return payload
    if check.expires_at is None:
        return payload
    card = cards.with_answer_by(Card.from_dict(payload["card"]), now + _window(check))
    return {**payload, "card": card.to_dict()}


async def given_up(session: AsyncSession, message: OutboxMessage) -> str:
    """Why the manager's request (or the technician's call-back notice) is not sent now ('':
    it is): its check was replaced by a newer request (`verify` again) or is otherwise over
    before it went out (Slack or Teams held it back), so its buttons would not count. The
    manager would get a stale request beside the fresh one, perhaps after it. One that may
    have arrived already (in doubt) goes on: its delivery is what lets it be retired."""
    if message.in_doubt or not (is_request(message) or _is_callback_dm(message)):
        return ""
    if not isinstance(message.payload.get("card"), dict):
        return ""  # no buttons to go stale (as `prepare`: only a card is completed)
    key = "identity_check" if is_request(message) else CALLBACK_DM_KEY
    check = await session.get(IdentityCheck, message.payload.get(key))
    open_states = ("pending",) if is_request(message) else cards.CALLBACK_STATES
    if check is None or check.state in open_states:
        return ""
    return f"not sent: its identity check is {check.state}"


def _window(check: IdentityCheck) -> timedelta:
    assert check.expires_at is not None
    return check.expires_at - check.created_at


async def on_delivered(
    session: AsyncSession, *, message: OutboxMessage, now: datetime | None = None
) -> None:
    """The manager got the request: audit it, and count the answer window from now."""
    if _is_callback_dm(message):
        await _callback_dm_delivered(session, message)
        return
    if not is_request(message):
        return
    check = await session.get(
        IdentityCheck, message.payload.get("identity_check"), with_for_update=True
    )
    if check is None or check.state != "pending" or check.sent_at is not None:
        return
    now = now or utcnow()
    if check.expires_at is not None:
        check.expires_at = now + _window(check)
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
    """A request given up opens the call-back; one still retried is told once to the thread."""
    if _is_callback_dm(message):
        await _callback_dm_failed(session, message, error, permanent=permanent)
        return
    if not is_request(message):
        return
    if permanent:
        await unreachable.give_up(session, message=message, error=error)
        return
    if message.attempts < REPORT_AFTER_ATTEMPTS:
        return
    check = await session.get(IdentityCheck, message.payload.get("identity_check"))
    ticket = await session.get(Ticket, message.ticket_id) if message.ticket_id else None
    if check is None or ticket is None or check.state != "pending":
        return
    # Still retried: the manager's answer is still the second channel (no call-back yet).
    text = cards.retrying_text(ticket, check, error=error)
    if await telling.tell_technician(
        session, ticket, check, text, dedup_key=f"identity-unreachable:{check.id}"
    ):
        await unreachable.record(
            session, ticket, check, message=message, error=error, permanent=False
        )


async def _open_callback(
    session: AsyncSession, message: OutboxMessage
) -> tuple[IdentityCheck, Ticket] | None:
    """The check and ticket of a DM with the number on file while that check is still open
    (a superseded or answered one needs no word in the thread)."""
    check = await session.get(IdentityCheck, message.payload.get(CALLBACK_DM_KEY))
    ticket = await session.get(Ticket, message.ticket_id) if message.ticket_id else None
    if check is None or ticket is None or check.state not in cards.CALLBACK_STATES:
        return None
    return check, ticket


async def _callback_dm_failed(
    session: AsyncSession, message: OutboxMessage, error: str, *, permanent: bool
) -> None:
    """The DM with the number on file has not reached the technician (the outbox retries it):
    the thread is told so, without the number, once it keeps failing and once more if it is
    given up, and where the technician gets the number privately (`show`)."""
    if not permanent and (message.failure_reported or message.attempts < REPORT_AFTER_ATTEMPTS):
        return
    found = await _open_callback(session, message)
    if found is None:
        return
    check, ticket = found
    stage = "dead" if permanent else "failing"
    who = str(message.payload.get("technician") or "")  # cards.technician_named
    await notify.tell_technician(
        session,
        ticket,
        cards.callback_dm_failed_text(ticket, who, error, final=permanent),
        purpose=PURPOSE,
        dedup_key=f"identity-callback-failed:{check.id}:{stage}",
    )
    await outbox.set_failure_reported(session, message.id)
    await repo.add_event(
        session,
        ticket_id=ticket.id,
        kind="identity.callback_undelivered",
        data={
            "check": check.id,
            "attempts": message.attempts,
            "permanent": permanent,
            "error": error[:500],
        },
    )


async def _callback_dm_delivered(session: AsyncSession, message: OutboxMessage) -> None:
    """The DM got through after the thread was told it had not: say so there."""
    if not message.failure_reported:
        return
    found = await _open_callback(session, message)
    if found is None:
        return
    check, ticket = found
    who = str(message.payload.get("technician") or "")  # cards.technician_named
    await notify.tell_technician(
        session,
        ticket,
        cards.callback_dm_delivered_text(ticket, who, message.attempts),
        purpose=PURPOSE,
        dedup_key=f"identity-callback-failed:{check.id}:delivered",
    )
