"""A technician's call-back confirms an identity check that no manager could answer (SPEC:
"No manager on file: ... call back the number on file").

Only a check in state `no_manager` (no manager, a disabled one, or one who is not independent)
or `unreachable` (the request to the manager could not be delivered and was given up) can be
confirmed this way; never a pending one (the manager is being asked, also while the request is
still retried), nor an expired one, never a denied ticket, never without a number on file.
Only a technician may record it, never the requester, and the number recorded is the
directory's (the one the technician was told to call), never typed. The button carries only the
check's nonce; the command names the ticket and binds to its open check. Every refusal is
audited (`identity.callback_refused`), the confirmation too (`identity.callback_confirmed`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cards.model import Inline, Rich
from handlers import notify, psa
from handlers.commands import Command, ticket_ref
from handlers.deps import Deps
from handlers.directory import Person
from handlers.identity import answers, cards
from handlers.identity import service as checks
from handlers.identity.service import CheckPeople
from handlers.types import Actor, Interaction, InvalidInput, NotFound, Reply
from storage import tickets as repo
from storage.models import IdentityCheck, Ticket

log = logging.getLogger(__name__)
PURPOSE = cards.PURPOSE
ARGUMENTS = ("called-back", "called back")


def asked_for(command: Command) -> bool:
    """`verify HD-7 called-back`: the words after the ticket number ask for a call-back."""
    return " ".join(command.words[1:]).lower() in ARGUMENTS


async def verify_command(deps: Deps, interaction: Interaction, command: Command) -> Reply:
    """`ticket verify HD-7` starts a check (unchanged); `ticket verify HD-7 called-back`
    records the technician's call-back on the ticket's open call-back check."""
    number = ticket_ref(command)
    if number is None or not asked_for(command):
        return await checks.verify_command(deps, interaction, command)
    async with deps.sessions() as session:
        ticket = await repo.get_by_number(session, number)
    if ticket is None:
        raise NotFound(f"There is no ticket {number}.")
    return await _confirm(deps, interaction, ticket, nonce=None)


async def button(deps: Deps, interaction: Interaction) -> Reply:
    """**Called back: confirmed** on the call-back notice: binds to the nonce it carries."""
    nonce = interaction.data.get(cards.NONCE_KEY)
    async with deps.sessions() as session:
        check, ticket = await _by_nonce(session, nonce)
    if check is None or ticket is None:
        async with deps.sessions() as session, session.begin():
            await _refused(session, interaction, None, None, "unknown request")
        return Reply(text=cards.UNKNOWN_REQUEST)
    return await _confirm(deps, interaction, ticket, nonce=check.nonce)


async def _by_nonce(
    session: AsyncSession, nonce: object
) -> tuple[IdentityCheck | None, Ticket | None]:
    if not isinstance(nonce, str) or not 0 < len(nonce) <= 64:
        return None, None
    query = select(IdentityCheck).where(IdentityCheck.nonce == nonce)
    check = (await session.execute(query)).scalar_one_or_none()
    if check is None:
        return None, None
    return check, await session.get(Ticket, check.ticket_id)


async def _confirm(
    deps: Deps, interaction: Interaction, seen: Ticket, *, nonce: str | None
) -> Reply:
    actor = interaction.actor
    # The directory is asked before any row is locked (as `verify` does).
    technician = await deps.is_technician(actor)
    people = await checks.people_for(deps, seen, actor) if technician else None
    async with deps.sessions() as session, session.begin():
        ticket = await session.get(Ticket, seen.id, with_for_update=True)
        if ticket is None:
            raise NotFound(f"There is no ticket {seen.number}.")
        check = await _check(session, ticket, nonce)
        why_not = _why_not(
            ticket,
            check,
            actor,
            people,
            nonce=nonce,
            technician=technician,
            usable=deps.platforms,
        )
        if why_not is not None:
            reason, text = why_not
            if reason == "denied":
                await checks.audit_gate(session, interaction, ticket, "called-back")
            elif reason != "closed":
                await _refused(session, interaction, ticket, check, reason)
            if reason == "closed":
                raise InvalidInput(text)
            return Reply(text=text)
        assert check is not None and people is not None
        await _record(session, deps, interaction, ticket, check, people.asker)
        confirmed = cards.called_back_text(ticket, check)
    deps.observe("identity", outcome="called_back")
    return Reply(text=confirmed, confidential=True)  # it names the number called


async def _check(session: AsyncSession, ticket: Ticket, nonce: str | None) -> IdentityCheck | None:
    """The button's check (by its nonce), else the ticket's open check no manager could answer
    (`verify` keeps at most one); locked after the ticket."""
    query = select(IdentityCheck).where(IdentityCheck.ticket_id == ticket.id)
    if nonce is not None:
        query = query.where(IdentityCheck.nonce == nonce)
    else:
        query = query.where(IdentityCheck.state.in_(cards.CALLBACK_STATES))
    query = query.order_by(IdentityCheck.id.desc()).limit(1).with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


def _is_requester(ticket: Ticket, actor: Actor, people: CheckPeople) -> bool:
    """The technician recording the call-back is the requester: they cannot vouch for
    themselves (by chat id, AAD object id, or their directory entry's e-mail)."""
    if actor.id == ticket.requester_id or notify.is_user(
        actor, ticket.source_platform, ticket.requester_id
    ):
        return True
    asker, requester = people.asker, people.requester
    if asker is None or not asker.email:
        return False
    email = asker.email.strip().lower()
    on_file = {(ticket.requester_email or "").strip().lower()}
    if requester is not None:
        on_file.add(requester.email.strip().lower())
    return email in on_file


def _why_not(
    ticket: Ticket,
    check: IdentityCheck | None,
    actor: Actor,
    people: CheckPeople | None,
    *,
    nonce: str | None,
    technician: bool,
    usable: Sequence[str],
) -> tuple[str, str] | None:
    """(audit reason, reply) when this call-back cannot confirm the ticket, else None
    (`usable`: the chat platforms a manager can be asked on, `Deps.platforms`)."""
    number = ticket.number
    if not technician or people is None:
        return "not a technician", "Only technicians can record a call-back. Nothing was changed."
    if _is_requester(ticket, actor, people):
        return "requester", (
            f"You are the requester on {number}, so you cannot confirm your own identity. "
            "Nothing was changed; another technician must call you back."
        )
    if ticket.status != "open":
        return "closed", f"{number} is closed."
    if ticket.identity_state == "confirmed":
        return "already confirmed", f"The requester's identity on {number} is already confirmed."
    if ticket.identity_state == "denied":
        return "denied", cards.refusal(ticket)
    if ticket.identity_state == "pending":
        return "pending", (
            f"{number}: the requester's manager is being asked to confirm; their answer is the "
            "second channel, not a call-back. Nothing was changed."
        )
    if nonce is not None and (check is None or check.state not in cards.CALLBACK_STATES):
        return "superseded", cards.SUPERSEDED  # a stale notice: `verify` ran again since
    if check is None or check.state not in cards.CALLBACK_STATES:
        return "no call-back asked", (
            f"{number} has no call-back to confirm: run `ticket verify {number}` first. "
            "Nothing was changed."
        )
    requester = people.requester
    if ticket.requester_disabled or (requester is not None and requester.disabled):
        # Someone who left: a voice on their number proves nothing (nor would their manager).
        return "requester disabled", (
            f"The requester's account on {number} is disabled in the directory, so a call-back "
            "cannot confirm them: check with their manager or HR through a channel you already "
            "know. Nothing was changed."
        )
    phone = (requester.phone or "") if requester is not None else ""
    if not phone:
        return "no phone on file", (
            f"There is no phone number on file for the requester of {number}: confirm their "
            "identity in person or through your team lead. Nothing was changed."
        )
    if phone[:64] != check.callback_phone:
        return "phone changed", (
            f"The number on file for the requester of {number} has changed since you were told "
            f"to call it: run `ticket verify {number}` for the current one. Nothing was changed."
        )
    if _manager_to_ask(ticket, check, actor, people, usable):
        return "manager on file now", (
            f"The directory now lists a manager who can confirm the requester of {number}: "
            f"run `ticket verify {number}` to ask them. Nothing was changed."
        )
    return None


def _manager_to_ask(
    ticket: Ticket,
    check: IdentityCheck,
    actor: Actor,
    people: CheckPeople,
    usable: Sequence[str],
) -> bool:
    """The directory now lists a manager who can be asked: `verify` must ask them instead. A
    request given up (`unreachable`) leaves its manager's same account unreachable still: only
    another manager, or another account of theirs (the directory fixed), can be asked now."""
    if checks.manager_cannot_answer(ticket, actor, people, usable):
        return False
    if check.state != "unreachable":
        return True
    manager = people.manager
    assert manager is not None  # manager_cannot_answer is True without one
    if manager.email.strip().lower() != check.manager_email.strip().lower():
        return True
    target = notify.pick_platform(manager, ticket.source_platform, usable)
    return target != (check.manager_platform, check.manager_id)


async def _record(
    session: AsyncSession,
    deps: Deps,
    interaction: Interaction,
    ticket: Ticket,
    check: IdentityCheck,
    who: Person | None,
) -> None:
    actor = interaction.actor
    check.state = "called_back"
    check.answered_by, check.answered_at = actor.id, deps.clock()
    check.answered_platform = actor.platform
    check.answered_name = ((who.name if who else "") or actor.name or "")[:255]
    check.answered_email = (who.email if who else "")[:320]
    ticket.identity_state = "confirmed"
    await notify.refresh_ticket_card(session, ticket)
    await answers.refresh_incident_notice(session, deps, ticket)
    await psa.on_identity_outcome(
        session,
        ticket=ticket,
        outcome="called_back",
        manager=cards.called_back_by(check).plain(),
        at=check.answered_at,
        platform=actor.platform,
        check_id=check.id,
        phone=check.callback_phone,
    )
    await repo.add_event(
        session,
        ticket_id=ticket.id,
        kind="identity.callback_confirmed",
        actor_platform=actor.platform,
        actor_id=actor.id,
        channel=interaction.conversation.id,
        data={
            "check": check.id,
            "phone": check.callback_phone,
            "technician": check.answered_email or None,
        },
    )
    # The thread (which others may read) is told without the number called.
    text = cards.called_back_text(ticket, check, number=False)
    mention = not notify.is_user(actor, ticket.source_platform, ticket.technician_id)
    await notify.tell_technician(session, ticket, text, purpose=PURPOSE, mention=mention)
    await answers.retire_callback(
        session,
        ticket,
        check,
        Rich("Recorded: ", cards.called_back_fact(check, mention=False), "."),
    )
    log.info(
        "identity on %s confirmed by call-back (%s:%s)", ticket.number, actor.platform, actor.id
    )


async def _refused(
    session: AsyncSession,
    interaction: Interaction,
    ticket: Ticket | None,
    check: IdentityCheck | None,
    reason: str,
) -> None:
    actor = interaction.actor
    await repo.add_event(
        session,
        ticket_id=ticket.id if ticket else None,
        kind="identity.callback_refused",
        actor_platform=actor.platform,
        actor_id=actor.id,
        channel=interaction.conversation.id,
        data={
            "reason": reason,
            "check": check.id if check else None,
            "identity": ticket.identity_state if ticket else None,
        },
    )
    log.warning("identity call-back refused (%s) from %s:%s", reason, actor.platform, actor.id)


async def card_fact(session: AsyncSession, ticket: Ticket) -> Inline | None:
    """The ticket card's Identity fact when a call-back confirmed it, else None (the state)."""
    if ticket.identity_state != "confirmed":
        return None
    query = (
        select(IdentityCheck)
        .where(IdentityCheck.ticket_id == ticket.id, IdentityCheck.state == "called_back")
        .order_by(IdentityCheck.id.desc())
        .limit(1)
    )
    check = (await session.execute(query)).scalar_one_or_none()
    return cards.called_back_fact(check) if check is not None else None
