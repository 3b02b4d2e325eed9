"""Use cases: open the escalation form, and escalate a ticket to a queue with the facts."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from cards.model import Card, Rich, Typed
from handlers import identity, notify, psa, sla
from handlers.commands import Command
from handlers.deps import Deps
from handlers.escalation.cards import MAX_TEXT, escalation_card, escalation_form, queue_names
from handlers.escalation.rules import FACTS, fact_problems, same_handoff
from handlers.formatting import named, when, who_acted
from handlers.tickets import load
from handlers.types import DomainError, Interaction, InvalidInput, NotFound, Reply
from storage import inbound
from storage import tickets as repo
from storage import working as working_repo
from storage.models import Ticket

log = logging.getLogger(__name__)


def _check(deps: Deps, ticket: Ticket) -> list[str]:
    if ticket.status != "open":
        raise DomainError(f"{ticket.number} is {ticket.status}: only open tickets escalate.")
    identity.require_confirmed(ticket)
    queues = queue_names(deps.config)
    if not queues:
        raise DomainError(
            "No queues are configured: add `queues:` or `escalation.queues` to "
            "the config file to escalate."
        )
    return queues


async def _form(deps: Deps, interaction: Interaction, ticket: Ticket) -> Reply:
    await deps.require_technician(interaction.actor, "escalate tickets")
    in_card = notify.answer_replaces_card(interaction, ticket)
    if ticket.status == "open":
        entry = await deps.entry_if_known(interaction.actor)
        async with deps.sessions() as session, session.begin():
            responded = await sla.record_first_response(
                session,
                ticket,
                interaction.actor,
                interaction.conversation.id,
                at=deps.clock(),
                action="escalate",
                refresh_card=not in_card,  # the form takes the card's place
                person=entry,
            )
            await identity.audit_gate(session, interaction, ticket, "escalate")
            refused = await notify.form_takes_card(
                session,
                ticket,
                lambda: _check(deps, ticket),
                in_card=in_card,
                responded=responded,
                now=deps.clock(),
            )
            if refused is None:
                # Its answer is the form: a redelivery finding none kept says so (handlers.replay).
                await inbound.note(session, form=True)
        if refused is not None:
            raise refused
    _check(deps, ticket)  # a ticket no longer open: refused (its card stays as it is)
    return Reply(card=_escalation_form(deps, ticket), as_form=True)


def _escalation_form(deps: Deps, ticket: Ticket) -> Card:
    """The form for `ticket`: prefilled from it, Asset link required when it has an asset."""
    return escalation_form(
        deps.config,
        ticket.number,
        error_text=ticket.error_text,
        asset=ticket.asset,
        queue=deps.config.escalation.queues.get(ticket.category, ""),
    )


async def escalate_command(deps: Deps, interaction: Interaction, command: Command) -> Reply:
    """`ticket escalate HD-7`: the escalation form."""
    return await _form(deps, interaction, await load(deps, command))


async def escalate_button(deps: Deps, interaction: Interaction) -> Reply:
    """The **Escalate** button on a ticket card: the escalation form."""
    number = str(interaction.data.get("ticket", ""))
    return await _form(deps, interaction, await load(deps, Command("escalate", number)))


def validate(
    data: dict[str, Any], queues: list[str], *, asset: str, ticket_prefix: str
) -> dict[str, str]:
    """The escalation facts as typed; InvalidInput names each fact that will not do and why
    (empty, a placeholder, too short, oversized) and a missing queue. `asset`: the ticket's."""
    facts = {fact.id: "" if data.get(fact.id) is None else str(data[fact.id]) for fact in FACTS}
    errors = fact_problems(facts, asset=asset, ticket_prefix=ticket_prefix)
    for ident, value in facts.items():
        if len(value) > MAX_TEXT:
            errors[ident] = f"Keep this under {MAX_TEXT} characters."
    queue = str(data.get("queue") or "").strip()
    if queue not in queues:
        errors["queue"] = "Choose the queue to escalate to."
    facts["queue"] = queue
    if errors:
        raise InvalidInput(
            "Not escalated yet: the queue needs every fact. See the highlighted fields.", errors
        )
    return facts


async def _refuse_repeat(
    session: AsyncSession, ticket: Ticket, facts: dict[str, str], *, queue: str
) -> None:
    """The same facts to the same queue again (Escalate pressed twice: Teams keeps the form on
    screen; a form opened twice) is one handoff: the queue is not told twice."""
    for earlier in reversed(await working_repo.escalations(session, ticket.id)):
        if same_handoff(earlier.data, facts, queue=queue):
            raise DomainError(
                Rich(
                    f"{ticket.number} was already escalated to ",
                    Typed(queue),
                    f" with these facts ({when(earlier.at)}), so the queue was not notified "
                    "again. To tell it something new, escalate again with what changed.",
                )
            )


async def submit(deps: Deps, interaction: Interaction) -> Reply:
    """Record the escalation, notify the queue with the facts, tell the technician."""
    actor = interaction.actor
    await deps.require_technician(actor, "escalate tickets")
    number = str(interaction.data.get("ticket", ""))
    ticket = await load(deps, Command("escalate", number))
    if ticket.status == "open":
        await identity.enforce(deps, interaction, ticket, "escalate")
    queues = _check(deps, ticket)
    in_card = notify.answer_replaces_card(interaction, ticket)
    try:
        facts = validate(
            interaction.data,
            queues,
            asset=ticket.asset,
            ticket_prefix=deps.config.ticket_prefix,
        )
    except InvalidInput as exc:
        # Shown again with the errors (Teams): as first shown, Asset link still required.
        # Still in the card's place (Teams): the hold set when it was first shown goes on.
        exc.form = _escalation_form(deps, ticket)
        raise
    queue = facts.pop("queue")
    who = await deps.person(actor)
    escalator = who_acted(actor, who)
    by = escalator.plain()
    async with deps.sessions() as session, session.begin():
        locked = await repo.get_by_number(session, ticket.number, lock=True)
        if locked is None:
            raise NotFound(f"There is no ticket {ticket.number}.")
        _check(deps, locked)
        await _refuse_repeat(session, locked, facts, queue=queue)
        await sla.record_first_response(
            session,
            locked,
            actor,
            interaction.conversation.id,
            at=deps.clock(),
            action="escalate",
            person=who,
        )
        if in_card:
            # Answered: the card's refreshes held for the form go out (the answer is a
            # message: the form stays on screen until the card is refreshed).
            await notify.card_form_answered(session, locked, now=deps.clock())
        await repo.add_event(
            session,
            ticket_id=locked.id,
            kind="ticket.escalated",
            actor_platform=actor.platform,
            actor_id=actor.id,
            channel=interaction.conversation.id,
            data={"queue": queue, **facts},
        )
        await psa.on_escalated(
            session,
            ticket=locked,
            queue=queue,
            by=by,
            facts=facts,
            labels={fact.id: fact.label for fact in FACTS},
        )
        card = escalation_card(locked, facts, queue=queue, by=escalator)
        sent = await notify.notify_queue(
            session,
            deps.config,
            queue,
            Rich(f"{locked.number} escalated to ", Typed(queue)),
            card=card,
            ticket=locked,
            purpose="escalation",
        )
        # The queue is a config value (shown as typed); the escalator named, not mentioned.
        told = Rich(
            f"{locked.number} was escalated to ",
            Typed(queue),
            " by ",
            named(escalator),
            ".",
        )
        if not sent:
            told = Rich(
                told,
                " Queue ",
                Typed(queue),
                " has no Slack or Teams channel configured (`queues:`), so nobody was "
                "notified: hand it over directly.",
            )
        if not notify.answered_in_ticket_place(interaction, locked):
            # A modal shows no answer (Slack); an answer on another platform or in another
            # chat is not where the ticket is worked: its thread is told.
            await notify.tell_technician(
                session,
                locked,
                told,
                purpose="escalated",
                # Their own escalation pings nobody; another technician's tells them.
                mention=not notify.is_ticket_technician(actor, who, locked),
            )
    log.info("ticket escalated", extra={"ticket": ticket.number, "queue": queue})
    return Reply(text=told, private=False)
