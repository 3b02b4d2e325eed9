"""Duplicate reports of a P1: `link HD-9 HD-7` (or **Add to HD-7**) files HD-9 under HD-7.

The P1's users affected becomes its own plus those of every report filed under it; its incident
notice is edited in place (no new notice, no new page); the requester of the report is told
which incident it is part of. A P1 filed under another brings the reports filed under it along
(their requesters told again), so no report is filed under a filed one. Closing the P1 closes
every report filed under it with the P1's resolution, and each requester gets a survey; a
report whose requester's identity is not confirmed (required, pending, denied) stays open, as
it would for `close`. Rows are locked in id order (the reports brought along: after both).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from cards.model import Mention
from handlers import csat, identity, incidents, notify, psa, sla
from handlers.commands import TICKET_REF, Command, ticket_ref
from handlers.deps import Deps
from handlers.directory import Person
from handlers.types import Actor, DomainError, Interaction, InvalidInput, NotFound, Reply
from handlers.working import cards
from handlers.working.confirm import retire_on_close
from storage import tickets as tickets_repo
from storage import working as repo
from storage.models import Ticket

log = logging.getLogger(__name__)
USAGE = "Try `ticket link HD-9 HD-7` (the report first, then the open P1 it repeats)."
Address = tuple[str, str] | None


async def link_command(deps: Deps, interaction: Interaction, command: Command) -> Reply:
    """`ticket link HD-9 HD-7`: file HD-9 under the open P1 HD-7 (technicians only)."""
    # Each number as every other command reads it: `hd-09` is HD-9.
    numbers = [ticket_ref(Command("link", word)) for word in command.words[:2]]
    if len(numbers) < 2 or numbers[0] is None or numbers[1] is None:
        raise InvalidInput(f"Which tickets? {USAGE}")
    return await file_under(deps, interaction, report=numbers[0], p1=numbers[1])


async def add_button(deps: Deps, interaction: Interaction) -> Reply:
    """**Add to HD-7** on the card of a ticket that matches an open P1."""
    report = str(interaction.data.get("ticket") or "").strip().upper()
    p1 = str(interaction.data.get("p1") or "").strip().upper()
    if not (TICKET_REF.match(report) and TICKET_REF.match(p1)):
        raise InvalidInput(f"This button does not name two tickets. {USAGE}")
    return await file_under(deps, interaction, report=report, p1=p1, button=True)


def _refusal(report: Ticket, p1: Ticket) -> str | None:
    """Why `report` cannot be filed under `p1` (None: it can)."""
    if report.id == p1.id:
        return f"{report.number} cannot be filed under itself."
    if p1.status != "open":
        return f"{p1.number} is {p1.status}: only an open P1 takes reports."
    if p1.priority != "P1":
        return f"{p1.number} is not a P1: raise it first (`ticket p1 {p1.number}`)."
    if p1.filed_under:
        return f"{p1.number} is itself filed under {p1.filed_under}: file it there."
    if report.filed_under:
        return f"{report.number} is already filed under {report.filed_under}."
    if report.status != "open":
        return f"{report.number} is {report.status}: only open tickets can be filed."
    return None


async def _both(
    session: AsyncSession, report: str, p1: str, *, lock: bool
) -> tuple[Ticket, Ticket]:
    first = await tickets_repo.get_by_number(session, report)
    second = await tickets_repo.get_by_number(session, p1)
    for number, found in ((report, first), (p1, second)):
        if found is None:
            raise NotFound(f"There is no ticket {number}.")
    assert first is not None and second is not None
    if lock:  # in id order, as every other writer of two tickets
        for ticket in sorted({first.id: first, second.id: second}.values(), key=lambda t: t.id):
            await session.refresh(ticket, with_for_update=True)
    return first, second


async def file_under(
    deps: Deps, interaction: Interaction, *, report: str, p1: str, button: bool = False
) -> Reply:
    """File `report` under the open P1 `p1`, or say why not. The report's **Add to** card
    button (`button`) is its first response if it has none (SPEC: "a card button")."""
    actor = interaction.actor
    await deps.require_technician(actor, "file tickets under a P1")
    async with deps.sessions() as session:
        seen, target = await _both(session, report, p1, lock=False)
        # A P1 filed under another brings the reports filed under it along (no chains).
        along = await repo.filed_under(session, seen.number) if seen.filed_count else []
    if (reason := _refusal(seen, target)) is not None:
        raise DomainError(reason)
    to = await csat.survey_address(deps, seen)  # the directory, before anything is locked
    along_to = {t.id: await csat.survey_address(deps, t) for t in along if t.status == "open"}
    async with deps.sessions() as session, session.begin():
        child, parent = await _both(session, report, p1, lock=True)
        if (reason := _refusal(child, parent)) is not None:
            raise DomainError(reason)
        if child.identity_state == "denied":
            # A pending check does not block filing (SPEC), but a Deny does: its "users
            # affected" are the caller's word, and the requester would be told it is theirs.
            await identity.audit_gate(session, interaction, child, "link")
            return Reply(text=identity.refusal(child))
        if button:
            await sla.record_first_response(
                session,
                child,
                actor,
                interaction.conversation.id,
                at=deps.clock(),
                action="file_under_p1",
                refresh_card=False,  # refreshed below
            )
        moved = await repo.filed_under(session, child.number, lock=True)
        child.filed_under = parent.number
        parent.filed_count += 1 + child.filed_count
        parent.filed_users += child.users_affected + child.filed_users
        child.filed_count, child.filed_users = 0, 0
        for ticket in moved:
            ticket.filed_under = parent.number
        cancelled = await incidents.cancel_unsent(session, ticket=child)
        edits = await incidents.refresh_notice(session, deps, ticket=parent)
        if moved:  # its own notice no longer counts the reports it brought along
            await incidents.refresh_notice(session, deps, ticket=child)
        for ticket in (child, parent, *moved):
            await notify.refresh_ticket_card(session, ticket)

        async def event(ticket: Ticket, kind: str, data: dict[str, Any]) -> None:
            await tickets_repo.add_event(
                session,
                ticket_id=ticket.id,
                kind=kind,
                actor_platform=actor.platform,
                actor_id=actor.id,
                channel=interaction.conversation.id,
                data=data,
            )

        for ticket in moved:
            data = {"under": parent.number, "from": child.number}
            await event(ticket, "ticket.filed", data | {"users_affected": ticket.users_affected})
            if ticket.status != "open":
                continue
            # Asked before the lock; a report filed under `child` since then is asked now.
            address = (
                along_to[ticket.id]
                if ticket.id in along_to
                else await csat.survey_address(deps, ticket)
            )
            if address is not None:
                await notify.dm(
                    session,
                    platform=address[0],
                    user_id=address[1],
                    text=cards.filed_text(ticket, parent),
                    ticket=ticket,
                    purpose=cards.FILED,
                    dedup_key=f"{cards.FILED}:{ticket.id}:{parent.number}",
                )
        await event(
            child,
            "ticket.filed",
            {
                "under": parent.number,
                "users_affected": child.users_affected,
                "cancelled": cancelled,
            },
        )
        await event(
            parent,
            "incident.report_filed",
            {
                "report": child.number,
                "users_affected": child.users_affected,
                "total_users_affected": parent.total_users_affected,
                "reports": parent.filed_count,
                "along": [t.number for t in moved],
                "notice_edits": edits,
            },
        )
        if to is not None:
            await notify.dm(
                session,
                platform=to[0],
                user_id=to[1],
                text=cards.filed_text(child, parent),
                ticket=child,
                purpose=cards.FILED,
                dedup_key=f"{cards.FILED}:{child.id}",
            )
        else:
            log.info("%s filed under %s: its requester has no chat id", child.number, p1)
    log.info("report filed under a P1", extra={"ticket": child.number, "p1": parent.number})
    answer = _filed_answer(child, parent, cancelled, edits=edits, along=[t.number for t in moved])
    return Reply(text=answer, private=False)


def _filed_answer(
    child: Ticket, parent: Ticket, cancelled: list[str], *, edits: int, along: list[str]
) -> str:
    """`edits`: incident notices queued for an edit (none: no incident channel, or the
    notice failed for good, so there is nothing to say is updated)."""
    reports = parent.filed_count
    notice = "Its incident notice is updated; nobody" if edits else "Nobody"
    text = (
        f"{child.number} is filed under {parent.number}: {parent.number} now has "
        f"{parent.total_users_affected} users affected in total ({parent.users_affected} of its "
        f"own + {parent.filed_users} in {reports} filed report{'s' if reports != 1 else ''}). "
        f"{notice} is paged again."
    )
    if along:
        text += (
            f" The {'reports' if len(along) > 1 else 'report'} filed under {child.number} "
            f"({', '.join(along)}) {'are' if len(along) > 1 else 'is'} now filed under "
            f"{parent.number} with it."
        )
    return text + _cancelled_text(child, cancelled)


def _cancelled_text(child: Ticket, cancelled: list[str]) -> str:
    """The report's own notice and pages that had not gone out and now never will: its
    technician may have been told a page was being retried, so say it no longer is."""
    what = [key.rsplit(":", 1)[-1] for key in cancelled]
    pagers = [incidents.PAGER_NAMES[w] for w in what if w in incidents.PAGER_NAMES]
    text = ""
    if pagers:
        many = len(pagers) > 1
        text += (
            f" {child.number}'s own {' and '.join(pagers)} page{'s' if many else ''} had not "
            f"gone out: {'they are' if many else 'it is'} not sent."
        )
    if len(pagers) < len(what):
        text += f" {child.number}'s own incident notice had not gone out: it is not posted."
    return text


# -- closing the P1 ------------------------------------------------------------------------------


def _closes_with_p1(report: Ticket) -> bool:
    """An open report closes with its P1 unless its identity check still gates it (SPEC: no
    ticket in `identity.categories` is closed before its requester is confirmed)."""
    return report.status == "open" and report.identity_state not in identity.GATED_STATES


async def drop_p1_matches(session: AsyncSession, p1: Ticket) -> None:
    """The P1 was closed: tickets whose card said `Matches open P1 <it>` with **Add to <it>**
    (not filed under it) no longer match an open P1; their cards are refreshed without both."""
    for ticket in await repo.matching_p1(session, p1.number, lock=True):
        ticket.p1_match = ""
        await notify.refresh_ticket_card(session, ticket)


async def closing_with(session: AsyncSession, p1: Ticket) -> list[Ticket]:
    """The reports filed under `p1` that its closure closes (oldest first)."""
    return [t for t in await repo.filed_under(session, p1.number) if _closes_with_p1(t)]


async def filed_addresses(deps: Deps, p1: Ticket) -> dict[int, tuple[Address, bool]]:
    """Where each report filed under `p1` gets its survey, and whether its requester is a VIP
    (`csat.survey_facts`: directory look-ups, before the closure's transaction)."""
    async with deps.sessions() as session:
        reports = await closing_with(session, p1)
    return {t.id: await csat.survey_facts(deps, t) for t in reports}


async def close_filed(
    session: AsyncSession,
    deps: Deps,
    *,
    p1: Ticket,
    actor: Actor,
    now: datetime,
    closed_by: Mention,
    addresses: dict[int, tuple[Address, bool]],
    channel: str = "",
    closer: Person | None = None,
) -> tuple[list[str], list[str]]:
    """Close every open report filed under the P1 just closed, with its resolution, and queue
    each requester's survey; returns their numbers, and those of the reports left open because
    their requester's identity is not confirmed (each with an audit event). The closure is the
    first response of a report that had none (`channel`: where the P1 was closed), as it is
    for a ticket closed on its own: its outcome, seconds and who answered are recorded
    together (the report's median counts it as its Respond met does). Each report's thread
    is told, its technician mentioned unless they closed the P1 (`closer`: their directory
    entry): the closure happened on the P1, not where the report is worked."""
    closed: list[str] = []
    kept: list[str] = []
    for report in await repo.filed_under(session, p1.number, lock=True):
        if report.status != "open":
            continue
        if not _closes_with_p1(report):
            await tickets_repo.add_event(
                session,
                ticket_id=report.id,
                kind="ticket.kept_open",
                actor_platform=actor.platform,
                actor_id=actor.id,
                channel=channel,
                data={"with": p1.number, "identity": report.identity_state},
            )
            kept.append(report.number)
            continue
        await sla.record_first_response(
            session, report, actor, channel, at=now, action="close", refresh_card=False
        )
        report.status, report.closed_at = "closed", now
        report.resolution_note = p1.resolution_note
        report.resolution_category = p1.resolution_category
        report.kb_article = p1.kb_article
        await sla.on_closed(session, report, at=now)  # both clocks stop: met or missed
        await retire_on_close(session, report)  # its requester is asked nothing more
        # A form in the report card's place (Teams: its own Close or Escalate) is of no use
        # now, as for the P1 itself: the refresh held for it shows the closed card at once.
        if not await notify.card_form_answered(session, report, now=now):
            await notify.refresh_ticket_card(session, report)
        await psa.on_closed(session, ticket=report, closed_by=closed_by.plain())
        await tickets_repo.add_event(
            session,
            ticket_id=report.id,
            kind="ticket.closed",
            actor_platform=actor.platform,
            actor_id=actor.id,
            channel=channel,
            data={
                "with": p1.number,
                "category": report.resolution_category,
                "kb_article": report.kb_article,
                "note": report.resolution_note,
                "fix_confirmed": report.fix_confirmed_at is not None,
            },
        )
        await incidents.on_ticket_closed(session, deps, ticket=report, actor=actor, channel=channel)
        if report.priority == "P1":  # a P1 filed under this one: tickets matching it no more
            await drop_p1_matches(session, report)
        await notify.tell_technician(
            session,
            report,
            cards.closed_with_text(report, p1, closed_by),
            purpose="closed",
            mention=not notify.is_ticket_technician(actor, closer, report),
        )
        if report.id in addresses:
            to, vip = addresses[report.id]
        else:  # filed after the look-up: ask now (rare)
            to, vip = await csat.survey_facts(deps, report)
        await csat.schedule_survey(session, deps, ticket=report, to=to, now=now)
        await csat.schedule_followup(
            session, deps, ticket=report, closed_by=actor, now=now, vip=vip, channel=channel
        )
        closed.append(report.number)
    return closed, kept
