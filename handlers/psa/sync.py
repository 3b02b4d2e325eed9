"""What one PSA outbox row does through a connector (the edge's notifier calls `perform`).

Nothing is written twice. When an earlier attempt may have reached the PSA (it timed out, or
its process died before recording the answer), the write is first looked up: a create by
the bot's external reference on the ticket, a note, time entry or resolution note by its
own reference (`marker`), which it carries as the last line of its text. Where the PSA
documents no way to look such a write up, it is not sent again: the row is given up in
doubt and the technician is told to check (deliveries.record_failure). The payload's
`clean` counts the attempts known to have written nothing, so a PSA that simply said "503"
or "429" is not asked to search every time.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

from handlers.psa import rules
from handlers.psa.connector import (
    MARKER,
    NOTE_POSTED,
    UNREADABLE_ANSWER,
    Company,
    NewTicket,
    PsaConnector,
    PsaError,
    PsaRef,
    Resolution,
    TimeWork,
    collect_went_without,
    optional,
    stop_collecting,
)

log = logging.getLogger(__name__)
# The longest PSA id or number a ticket keeps (tickets.psa_id / psa_number).
REF_ROOM = 64
# find_company's answer when the PSA would not let the bot read companies.
_UNREAD = Company("", "")


def needs_lookup(payload: dict[str, Any], attempts: int) -> bool:
    """An earlier attempt of this write may have reached the PSA."""
    return int(payload.get("clean") or 0) < attempts - 1


async def perform(
    connector: PsaConnector, *, kind: str, payload: dict[str, Any], attempts: int
) -> dict[str, Any]:
    """Carry out one row; returns what to remember (the PSA id and number for a create,
    `went_without`: facts the PSA would not let the bot read, which `show` names)."""
    went_without, token = collect_went_without()
    try:
        result = await _perform(connector, kind=kind, payload=payload, attempts=attempts)
    except UNREADABLE_ANSWER as exc:
        # An answer not in the PSA's documented shape (an id that is no number, a row
        # without its id): asking again gets the same answer, so the write is refused and
        # told once, never retried in a loop nor left to hold the ticket's later writes.
        log.warning("%s: an answer the bot cannot read", connector.name, exc_info=True)
        said = " ".join(str(exc).split())[:160]
        raise PsaError(
            f"{connector.name}: answered in a shape the bot cannot read "
            f"({type(exc).__name__}: {said})",
            kind="rejected",
        ) from exc
    finally:
        stop_collecting(token)
    if went_without:
        result["went_without"] = "; ".join(went_without)[:1000]
    return result


async def _perform(
    connector: PsaConnector, *, kind: str, payload: dict[str, Any], attempts: int
) -> dict[str, Any]:
    if kind == rules.CREATE:
        return await _create(connector, payload, attempts)
    ref = PsaRef(str(payload["psa_id"]), str(payload.get("psa_number") or ""))
    done = {"psa_id": ref.id, "psa_number": ref.number}
    doubt = needs_lookup(payload, attempts)
    marker = str(payload.get(MARKER) or "")
    if kind == rules.NOTE:
        if doubt and await _already_there(connector, ref, kind, marker):
            return {**done, "found_in_psa": True}
        await _attempt(connector.add_note(ref, rules.marked(str(payload["text"]), marker)))
    elif kind == rules.TIME:
        if doubt and await _already_there(connector, ref, kind, marker):
            return {**done, "found_in_psa": True}
        raw = payload.get("ended_at")
        ended = datetime.fromisoformat(str(raw)) if raw else None
        work = TimeWork(
            minutes=int(payload["minutes"]),
            note=rules.marked(str(payload.get("note") or ""), marker),
            technician_email=str(payload.get("technician_email") or ""),
            ended_at=ended or datetime.now(UTC),
        )
        await _attempt(connector.add_time(ref, work))
    elif kind == rules.PRIORITY:
        if payload.get("priority") == "P1":
            await connector.raise_to_top_priority(ref)  # a field set twice is set once
    elif kind == rules.CLOSE:
        await _close(connector, ref, payload, doubt=doubt, marker=marker)
    else:
        raise PsaError(f"unknown PSA write {kind!r}", kind="rejected")
    return done


async def _close(
    connector: PsaConnector, ref: PsaRef, payload: dict[str, Any], *, doubt: bool, marker: str
) -> None:
    """The status change is a field set (idempotent); a resolution note posted on its own
    (Freshservice, ConnectWise) is looked up like any note when an attempt is in doubt."""
    text = str(payload.get("text") or payload.get("note") or "")
    note_posted = bool(payload.get(NOTE_POSTED))
    if connector.closure_posts_note:
        text = rules.marked(text, marker)
        if doubt and not note_posted:
            note_posted = await _already_there(connector, ref, rules.CLOSE, marker)
    resolution = Resolution(
        note=str(payload.get("note") or ""),
        category=str(payload.get("category") or ""),
        kb_article=str(payload.get("kb_article") or ""),
        text=text,
        note_posted=note_posted,
    )
    try:
        await connector.close(ref, resolution)
    except PsaError as exc:
        if note_posted:
            exc.progress[NOTE_POSTED] = True  # found there: never posted again
        exc.clean = exc.definite
        raise


async def _attempt(write: Awaitable[None]) -> None:
    """Make the write; a failure says whether it certainly wrote nothing (every attempt
    before this one is accounted for: it was looked up, or needed not to be)."""
    try:
        await write
    except PsaError as exc:
        exc.clean = exc.definite
        raise


async def _already_there(connector: PsaConnector, ref: PsaRef, kind: str, marker: str) -> bool:
    """Whether an earlier attempt of this write reached the PSA (looked up by its marker).
    Raises PsaError(in_doubt) when that cannot be known: never sent blindly again."""
    what = "resolution note" if kind == rules.CLOSE else rules.WHAT.get(kind, kind)
    found: bool | None = None
    why = ""
    if marker:
        find = connector.find_time if kind == rules.TIME else connector.find_note
        try:
            found = await find(ref, marker)
        except PsaError as exc:
            if not exc.unreadable:
                raise
            why = f"the integration user may not read {exc.unreadable}"
    if found is not None:
        return found
    why = why or (
        f"{connector.name} offers no way to look it up"
        if marker
        else "it carries no reference to look it up by"
    )
    raise PsaError(
        f"{connector.name}: an earlier attempt of this {what} got no answer, so it may or may "
        f"not be in {connector.name}; {why}, so it is not sent again (it could appear twice)",
        kind="rejected",
        in_doubt=True,
    )


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
        company = None
        if ticket.company:
            company = await optional(
                connector.find_company(ticket.company),
                _UNREAD,
                what=f"the company {ticket.company}",
                system=connector.name,
            )
        if company is _UNREAD:
            # Its contracts cannot be looked up either: the default tier, and why.
            company = None
            result["contract_error"] = f"{connector.name} companies could not be read"
        result["company"] = company.name if company else ""
        if payload.get("tier_request") and "contract_error" not in result:
            result["contracts"] = await _contracts(connector, company, result)
        if ref is None:
            ref = await connector.create_ticket(ticket, company)
    except PsaError as exc:
        # Everything before this attempt is accounted for (it looked up, or needed not to):
        # when the PSA certainly refused this one too, the next attempt need not search.
        exc.clean = exc.definite
        raise
    for value in (ref.id, ref.number):
        if not value.strip() or len(value) > REF_ROOM or not value.isprintable():
            # Made there, maybe, but not a reference the ticket can keep (nor show).
            raise PsaError(
                f"{connector.name}: answered a ticket id or number the bot cannot keep "
                f"({len(value)} characters: {value[:40]!r})",
                kind="rejected",
            )
    result |= {"psa_id": ref.id, "psa_number": ref.number}
    return result


async def _contracts(connector: PsaConnector, company: Any, result: dict[str, Any]) -> list[str]:
    """The company's active contract names; a refused look-up leaves the default tier."""
    if company is None:
        return []
    try:
        return await connector.active_contracts(company)
    except PsaError as exc:
        # A 403 here (PsaError.unreadable) is the integration user not allowed to read
        # contracts: like any refused look-up, not a reason to hold the ticket back.
        if exc.kind != "rejected":
            raise
        log.warning(
            "%s: the contracts of %s could not be read (%s); the default tier applies",
            connector.name,
            company.name,
            exc,
        )
        result["contract_error"] = str(exc)[:300]
        return []
