"""What gets queued for the PSA when: one outbox row per write, in its cause's transaction.

Each row names the ticket's previous PSA row (`psa_after`), so a ticket's writes reach the
PSA in the order they happened and never before the ticket exists there. Tickets opened
while no PSA was configured (`psa_system` empty) are left alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from handlers.config import HelpdeskConfig
from handlers.psa import rules
from handlers.psa.connector import MARKER
from storage import outbox
from storage import psa as psa_repo
from storage.models import Ticket

_TARGETS: dict[int, tuple[HelpdeskConfig, dict[str, Any]]] = {}


def _tier_request(config: HelpdeskConfig) -> dict[str, Any]:
    """psa.tiers and the SLA targets of its tiers (built once per config)."""
    cached = _TARGETS.get(id(config))
    if cached is None or cached[0] is not config:
        cached = (config, {"tiers": dict(config.psa.tiers), "targets": rules.tier_targets(config)})
        _TARGETS[id(config)] = cached
    return cached[1]


async def _enqueue(
    session: AsyncSession, ticket: Ticket, kind: str, payload: dict[str, Any]
) -> None:
    if not ticket.psa_system:
        return
    # The create is a ticket's first PSA row: nothing to look up before it.
    previous = None if kind == rules.CREATE else await psa_repo.last_row_id(session, ticket.id)
    if kind in rules.MARKED:
        # This write's own reference, written into its text: a retry after a lost answer
        # looks it up there instead of writing it twice (sync.perform).
        payload = {**payload, MARKER: rules.external_key(ticket.number)}
    await outbox.enqueue(
        session,
        kind=kind,
        ticket_id=ticket.id,
        payload={
            "purpose": rules.PURPOSE,
            "ticket": ticket.number,
            "system": ticket.psa_system,
            "psa_after": previous,
            **payload,
        },
    )


async def on_ticket_opened(
    session: AsyncSession, config: HelpdeskConfig, *, ticket: Ticket, technician_email: str
) -> None:
    """Queue the PSA ticket (and, when the tier is pending, the contract look-up with it)."""
    if not ticket.psa_system:
        return
    payload: dict[str, Any] = rules.new_ticket(
        ticket, key=rules.external_key(ticket.number), technician_email=technician_email
    )
    if ticket.tier_source == "pending":
        payload["tier_request"] = _tier_request(config)
    await _enqueue(session, ticket, rules.CREATE, payload)


async def on_time_logged(
    session: AsyncSession,
    *,
    ticket: Ticket,
    minutes: int,
    note: str,
    technician_email: str,
    at: datetime,
) -> None:
    await _enqueue(
        session,
        ticket,
        rules.TIME,
        {
            "minutes": minutes,
            "note": note,
            "technician_email": technician_email,
            "ended_at": at.isoformat(),
        },
    )


async def on_escalated(
    session: AsyncSession,
    *,
    ticket: Ticket,
    queue: str,
    by: str,
    facts: Mapping[str, str],
    labels: Mapping[str, str],
) -> None:
    text = rules.escalation_note(queue=queue, by=by, facts=facts, labels=labels)
    await _enqueue(session, ticket, rules.NOTE, {"text": text, "about": "escalation"})


async def on_identity_outcome(
    session: AsyncSession,
    *,
    ticket: Ticket,
    outcome: str,
    manager: str,
    at: datetime,
    platform: str,
    check_id: int,
    phone: str = "",
) -> None:
    text = rules.identity_note(
        outcome=outcome, manager=manager, at=at, platform=platform, check_id=check_id, phone=phone
    )
    await _enqueue(session, ticket, rules.NOTE, {"text": text, "about": f"identity {outcome}"})


async def on_priority_raised(session: AsyncSession, *, ticket: Ticket) -> None:
    await _enqueue(session, ticket, rules.PRIORITY, {"priority": ticket.priority})


async def on_closed(session: AsyncSession, *, ticket: Ticket, closed_by: str) -> None:
    text = rules.resolution_text(
        note=ticket.resolution_note,
        category=ticket.resolution_category,
        kb_article=ticket.kb_article,
        closed_by=closed_by,
    )
    await _enqueue(
        session,
        ticket,
        rules.CLOSE,
        {
            "note": ticket.resolution_note,
            "category": ticket.resolution_category,
            "kb_article": ticket.kb_article,
            "text": text,
        },
    )
