"""Second-channel identity confirmation: the requester's manager approves or denies (SPEC).

Each request is one `IdentityCheck` row holding a random nonce; the Approve/Deny buttons carry
only that nonce, so an answer binds to the request it was sent for, never to a ticket number
from the payload. Only the manager's own platform user id may answer, within
`identity.approval_ttl`; every step and every refused attempt is in the audit trail. DMs and
notices are outbox rows written in the same transaction as the change.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cards.model import Inline, Rich
from handlers import notify, sla
from handlers.commands import TICKET_REF, Command, ticket_ref
from handlers.deps import Deps, observe_on_commit
from handlers.directory import DirectoryAmbiguous, DirectoryUnavailable, Person
from handlers.formatting import who_acted
from handlers.identity import answers, cards, unreachable
from handlers.types import Actor, Forbidden, Interaction, InvalidInput, NotFound, Reply
from storage import outbox
from storage import tickets as repo
from storage.models import IdentityCheck, Ticket

log = logging.getLogger(__name__)

GATED_STATES = ("required", "pending", "denied")
OPEN_CHECKS = ("pending", *cards.CALLBACK_STATES)
PURPOSE = cards.PURPOSE
CALLBACK_DM_KEY = cards.CALLBACK_DM_KEY


def require_confirmed(ticket: Ticket) -> None:
    """Raise Forbidden while the ticket's identity is required, pending or denied."""
    if ticket.identity_state in GATED_STATES:
        raise Forbidden(cards.refusal(ticket))


async def enforce(deps: Deps, interaction: Interaction, ticket: Ticket, action: str) -> None:
    """`require_confirmed` for work a person asked for (`action`: close, escalate, ...), with
    the refusal audited in a transaction of its own (for use cases that write nothing before)."""
    if ticket.identity_state in GATED_STATES:
        async with deps.sessions() as session, session.begin():
            await audit_gate(session, interaction, ticket, action)
        raise Forbidden(cards.refusal(ticket))


async def audit_gate(
    session: AsyncSession, interaction: Interaction, ticket: Ticket, action: str
) -> bool:
    """When the ticket's identity gates `action`, audit the refusal (`identity.gate_refused`:
    it is an identity decision, and shows security who pushed on the gate) and return True;
    the caller then refuses."""
    if ticket.identity_state not in GATED_STATES:
        return False
    actor = interaction.actor
    await repo.add_event(
        session,
        ticket_id=ticket.id,
        kind="identity.gate_refused",
        actor_platform=actor.platform,
        actor_id=actor.id,
        channel=interaction.conversation.id,
        data={"action": action, "identity": ticket.identity_state},
    )
    log.info(
        "identity gate: %s on %s refused (%s) for %s:%s",
        action,
        ticket.number,
        ticket.identity_state,
        actor.platform,
        actor.id,
    )
    return True


# -- starting a check --------------------------------------------------------------------------


async def verify_command(deps: Deps, interaction: Interaction, command: Command) -> Reply:
    """`ticket verify HD-7`."""
    number = ticket_ref(command)
    if number is None:
        raise InvalidInput("Which ticket? Try `ticket verify HD-7`.")
    return await _verify(deps, interaction, number)


async def verify_button(deps: Deps, interaction: Interaction) -> Reply:
    """The ticket card's **Verify identity** button (technician-only, like the command)."""
    number = str(interaction.data.get("ticket") or "").strip().upper()
    if not TICKET_REF.match(number):
        raise InvalidInput("This button does not name a ticket. Try `ticket verify HD-7`.")
    # Its answer may replace the card where it was pressed (Teams' Action.Execute), which a
    # channel sees: it names no number on file (that goes to the technician's DM).
    return await _verify(deps, interaction, number, number_in_reply=False)


async def _verify(
    deps: Deps, interaction: Interaction, number: str, *, number_in_reply: bool = True
) -> Reply:
    actor = interaction.actor
    # The directory is asked before any row is locked: a slow or throttled directory must
    # not hold the database (SQLite has one connection) while the technician waits.
    try:
        if not await deps.is_technician(actor):
            await _refuse_verify(deps, interaction, number)
        async with deps.sessions() as session:
            seen = await repo.get_by_number(session, number)
        if seen is None:
            raise NotFound(f"There is no ticket {number}.")
        # Nothing to ask the directory for when the check is answered already; `verify` is
        # still the technician working the ticket (its first response, below).
        people: CheckPeople | None = (
            await people_for(deps, seen, actor) if _nothing_to_check(seen) is None else None
        )
    except DirectoryUnavailable as exc:
        log.warning("verify %s: no usable answer from the directory: %s", number, exc)
        return Reply(text=cards.verify_unavailable_text(number, exc))
    async with deps.sessions() as session, session.begin():
        ticket = await repo.get_by_number(session, number, lock=True)
        if ticket is None:
            raise NotFound(f"There is no ticket {number}.")
        if ticket.status != "open":
            raise InvalidInput(f"{ticket.number} is closed.")
        await sla.record_first_response(
            session,
            ticket,
            interaction.actor,
            interaction.conversation.id,
            at=deps.clock(),
            action="verify",
            person=people.asker if people is not None else None,
        )
        if (early := _nothing_to_check(ticket)) is not None:
            # A denied ticket is not asked about again: another Approve would cover a
            # possible impersonation. The attempt is audited (and is still working it).
            if ticket.identity_state == "denied":
                await audit_gate(session, interaction, ticket, "verify")
            return early
        if _who(ticket) != _who(seen):  # changed meanwhile: look again (rare)
            people = None
        return await start_check(
            session,
            deps,
            ticket=ticket,
            actor=actor,
            announce=False,
            people=people,
            number_in_reply=number_in_reply,
            channel=interaction.conversation.id,
        )


async def _refuse_verify(deps: Deps, interaction: Interaction, number: str) -> None:
    """Someone who is not a technician asked for an identity check (`verify`, the card's
    **Verify identity**): refused, and audited as every identity decision is
    (`identity.verify_refused`), so security sees who pushed on a ticket's check."""
    actor = interaction.actor
    async with deps.sessions() as session, session.begin():
        ticket = await repo.get_by_number(session, number)
        await repo.add_event(
            session,
            ticket_id=ticket.id if ticket else None,
            kind="identity.verify_refused",
            actor_platform=actor.platform,
            actor_id=actor.id,
            channel=interaction.conversation.id,
            data={"reason": "not a technician", "ticket": number},
        )
    log.warning(
        "identity check on %s refused (not a technician) for %s:%s",
        number,
        actor.platform,
        actor.id,
    )
    raise Forbidden("Only technicians can start an identity check.")


def _nothing_to_check(ticket: Ticket) -> Reply | None:
    """Why no check can start on this ticket (a closed one, an answered one), or None."""
    if ticket.status != "open":
        raise InvalidInput(f"{ticket.number} is closed.")
    if ticket.identity_state == "confirmed":
        return Reply(text=f"The requester's identity on {ticket.number} is already confirmed.")
    if ticket.identity_state == "denied":
        return Reply(text=cards.refusal(ticket))
    return None


def _who(ticket: Ticket) -> tuple[str, str, str | None, str]:
    return (
        ticket.source_platform,
        ticket.requester_id,
        ticket.requester_email,
        ticket.technician_id,
    )


async def find_requester(deps: Deps, ticket: Ticket) -> Person | None:
    """The requester in the directory: by platform id on the ticket's platform, else by e-mail."""
    return await answers.requester_in_directory(
        deps, ticket.source_platform, ticket.requester_id, ticket.requester_email
    )


@dataclass(frozen=True)
class CheckPeople:
    """Who an identity check is about, as the directory knows them."""

    requester: Person | None
    manager: Person | None
    asker: Person | None
    technician: Person | None


async def look_up_people(
    deps: Deps,
    *,
    platform: str,
    requester_id: str,
    requester_email: str | None,
    technician_id: str,
    actor: Actor,
    requester: Person | None = None,
) -> CheckPeople:
    """Everyone a check needs from the directory (before the caller locks anything); raises
    DirectoryUnavailable when the directory cannot answer."""
    if requester is None:
        requester = await answers.requester_in_directory(
            deps, platform, requester_id, requester_email
        )
    manager = await deps.directory.manager_of(requester) if requester else None
    asker = await deps.person(actor)
    on_ticket = (actor.platform, actor.id) == (platform, technician_id)
    technician = (
        asker if on_ticket else await deps.directory.find_by_platform_id(platform, technician_id)
    )
    return CheckPeople(requester=requester, manager=manager, asker=asker, technician=technician)


async def people_for(deps: Deps, ticket: Ticket, actor: Actor) -> CheckPeople:
    """`look_up_people` for an existing ticket."""
    return await look_up_people(
        deps,
        platform=ticket.source_platform,
        requester_id=ticket.requester_id,
        requester_email=ticket.requester_email,
        technician_id=ticket.technician_id,
        actor=actor,
    )


async def directory_unavailable_at_intake(
    session: AsyncSession, ticket: Ticket, error: DirectoryUnavailable
) -> None:
    """The ticket was opened while the directory could not answer: whether the requester is
    a VIP is unknown, so the identity must be confirmed; the technician is told to `verify`
    once the directory is back."""
    ticket.identity_state = "required"
    await notify.tell_technician(
        session, ticket, cards.intake_unavailable_text(ticket, error), purpose=PURPOSE
    )
    await repo.add_event(
        session,
        ticket_id=ticket.id,
        kind="identity.directory_unavailable",
        data={
            "source": error.source,
            "detail": error.detail[:500],
            **({"ambiguous": True} if isinstance(error, DirectoryAmbiguous) else {}),
        },
    )


def _is(person: Person, platform: str, user_id: str) -> bool:
    return bool(user_id) and notify.platform_ids(person).get(platform) == user_id


def _same(one: Person | None, other: Person | None) -> bool:
    return one is not None and other is not None and one.email.lower() == other.email.lower()


def _not_independent(
    ticket: Ticket,
    actor: Actor,
    *,
    requester: Person | None,
    manager: Person | None,
    asker: Person | None = None,
    technician: Person | None = None,
) -> str:
    """Why the manager on file cannot be the second channel ('' when they can).

    The check exists so that whoever is on the phone cannot vouch for themselves: a manager
    who is the technician asking, the ticket's technician, or the requester would approve
    their own request. People are compared as directory entries (one person can have a
    Slack id, a Teams id and an AAD object id), and by raw id as well.
    """
    if manager is None:
        return ""
    if _same(manager, asker) or _is(manager, actor.platform, actor.id):
        return "the manager on file is the technician asking"
    if _same(manager, technician) or _is(manager, ticket.source_platform, ticket.technician_id):
        return "the manager on file is the ticket's technician"
    if _same(manager, requester) or _is(manager, ticket.source_platform, ticket.requester_id):
        return "the requester is listed as their own manager"
    return ""


def manager_cannot_answer(
    ticket: Ticket, actor: Actor, people: CheckPeople, usable: Sequence[str]
) -> bool:
    """True when no manager on file can be the second channel for `actor`'s check: none, none
    the bot can reach on the `usable` platforms (`Deps.platforms`), one who is not
    independent, or one whose account is disabled."""
    manager = people.manager
    if manager is None or manager.disabled:
        return True
    if notify.pick_platform(manager, ticket.source_platform, usable) is None:
        return True
    return bool(
        _not_independent(
            ticket,
            actor,
            requester=people.requester,
            manager=manager,
            asker=people.asker,
            technician=people.technician,
        )
    )


async def start_check(
    session: AsyncSession,
    deps: Deps,
    *,
    ticket: Ticket,
    actor: Actor,
    announce: bool = True,
    people: CheckPeople | None = None,
    number_in_reply: bool = True,
    channel: str = "",
) -> Reply:
    """Ask the requester's manager (superseding open requests); returns what the technician
    should know (with no manager to ask, the call-back notice and its button; with
    `number_in_reply` False, only where the number on file was sent). `announce` also posts
    it in the ticket thread (used on ticket creation). `people` (from `look_up_people`,
    before the transaction) saves asking the directory here. `channel`: where the check was
    asked for (for the audit trail; default the ticket's channel, where it was opened)."""
    now = deps.clock()
    if people is None:
        people = await people_for(deps, ticket, actor)
    requester, manager = people.requester, people.manager
    channel = channel or ticket.source_channel
    await _supersede(session, ticket=ticket, actor=actor, channel=channel)
    if ticket.identity_state == "not_required":
        # A P1 that needed no check until now: its notice (rendered when the edit goes out)
        # says from now on that the identity is not confirmed.
        await answers.refresh_incident_notice(session, deps, ticket)
    # Only on a platform this deployment is connected to: a manager known only elsewhere is
    # one the bot cannot ask, and the check stays open as with no manager on file.
    target = (
        notify.pick_platform(manager, ticket.source_platform, deps.platforms) if manager else None
    )
    observe_on_commit(deps, session, "identity", outcome="requested")
    await repo.add_event(
        session,
        ticket_id=ticket.id,
        kind="identity.requested",
        actor_platform=actor.platform,
        actor_id=actor.id,
        channel=channel,
        data={
            "requester": requester.email if requester else None,
            "manager": manager.email if manager else None,
        },
    )
    check = IdentityCheck(
        ticket_id=ticket.id,
        nonce=secrets.token_urlsafe(32),
        requested_by=actor.id,
        manager_email=manager.email if manager else "",
        created_at=now,
    )
    conflict = _not_independent(
        ticket,
        actor,
        requester=requester,
        manager=manager,
        asker=people.asker,
        technician=people.technician,
    )
    # The requester's number on file goes only to the technician who asked for the check (who
    # ran `verify`, or opened the ticket): in their answer and in a direct message, never in
    # the ticket's thread, which others read (a shared channel; a requester's own chat when
    # they opened the ticket). A thread that is a technician's is told where it went.
    thread_is_a_technicians = await _thread_is_a_technicians(session, deps, ticket, people)
    asker_is_a_technician = await _is_technician(deps, people.asker)
    await _note_requester_account(session, ticket, requester)
    if requester is not None and requester.disabled:
        text = await _requester_disabled(
            session, ticket, check, requester=requester, manager=manager, conflict=conflict
        )
        return Reply(text=text)
    # A manager whose account is disabled has (most likely) left: their chat account may
    # outlive the directory's, but their word no longer vouches for anyone.
    if manager is None or target is None or conflict or manager.disabled:
        check.state = "no_manager"
        # The number the technician is told to call: a call-back is recorded against it.
        check.callback_phone = ((requester.phone or "") if requester else "")[:64]
        session.add(check)
        await session.flush()
        ticket.identity_state = "required"
        text = cards.callback_text(ticket, requester=requester, manager=manager, conflict=conflict)
        told = ""
        if check.callback_phone and asker_is_a_technician:
            told = await _send_number(
                session, ticket, check, actor, people.asker, text, usable=deps.platforms
            )
        sent_text = (
            cards.callback_sent_text(
                ticket, requester=requester, manager=manager, technician=told, conflict=conflict
            )
            if told
            else ""
        )
        if thread_is_a_technicians:
            # With a number on file but no technician to tell it privately (none asked),
            # nobody learns it; without one the text has nothing private in it.
            thread_text = sent_text if check.callback_phone else text
            if thread_text:
                await notify.tell_technician(session, ticket, thread_text, purpose=PURPOSE)
        await repo.add_event(
            session,
            ticket_id=ticket.id,
            kind="identity.no_manager",
            data={
                "check": check.id,
                "requester_listed": requester is not None,
                "manager": check.manager_email or None,
                "phone_on_file": bool(requester and requester.phone),
                "conflict": conflict or None,
                **({"manager_disabled": True} if manager and manager.disabled else {}),
            },
        )
        if sent_text and not number_in_reply:
            return Reply(text=sent_text)
        reply = cards.callback_card(ticket, check) if check.callback_phone else None
        return Reply(text=text, card=reply, confidential=bool(check.callback_phone))
    check.state = "pending"
    check.manager_platform, check.manager_id = target
    check.expires_at = now + deps.config.identity.approval_ttl
    # Should the request fail for good, the call-back is to this number (the directory's now,
    # never typed), sent to the technician who asked, as when no manager is on file.
    check.callback_phone = ((requester.phone or "") if requester else "")[:64]
    route = (
        unreachable.number_route(ticket, actor, people.asker, deps.platforms)
        if check.callback_phone and asker_is_a_technician
        else None
    )
    session.add(check)
    await session.flush()
    ticket.identity_state = "pending"
    on_ticket = (actor.platform, actor.id) == (ticket.source_platform, ticket.technician_id)
    asker: Inline | None = None if on_ticket else who_acted(actor, people.asker)
    if not await _is_technician(deps, people.asker):
        # A gated ticket opened by someone who is not a technician starts its check all the
        # same (SPEC: on its own), but the request must not vouch for them as the technician.
        asker = Rich("none yet (opened by ", who_acted(actor, people.asker), ", not a technician)")
    card = cards.request_card(ticket, check, requester=requester, manager=manager, asker=asker)
    await notify.dm(
        session,
        platform=check.manager_platform,
        user_id=check.manager_id,
        text=cards.request_text(ticket, requester=requester),
        card=card,
        ticket=ticket,
        purpose=PURPOSE,
        dedup_key=f"identity:{check.id}",
        extra={
            "identity_check": check.id,
            "aad_object_id": manager.aad_object_id,
            "phone_on_file": bool(requester and requester.phone),
            **({unreachable.ROUTE_KEY: route} if route else {}),
        },
    )
    await repo.add_event(
        session,
        ticket_id=ticket.id,
        kind="identity.sent",
        data={
            "check": check.id,
            "manager": manager.email,
            "platform": check.manager_platform,
            "manager_id": check.manager_id,
            "expires_at": check.expires_at.isoformat(),
        },
    )
    text = cards.sent_text(ticket, check, requester=requester, manager=manager)
    if announce:
        await notify.tell_technician(session, ticket, text, purpose=PURPOSE)
    return Reply(text=text)


async def _send_number(
    session: AsyncSession,
    ticket: Ticket,
    check: IdentityCheck,
    actor: Actor,
    asker: Person | None,
    text: Inline,
    *,
    usable: Sequence[str],
) -> str:
    """DM the technician who asked the call-back notice (the number on file, and the
    **Called back: confirmed** button) through the outbox, retried like every DM; on the
    ticket's platform when the directory knows them there, else where they asked. Returns
    who it went to, for the thread."""
    route = unreachable.number_route(ticket, actor, asker, usable)
    return await unreachable.send_number(session, ticket, check, route, text)


async def _note_requester_account(
    session: AsyncSession, ticket: Ticket, requester: Person | None
) -> None:
    """Keep the card's warning in step with the directory (someone disabled since intake,
    or enabled again); a requester no longer listed leaves it as it was."""
    if requester is None or ticket.requester_disabled == requester.disabled:
        return
    ticket.requester_disabled = requester.disabled
    await notify.refresh_ticket_card(session, ticket)


async def _requester_disabled(
    session: AsyncSession,
    ticket: Ticket,
    check: IdentityCheck,
    *,
    requester: Person,
    manager: Person | None,
    conflict: str,
) -> Inline:
    """The requester's own account is disabled (someone who left?): a manager's Approve would
    vouch for an account that should not be in use, so nobody is asked. The check is recorded
    as one with no manager to ask (it stays open, the ticket gated), and the technician is told
    in the thread: the text names no number on file, so any thread may have it."""
    check.state = "no_manager"
    session.add(check)
    await session.flush()
    ticket.identity_state = "required"
    text = cards.requester_disabled_text(
        ticket, requester=requester, manager=manager, conflict=conflict
    )
    await notify.tell_technician(session, ticket, text, purpose=PURPOSE)
    await repo.add_event(
        session,
        ticket_id=ticket.id,
        kind="identity.no_manager",
        data={
            "check": check.id,
            "requester_listed": True,
            "requester_disabled": True,
            "manager": check.manager_email or None,
            "manager_asked": False,
        },
    )
    log.warning(
        "identity check on %s: the requester's account is disabled in the directory; "
        "no manager asked",
        ticket.number,
    )
    return text


async def _is_technician(deps: Deps, person: Person | None) -> bool:
    if not await deps.directory.has_technicians():
        return True  # everyone counts as one
    return bool(person and person.technician and not person.disabled)


async def _thread_is_a_technicians(
    session: AsyncSession, deps: Deps, ticket: Ticket, people: CheckPeople
) -> bool:
    """Whether the ticket's thread is a technician's: a technician opened it (a requester
    opening their own ticket did not, and the technician who has taken it since does not
    make their thread his) and its technician is one in the directory."""
    if await repo.opened_by_non_technician(session, ticket.id):
        return False
    return await _is_technician(deps, people.technician)


async def _supersede(session: AsyncSession, *, ticket: Ticket, actor: Actor, channel: str) -> None:
    """Open requests of this ticket stop counting: a fresh one replaces them."""
    query = (
        select(IdentityCheck)
        .where(IdentityCheck.ticket_id == ticket.id, IdentityCheck.state.in_(OPEN_CHECKS))
        .with_for_update()
    )
    for old in (await session.execute(query)).scalars().all():
        old.state = "superseded"
        await repo.add_event(
            session,
            ticket_id=ticket.id,
            kind="identity.superseded",
            actor_platform=actor.platform,
            actor_id=actor.id,
            channel=channel,
            data={"check": old.id},
        )
        await answers.retire_dm(session, ticket, old, cards.SUPERSEDED)
        await answers.retire_callback(session, ticket, old, cards.SUPERSEDED)
        # Not out yet (Slack or Teams holding it back): not sent at all, rather than reach the
        # manager (or the technician) beside the fresh one, perhaps after it.
        keys = [f"identity:{old.id}", f"identity-callback:{old.id}"]
        for row in await outbox.by_dedup_keys(session, keys):
            await outbox.cancel_unsent(
                session, message_id=row.id, reason="not sent: replaced by a newer request"
            )


# -- answers -----------------------------------------------------------------------------------


async def approve(deps: Deps, interaction: Interaction) -> Reply:
    """The manager's **Approve** (bound to the request's nonce, not to a ticket number)."""
    return await answers.answer(deps, interaction, approved=True)


async def deny(deps: Deps, interaction: Interaction) -> Reply:
    """The manager's **Deny**: flags the ticket and tells the technician and security."""
    return await answers.answer(deps, interaction, approved=False)
