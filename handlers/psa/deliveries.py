"""Outbox hooks of PSA rows (called from handlers.deliveries in the worker's transactions,
and by the edge's notifier for a failed call).

Before a row goes: no call while the PSA asked for a pause (Retry-After) or refuses the
credentials (then one write at a time tests them again, every few minutes); the ticket's
previous PSA write first; the PSA id filled in. After: the id and number stored with the
ticket, the tier its contract gives applied, the card refreshed, the next write woken.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cards.model import Inline, Rich, Typed
from handlers import notify, sla
from handlers.config import HelpdeskConfig
from handlers.psa import cards, rules
from handlers.psa.connector import PsaError
from storage import outbox
from storage import psa as psa_repo
from storage import tickets as repo
from storage.models import OutboxMessage, Ticket, utcnow

log = logging.getLogger(__name__)
# Refused credentials are tried again this often (one write at a time), never in a loop.
AUTH_RECHECK = 300.0
# A row waits at most this long for the write before it (which also wakes it when done).
CHAIN_WAIT = 30.0
# A create that keeps failing is reported to the technician after this many attempts.
REPORT_AFTER_ATTEMPTS = 3
OUTAGE = "psa-outage"


@dataclass(frozen=True)
class Ready:
    """`payload` to send now; or None and `wait` seconds, or `give_up` with the reason."""

    payload: dict[str, Any] | None
    wait: float = 0.0
    give_up: str = ""


def is_psa_row(message: OutboxMessage) -> bool:
    return psa_repo.is_psa_kind(message.kind)


async def prepare(session: AsyncSession, *, message: OutboxMessage) -> Ready:
    """The payload to deliver now, or how long to wait (the PSA, or the write before it)."""
    payload = dict(message.payload)
    system = str(payload.get("system") or "")
    now = utcnow()
    state = await psa_repo.gate(session, system)
    if state is not None and state.auth_failed_at is not None:
        # Decided under the row's lock: a write that ends the outage meanwhile waits for this
        # one to be put back, then wakes it (else it could sleep through the recovery).
        state = await psa_repo.gate(session, system, lock=True)
    if state is not None and state.blocked_until is not None and state.blocked_until > now:
        if state.auth_failed_at is not None:
            ticket = await session.get(Ticket, message.ticket_id)
            if ticket is not None:
                await _tell_outage(session, ticket, state.auth_failed_at, state.auth_error)
        wait = (state.blocked_until - now).total_seconds()
        return Ready(None, wait=wait + random.uniform(0.0, min(1.0, 0.1 * wait + 0.05)))
    if state is not None and state.auth_failed_at is not None:
        until = psa_repo.later(AUTH_RECHECK)
        if not await psa_repo.claim_probe(session, system, seen=state.blocked_until, until=until):
            return Ready(None, wait=AUTH_RECHECK)  # another write is testing the credentials
    previous = payload.get("psa_after")
    if previous:
        before = await psa_repo.row_state(session, int(previous))
        if before is not None and before[0] == "pending":
            wait = max((before[1] - now).total_seconds(), 0.0) + 0.5
            return Ready(None, wait=min(wait, CHAIN_WAIT))
    if message.kind == rules.CREATE:
        return Ready(payload)
    if message.ticket_id is None:
        return Ready(None, give_up="the row names no ticket")
    psa_id, psa_number = await psa_repo.ticket_ref(session, message.ticket_id)
    if not psa_id:
        ticket = await session.get(Ticket, message.ticket_id)
        if ticket is None:
            return Ready(None, give_up="the ticket no longer exists")
        return await _without_ticket(session, ticket)
    payload["psa_id"], payload["psa_number"] = psa_id, psa_number or ""
    return Ready(payload)


async def _without_ticket(session: AsyncSession, ticket: Ticket) -> Ready:
    """A write whose PSA ticket is not there: wait for its create, or give up with it."""
    rows = await psa_repo.rows_of_kind(session, ticket_id=ticket.id, kind=rules.CREATE)
    name = rules.name_of(ticket.psa_system)
    if not rows or all(r.status in ("dead", "cancelled") for r in rows):
        return Ready(None, give_up=f"not sent: {ticket.number} never reached {name}")
    return Ready(None, wait=CHAIN_WAIT)


async def after_delivery(
    session: AsyncSession,
    config: HelpdeskConfig,
    *,
    message: OutboxMessage,
    result: dict[str, Any],
    now: datetime,
) -> None:
    """Store what a create answered (id, number, tier, the SLA targets and alarms that tier
    gives), refresh the card, wake what waits."""
    system = str(message.payload.get("system") or "")
    if await psa_repo.credentials_accepted(session, system):
        log.info("%s accepts the credentials again; sending the writes kept", rules.name_of(system))
        await psa_repo.wake_all(session)
    if message.ticket_id is None:
        return
    if message.kind == rules.CREATE:
        ticket = await session.get(Ticket, message.ticket_id)
        if ticket is not None:
            await _created(session, config, ticket, message, result, now=now)
    await psa_repo.wake_next(session, ticket_id=message.ticket_id, after_id=message.id)


async def _created(
    session: AsyncSession,
    config: HelpdeskConfig,
    ticket: Ticket,
    message: OutboxMessage,
    result: dict[str, Any],
    *,
    now: datetime,
) -> None:
    ticket.psa_id = str(result.get("psa_id") or "") or None
    ticket.psa_number = str(result.get("psa_number") or "") or ticket.psa_id
    request = message.payload.get("tier_request")
    if isinstance(request, dict) and ticket.tier_source == "pending":
        due = _apply_tier(ticket, request, result)
        if due is not None:
            # The SLA warnings and breaches queued at intake move with the targets.
            await sla.move_targets(
                session,
                config,
                ticket,
                respond_by=due[0],
                resolve_by=due[1],
                now=now,
                reason=f"{ticket.number} has the {ticket.tier} tier now: its targets moved",
            )
    await repo.add_event(
        session,
        ticket_id=ticket.id,
        kind="psa.created",
        data={
            "system": ticket.psa_system,
            "psa_number": ticket.psa_number,
            "psa_id": ticket.psa_id,
            "found_by_reference": bool(result.get("found_by_reference")),
            "company": result.get("company", ""),
            "tier": ticket.tier,
            "tier_source": ticket.tier_source,
            "contract": ticket.tier_contract,
        },
    )
    await notify.refresh_ticket_card(session, ticket)
    if message.failure_reported:
        await notify.tell_technician(
            session,
            ticket,
            cards.arrived_text(ticket),
            purpose=rules.PURPOSE,
            dedup_key=f"psa-arrived:{message.id}",
        )


def _apply_tier(
    ticket: Ticket, request: dict[str, Any], result: dict[str, Any]
) -> tuple[datetime, datetime] | None:
    """The tier of the company's contract; its SLA times (respond-by, resolve-by) counted
    from creation, or None when the tier did not come from the PSA."""
    tiers = request.get("tiers") or {}
    tier, contract = rules.tier_from_contracts(result.get("contracts") or [], tiers)
    if not tier:
        error = str(result.get("contract_error") or "")
        ticket.tier_source = "psa-error" if error else "psa-none"
        ticket.tier_contract = error[:200]
        return None
    ticket.tier, ticket.tier_source, ticket.tier_contract = tier, "psa", contract[:200]
    return rules.due_from_targets(
        (request.get("targets") or {}).get(tier, {}),
        priority=ticket.priority,
        opened_at=ticket.created_at,
    )


async def _tell_outage(session: AsyncSession, ticket: Ticket, since: Any, error: str) -> None:
    """Tell the ticket's technician that the PSA refuses the credentials, once per outage."""
    await notify.tell_technician(
        session,
        ticket,
        cards.outage_text(ticket, error=error, since=since),
        purpose=rules.PURPOSE,
        dedup_key=(
            f"{OUTAGE}:{ticket.psa_system}:{since.isoformat()}:"
            f"{ticket.source_platform}:{ticket.technician_id}"
        )[:255],
    )


async def record_failure(
    sessions: async_sessionmaker[AsyncSession], *, message: OutboxMessage, error: PsaError
) -> None:
    """What a failed PSA call means beyond its row: a pause for the whole PSA, an outage of
    refused credentials (told once), a write known not to have happened, the steps of a
    write the PSA took already, a report."""
    system = str(message.payload.get("system") or "")
    async with sessions() as session, session.begin():
        ticket = None
        if message.ticket_id is not None:
            await repo.lock(session, message.ticket_id)
            ticket = await session.get(Ticket, message.ticket_id)
        if error.kind == "auth":
            since, began = await psa_repo.credentials_refused(
                session, system, error=str(error), recheck_at=psa_repo.later(AUTH_RECHECK)
            )
            if began:
                log.warning(
                    "%s refuses the credentials (%s): PSA writes are kept and tried again "
                    "every %.0f s",
                    rules.name_of(system),
                    error,
                    AUTH_RECHECK,
                )
            if ticket is not None:
                await _tell_outage(session, ticket, since, str(error))
        elif error.retry_after is not None and error.kind in ("throttled", "unavailable"):
            await psa_repo.pause(session, system, until=psa_repo.later(error.retry_after))
        kept = dict(error.progress)  # steps done (a closure's note): not repeated
        if error.clean:
            # This attempt and every one before it wrote nothing: the next one need not
            # look anything up (sync.needs_lookup). Without it, it looks first.
            kept["clean"] = message.attempts
        if kept:
            await psa_repo.set_payload(session, message.id, {**message.payload, **kept})
        if ticket is not None:
            await _report(session, ticket, message, error)


async def _report(
    session: AsyncSession, ticket: Ticket, message: OutboxMessage, error: PsaError
) -> None:
    """Tell the technician about a write refused for good, one that may or may not have
    reached the PSA and could not be checked, or a create that keeps failing."""
    if error.in_doubt:
        stage = "doubt"
        text = cards.doubt_text(
            ticket, what=_described(message), closure=message.kind == rules.CLOSE
        )
    elif error.permanent:
        what = rules.WHAT.get(message.kind, message.kind)
        stage, text = "refused", cards.refused_text(ticket, what=what, error=str(error))
    elif (
        message.kind == rules.CREATE
        and error.kind != "auth"
        and message.attempts >= REPORT_AFTER_ATTEMPTS
        and not message.failure_reported
    ):
        stage = "slow"
        text = cards.slow_text(ticket, attempts=message.attempts, error=str(error))
    else:
        return
    await notify.tell_technician(
        session, ticket, text, purpose=rules.PURPOSE, dedup_key=f"psa-{stage}:{message.id}"
    )
    await outbox.set_failure_reported(session, message.id)


def _described(message: OutboxMessage) -> Inline:
    """Which write, as the technician knows it: `note "Escalated to ..."` (its first line
    shown literally: it may quote what people typed), a time entry."""
    payload = message.payload
    if message.kind == rules.NOTE:
        first = str(payload.get("text") or "").strip().splitlines()
        return Rich('note "', Typed(first[0][:80]), '"') if first else "note"
    if message.kind == rules.TIME:
        return f"time entry of {payload.get('minutes')} minutes"
    if message.kind == rules.CLOSE:
        return "resolution note"
    return rules.WHAT.get(message.kind, message.kind)


async def on_start(sessions: async_sessionmaker[AsyncSession]) -> None:
    """A worker starting up tests refused credentials again at once (they may be fixed)."""
    async with sessions() as session, session.begin():
        if await psa_repo.recheck_now(session):
            await psa_repo.wake_all(session)
