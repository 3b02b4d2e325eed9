"""What one PSA outbox row does through a connector (the edge's notifier calls `perform`).

A create is never made twice: when an earlier attempt may have reached the PSA (it timed
out, or its process died before recording the answer), the ticket is first looked up by the
bot's external reference. The payload's `clean` counts the attempts known to have created
nothing, so a PSA that simply said "503" or "429" is not asked to search every time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from handlers.psa import rules
from handlers.psa.connector import (
    NOTE_POSTED,
    NewTicket,
    PsaConnector,
    PsaError,
    PsaRef,
    Resolution,
    TimeWork,
)


def needs_lookup(payload: dict[str, Any], attempts: int) -> bool:
    """An earlier attempt of this create may have reached the PSA."""
    return int(payload.get("clean") or 0) < attempts - 1


async def perform(
    connector: PsaConnector, *, kind: str, payload: dict[str, Any], attempts: int
) -> dict[str, Any]:
    """Carry out one row; returns what to remember (the PSA id and number for a create)."""
    if kind == rules.CREATE:
        return await _create(connector, payload, attempts)
    ref = PsaRef(str(payload["psa_id"]), str(payload.get("psa_number") or ""))
    if kind == rules.NOTE:
        await connector.add_note(ref, str(payload["text"]))
    elif kind == rules.TIME:
        raw = payload.get("ended_at")
        ended = datetime.fromisoformat(str(raw)) if raw else None
        await connector.add_time(
            ref,
            TimeWork(
                minutes=int(payload["minutes"]),
                note=str(payload.get("note") or ""),
                technician_email=str(payload.get("technician_email") or ""),
                ended_at=ended or datetime.now(UTC),
            ),
        )
    elif kind == rules.PRIORITY:
        if payload.get("priority") == "P1":
            await connector.raise_to_top_priority(ref)
    elif kind == rules.CLOSE:
        await connector.close(
            ref,
            Resolution(
                note=str(payload.get("note") or ""),
                category=str(payload.get("category") or ""),
                kb_article=str(payload.get("kb_article") or ""),
                text=str(payload.get("text") or payload.get("note") or ""),
                note_posted=bool(payload.get(NOTE_POSTED)),
            ),
        )
    else:
        raise PsaError(f"unknown PSA write {kind!r}", kind="rejected")
    return {"psa_id": ref.id, "psa_number": ref.number}


async def _create(
    connector: PsaConnector, payload: dict[str, Any], attempts: int
) -> dict[str, Any]:
    ticket = NewTicket.from_dict(payload)
    result: dict[str, Any] = {}
    ref: PsaRef | None = None
    if needs_lookup(payload, attempts):
        ref = await connector.find_by_reference(ticket.key)
        result["found_by_reference"] = ref is not None
    try:
        company = await connector.find_company(ticket.company) if ticket.company else None
        result["company"] = company.name if company else ""
        if payload.get("tier_request"):
            result["contracts"] = await _contracts(connector, company, result)
        if ref is None:
            ref = await connector.create_ticket(ticket, company)
    except PsaError as exc:
        # Everything before this attempt is accounted for (it looked up, or needed not to):
        # when the PSA certainly refused this one too, the next attempt need not search.
        exc.clean = exc.definite
        raise
    result |= {"psa_id": ref.id, "psa_number": ref.number}
    return result


async def _contracts(connector: PsaConnector, company: Any, result: dict[str, Any]) -> list[str]:
    """The company's active contract names; a refused look-up leaves the default tier."""
    if company is None:
        return []
    try:
        return await connector.active_contracts(company)
    except PsaError as exc:
        if exc.kind != "rejected":
            raise
        result["contract_error"] = str(exc)[:300]
        return []
