"""Use cases: open the intake form, create a ticket, show one, list a person's open ones."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from cards.model import Card, Inline
from handlers import diagnosis, identity, incidents, notify, psa, sla, working
from handlers.commands import Command, ticket_ref
from handlers.deps import Deps
from handlers.directory import DirectoryUnavailable, Person, unavailable_words
from handlers.formatting import joined
from handlers.tickets import details as ticket_details
from handlers.tickets import intake as intake_form
from handlers.tickets.cards import card_version, identity_for_opener, ticket_card, ticket_line
from handlers.types import Actor, Forbidden, Interaction, InvalidInput, NotFound, Reply
from storage import inbound, outbox
from storage import tickets as repo
from storage.errors import DatabaseUnavailable
from storage.models import Ticket

log = logging.getLogger(__name__)
MINE_LISTED = 25  # open tickets `mine` lists, newest first
P1_REFUSED = (
    "Only technicians can open a ticket at P1 (it pages the on-call): choose P2, and a "
    "technician will raise it if it is an outage."
)


def open_form(deps: Deps, interaction: Interaction, command: Command) -> Reply:
    """`ticket new [summary]`: the intake form, remembering where it was asked for (not while
    the database is away: the person would type it all for nothing)."""
    if not deps.database_available():
        raise DatabaseUnavailable("known to be down")
    conv = interaction.conversation
    context = {"channel": conv.id}
    if conv.thread:
        context["thread"] = conv.thread
    card = intake_form.intake_card(deps.config, summary=command.args, context=context)
    return Reply(card=card, as_form=True)


async def _requester(deps: Deps, interaction: Interaction, typed: str) -> tuple[str, Person | None]:
    """Resolve the Requester input: a Slack user id, or an e-mail typed in Teams."""
    if interaction.platform == "slack":
        return typed, await deps.directory.find_by_platform_id("slack", typed)
    person = await deps.directory.find_by_email(typed)
    if person is None and (plain := intake_form.look_alike(typed)):
        # `vic@example.com` with a Cyrillic i (U+0456) reads as Vic's address: it is Vic (a VIP,
        # whose check must start), not "nobody by that address" (no check at all).
        person = await deps.directory.find_by_email(plain)
        if person is not None:
            log.warning(
                "intake: the Requester %r is a look-alike of %s; read as that address",
                typed,
                person.email,
            )
            typed = person.email
    return (person.teams_id or typed) if person else typed, person


async def create_ticket(deps: Deps, interaction: Interaction) -> Reply:
    """Validate the intake submission and store the ticket with its SLA clock running."""
    data = interaction.data
    form = intake_form.validate(data, deps.config, email_requester=interaction.platform == "teams")
    # The directory is asked before the transaction (it may be slow, or down: the ticket is
    # opened all the same, with its identity check waiting for `verify`).
    outage: DirectoryUnavailable | None = None
    requester_id, requester, technician = form.requester, None, None
    # Whether a technician opened it: the card's diagnosis section (other clients' resolved
    # tickets, the KB) is theirs only, as `similar` and `kb` are (not known: not shown).
    by_technician = False
    try:
        requester_id, requester = await _requester(deps, interaction, form.requester)
        technician = await deps.person(interaction.actor)
        by_technician = await deps.is_technician(interaction.actor)
        if form.priority == "P1" and not by_technician:
            # Opening at P1 pages the on-call, which SPEC keeps to technicians ("raise to P1").
            # Nothing is saved; the form stays open with the reason.
            log.info("intake: P1 refused for %s (not a technician)", interaction.actor.id)
            raise InvalidInput("Please fix the highlighted fields.", {"priority": P1_REFUSED})
    except DirectoryUnavailable as exc:
        # A real P1 is not held up by a directory outage: it is opened (and paged) as chosen.
        log.warning("intake: no usable answer from the directory: %s", exc)
        outage = exc
    # Where to announce: the form's context only when it is trustworthy (Slack's signed
    # private_metadata); a Teams submission's data is typed by the client, so use its origin.
    conv = interaction.conversation
    trusted = data if not interaction.can_reply else {}
    channel = str(trusted.get("channel") or conv.id)
    thread = str(trusted["thread"]) if trusted.get("thread") else conv.thread
    now = deps.clock()
    due = sla.due_times(deps.config.sla, client=form.client, priority=form.priority, opened_at=now)
    prefix = deps.config.ticket_prefix.upper()
    gated = (
        form.category in deps.config.identity.categories
        or bool(requester and requester.vip)
        or outage is not None  # a VIP cannot be ruled out (directory down or ambiguous)
    )
    people: identity.CheckPeople | None = None
    if gated and outage is None:
        try:
            people = await identity.look_up_people(
                deps,
                platform=interaction.platform,
                requester_id=requester_id,
                requester_email=requester.email if requester else form.requester,
                technician_id=interaction.actor.id,
                actor=interaction.actor,
                requester=requester,
            )
        except DirectoryUnavailable as exc:
            log.warning("intake: no usable answer from the directory: %s", exc)
            outage = exc

    async with deps.sessions() as session, session.begin():
        seq, number = await repo.next_number(session, prefix=prefix)
        worked = await working.intake_facts(
            session,
            deps.config,
            category=form.category,
            asset=form.asset,
            client=form.client,
            error_text=form.error_text,
        )
        ticket = await repo.create(
            session,
            number=number,
            prefix=prefix,
            seq=seq,
            status="open",
            summary=form.summary,
            error_text=form.error_text,
            doing=form.doing,
            reproducible=form.reproducible,
            users_affected=form.users_affected,
            priority=form.priority,
            category=form.category,
            asset=form.asset,
            client=form.client,
            tier=due.tier,
            tier_source=psa.tier_source(deps.config, form.client),
            psa_system=deps.config.psa.system or "",
            requester_id=requester_id,
            requester_name=requester.name if requester else "",
            requester_email=requester.email
            if requester
            else (form.requester if "@" in form.requester else ""),
            requester_vip=bool(requester and requester.vip),
            # Someone who left? The card warns; a gated ticket's check asks no manager.
            requester_disabled=bool(requester and requester.disabled),
            technician_id=interaction.actor.id,
            technician_name=(technician.name if technician else "") or interaction.actor.name,
            technician_email=technician.email if technician else "",
            source_platform=interaction.platform,
            source_channel=channel,
            source_thread=thread,
            created_at=now,
            respond_by=due.respond_by,
            resolve_by=due.resolve_by,
            priority_warning=sla.priority_warning(
                priority=form.priority, users_affected=form.users_affected
            ),
            identity_state="required" if gated else "not_required",
            **worked,
        )
        await repo.add_event(
            session,
            ticket_id=ticket.id,
            kind="ticket.opened",
            actor_platform=interaction.platform,
            actor_id=interaction.actor.id,
            channel=channel,
            data={
                "priority": ticket.priority,
                "tier": ticket.tier,
                "category": ticket.category,
                "scope": ticket.support_tier,
                **({"matches_p1": ticket.p1_match} if ticket.p1_match else {}),
            },
        )
        if interaction.can_reply:
            # The card is this delivery's answer: noted with its claim, so that a redelivery
            # finding no answer kept answers with the ticket's card (`opened_card`). Where
            # the card is announced (below) the outbox holds it already: no statement more.
            await inbound.note(session, ticket_id=ticket.id)
        await psa.on_ticket_opened(
            session,
            deps.config,
            ticket=ticket,
            technician_email=technician.email if technician else "",
        )
        await working.on_ticket_opened(session, deps, ticket=ticket)
        await sla.schedule(session, deps.config, ticket, now=now)
        diagnosed = await diagnosis.on_ticket_opened(
            session, deps, ticket=ticket, on_card=by_technician
        )
        if not by_technician:
            log.info(
                "ticket card without its diagnosis section: %s was opened by %s:%s, not a "
                "technician",
                ticket.number,
                interaction.platform,
                interaction.actor.id,
            )
        card = ticket_card(
            ticket,
            extra=diagnosed,
            now=now,
            who=None if by_technician else notify.NO_TECHNICIAN,
            identity=None if by_technician else identity_for_opener(ticket, None),
        )
        shown = card_version(ticket)  # before the identity check and the P1 change it
        if not interaction.can_reply:
            await announce(session, ticket=ticket, card=card, channel=channel)
        if outage is not None:
            await identity.directory_unavailable_at_intake(session, ticket, outage)
        elif gated:
            await identity.start_check(
                session, deps, ticket=ticket, actor=interaction.actor, people=people
            )
        if ticket.priority == "P1":
            await incidents.on_p1(
                session, deps, ticket=ticket, actor=interaction.actor, channel=channel
            )
    deps.observe("ticket_opened", priority=ticket.priority)
    diagnosis.look_up_kb_for_card(deps, ticket)
    log.info("ticket opened", extra={"ticket": ticket.number, "priority": ticket.priority})
    return Reply(
        text=f"Opened {ticket.number}",
        card=card,
        private=False,
        ticket_card_of=ticket.id if interaction.can_reply else None,
        card_version=shown if interaction.can_reply else "",
    )


async def current_card(session: AsyncSession, ticket: Ticket, *, now: datetime) -> Card:
    """The ticket's card as it is now, as posted where it was opened: its diagnosis section
    and its identity check's fact (for a ticket a non-technician opened, whose card is where
    they read it, neither: `identity_for_opener`)."""
    fact = await identity.card_fact(session, ticket)
    if await repo.opened_by_non_technician(session, ticket.id):
        fact = identity_for_opener(ticket, fact)
    return ticket_card(
        ticket,
        extra=await diagnosis.card_elements(session, ticket),
        now=now,
        identity=fact,
        who=await notify.technician_shown(session, ticket),
    )


async def opened_card(deps: Deps, ticket_id: int) -> Reply | None:
    """The answer to an intake whose answer was never kept (its process died between the
    commit and keeping it, before the card went out): the ticket's card as it is now, posted
    and remembered as the card (Teams) as the first answer's would have been. None when the
    ticket is not there."""
    async with deps.sessions() as session:
        ticket = await session.get(Ticket, ticket_id)
        if ticket is None:
            return None
        card = await current_card(session, ticket, now=deps.clock())
        return Reply(
            text=f"Opened {ticket.number}",
            card=card,
            private=False,
            ticket_card_of=ticket.id,
            card_version=card_version(ticket),
        )


async def remember_card(
    deps: Deps, *, ticket_id: int, channel: str, message: str, version: str = ""
) -> None:
    """The ticket card went out in the turn (Teams): remember where, and make its message the
    ticket's thread as an outbox-delivered card's is (unless a thread is known already).
    `version`: what the card shows (`card_version`); refreshed when the ticket changed since."""
    async with deps.sessions() as session, session.begin():
        await repo.set_card(session, ticket_id=ticket_id, channel=channel, message=message)
        await repo.set_thread(session, ticket_id=ticket_id, channel=channel, thread=message)
        # The ticket may have changed before the card's message was known (the PSA answered,
        # a technician raised it): the refreshes queued then had nothing to edit.
        ticket = await session.get(Ticket, ticket_id)
        if ticket is None:
            return
        changed = card_version(ticket) != version if version else psa.card_outdated(ticket)
        if changed:
            await notify.refresh_ticket_card(session, ticket)


async def announce(session: AsyncSession, *, ticket: Ticket, card: Card, channel: str) -> None:
    """Queue the ticket card for the ticket's channel; its message becomes the ticket thread."""
    await outbox.enqueue(
        session,
        kind="message",
        ticket_id=ticket.id,
        payload={
            "platform": ticket.source_platform,
            "channel": channel,
            "thread": ticket.source_thread,
            "card": card.to_dict(),
            "fallback_user": ticket.technician_id,
            "sets_ticket_thread": ticket.source_thread is None,
            "ticket_card": True,
            # The ticket may change before the card is posted (a PSA's number, a raise or a
            # first response while the post is throttled), and refreshes queued meanwhile had
            # no message to edit: the delivery compares, and refreshes a card overtaken on its
            # way.
            "card_version": card_version(ticket),
        },
    )


async def load(deps: Deps, command: Command, session: AsyncSession | None = None) -> Ticket:
    """The ticket the command names; InvalidInput / NotFound say what is wrong."""
    number = ticket_ref(command)
    if number is None:
        raise InvalidInput(f"Which ticket? Try `ticket {command.verb} HD-7`.")
    if session is None:
        async with deps.sessions() as own:
            ticket = await repo.get_by_number(own, number)
    else:
        ticket = await repo.get_by_number(session, number)
    if ticket is None:
        raise NotFound(f"There is no ticket {number}.")
    return ticket


async def show(deps: Deps, interaction: Interaction, command: Command) -> Reply:
    """The ticket card, only to the caller (technicians, or the ticket's requester; the
    diagnosis section, which lists other clients' tickets and the KB, to technicians only)."""
    actor = interaction.actor
    async with deps.sessions() as session:
        ticket = await load(deps, command, session)
        requester = actor.id == ticket.requester_id or notify.is_user(
            actor, ticket.source_platform, ticket.requester_id
        )
        outage: DirectoryUnavailable | None = None
        try:
            technician = await deps.is_technician(actor)
        except DirectoryUnavailable as exc:
            # Their own ticket all the same (without the diagnosis) when on file by their id.
            technician, outage = False, exc
        if not (requester or technician or outage):
            try:
                requester = await _requester_by_email(deps, actor, ticket)
            except DirectoryUnavailable as exc:
                outage = exc
        if not (requester or technician):
            if outage is not None:
                log.warning("show %s: directory unavailable: %s", ticket.number, outage)
                return Reply(
                    text=unavailable_words(
                        outage, f"it cannot be checked that {ticket.number} is yours"
                    )
                )
            raise Forbidden(f"Only technicians and the requester can see {ticket.number}.")
        extra = (
            await diagnosis.card_elements(session, ticket, for_technician=True)
            if technician
            else []
        )
        more, confidential = await ticket_details.details(
            session, ticket, deps.directory, for_technician=bool(technician)
        )
        extra += more
        shown = await identity.card_fact(session, ticket)
        if not technician:
            shown = identity_for_opener(ticket, shown)
        who = await notify.technician_shown(session, ticket)
    return Reply(
        card=ticket_card(ticket, extra=extra, now=deps.clock(), identity=shown, who=who),
        private=True,
        confidential=confidential,
    )


async def _requester_by_email(deps: Deps, actor: Actor, ticket: Ticket) -> bool:
    """Whether the caller is the ticket's requester by the directory: on file by e-mail (a
    requester the directory knew by no chat id when the ticket was opened, or one opened
    while it could not be reached, is kept by the e-mail given, any case), or by the id their
    directory entry gives them on their other platform (a Slack ticket asked about on
    Teams). A ticket on file by a chat id is that person's only: its address may be someone
    else's by now, or a shared mailbox's."""
    person = await deps.person(actor)
    if person is None or person.disabled:
        return False
    if ticket.requester_id and ticket.requester_id in _other_platform_ids(actor, person):
        return True
    on_file = ticket.requester_email.strip().lower()
    if not on_file or not repo.on_file_by_email(ticket.requester_id):
        return False
    return person.email.strip().lower() == on_file


def _other_platform_ids(actor: Actor, person: Person | None) -> list[str]:
    """The ids the directory entry found by the caller's own chat id gives them on their
    other platform (one person on Slack and Teams), for `mine`: never anything typed."""
    if person is None:
        return []
    if actor.platform == "slack":
        return [i for i in (person.teams_id, person.aad_object_id) if i]
    return [person.slack_id] if person.slack_id else []


def _aad_alias(actor: Actor) -> str | None:
    """The AAD object id a Teams requester may be on file by (see `notify.is_user`)."""
    return actor.aad_object_id if actor.platform == "teams" and actor.aad_object_id else None


async def mine(deps: Deps, interaction: Interaction) -> Reply:
    """The caller's open tickets, as requester (by chat id, or by the directory's e-mail for
    them) or technician."""
    outage: DirectoryUnavailable | None = None
    actor = interaction.actor
    try:
        person = await deps.person(actor)
    except DirectoryUnavailable as exc:
        log.warning("mine: directory unavailable: %s", exc)
        person, outage = None, exc
    if person is not None and person.disabled:
        person = None  # someone who left: their lingering chat account is not the entry's owner
    email = person.email.strip() if person is not None else ""
    async with deps.sessions() as session:
        # One more than is listed: a cut list says so rather than give its length as the count.
        found = await repo.list_open_for(
            session,
            person_id=actor.id,
            limit=MINE_LISTED + 1,
            alias=_aad_alias(actor),
            email=email,
            others=_other_platform_ids(actor, person),
        )
    missing: Inline = (
        unavailable_words(
            outage,
            "tickets on file under your e-mail address or your other chat account are not listed",
        )
        if outage is not None
        else ""
    )
    if not found:
        return Reply(text=missing or "You have no open tickets.")
    heading = f"Your open tickets ({len(found)}):"
    if len(found) > MINE_LISTED:
        found = found[:MINE_LISTED]
        heading = f"Your open tickets (the newest {MINE_LISTED}; you have more):"
    lines: list[Inline] = [heading, *(ticket_line(t) for t in found)]
    if missing:
        lines.append(missing)
    return Reply(text=joined(lines))
