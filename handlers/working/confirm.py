"""The requester confirms the fix: `confirm HD-7` asks them, **Works now** / **Still broken**.

Each question is one `FixConfirmation` row with a random nonce; its buttons carry only that
nonce, and only the user id the question was sent to may answer it (anyone else is told so,
nothing is recorded, and the attempt is audited, as for identity answers). A request that was
answered, or replaced by a newer `confirm`, records nothing more and tells nobody again. Rows
are locked ticket first, then request.
"""

from __future__ import annotations

import logging
import secrets

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cards.model import Card, Rich
from handlers import csat, identity, notify
from handlers.commands import Command, ticket_ref
from handlers.deps import Deps
from handlers.formatting import when
from handlers.types import Actor, DomainError, Interaction, InvalidInput, NotFound, Reply
from handlers.working import cards
from handlers.working.service import first_response as _first_response
from storage import outbox
from storage import tickets as tickets_repo
from storage import working as repo
from storage.models import FixConfirmation, OutboxMessage, Ticket

log = logging.getLogger(__name__)


# -- asking ------------------------------------------------------------------------------------


def _askable(ticket: Ticket) -> None:
    if ticket.status != "open":
        raise DomainError(f"{ticket.number} is {ticket.status}: only open tickets are confirmed.")
    if ticket.fix_confirmed_at is not None:
        raise DomainError(
            Rich(
                f"{ticket.number}: ",
                cards.named(ticket),
                f" already confirmed the fix works now ({when(ticket.fix_confirmed_at)}).",
            )
        )
    identity.require_confirmed(ticket)


async def confirm_command(deps: Deps, interaction: Interaction, command: Command) -> Reply:
    """`ticket confirm HD-7`: ask the requester to try the original workflow (technicians)."""
    actor = interaction.actor
    await deps.require_technician(actor, "ask a requester to confirm a fix")
    number = ticket_ref(command)
    if number is None:
        raise InvalidInput("Which ticket? Try `ticket confirm HD-7`.")
    async with deps.sessions() as session:
        seen = await tickets_repo.get_by_number(session, number)
    if seen is None:
        raise NotFound(f"There is no ticket {number}.")
    if seen.status == "open" and seen.fix_confirmed_at is None:
        await identity.enforce(deps, interaction, seen, "confirm")
    _askable(seen)
    # The directory is asked before anything is locked.
    to = await csat.survey_address(deps, seen)
    if to is None:
        raise DomainError(
            Rich(
                f"{number}: the requester (",
                cards.named(seen),
                f") has {notify.no_chat_id(deps.platforms)}, so the bot cannot ask them. Ask "
                "them to try it yourself.",
            )
        )
    platform, user_id = to
    now = deps.clock()
    async with deps.sessions() as session, session.begin():
        ticket = await tickets_repo.get_by_number(session, number, lock=True)
        if ticket is None:
            raise NotFound(f"There is no ticket {number}.")
        _askable(ticket)
        # First: a ticket nobody has taken is the asker's from now on, and the request names
        # them (not its opener) as the technician who worked on it.
        await _first_response(
            session,
            ticket,
            actor,
            interaction.conversation.id,
            at=now,
            action="confirm",
            person=await deps.entry_if_known(actor),
        )
        replaced = await _supersede(session, ticket, actor)
        request = FixConfirmation(
            ticket_id=ticket.id,
            nonce=secrets.token_urlsafe(32),
            state="pending",
            platform=platform,
            user_id=user_id,
            asked_by=actor.id,
            created_at=now,
            comment="",
        )
        session.add(request)
        await session.flush()
        ticket.fix_state, ticket.fix_state_at = "asked", now
        card = cards.request_card(ticket, request)
        await notify.dm(
            session,
            platform=platform,
            user_id=user_id,
            text=card.fallback,
            card=card,
            ticket=ticket,
            purpose=cards.CONFIRM,
            dedup_key=f"{cards.CONFIRM}:{request.id}",
        )
        await notify.refresh_ticket_card(session, ticket)
        await tickets_repo.add_event(
            session,
            ticket_id=ticket.id,
            kind="fix.asked",
            actor_platform=actor.platform,
            actor_id=actor.id,
            channel=interaction.conversation.id,
            data={
                "request": request.id,
                "platform": platform,
                "user": user_id,
                "replaced": replaced,
            },
        )
    log.info("fix confirmation asked", extra={"ticket": number})
    return Reply(text=cards.asked_text(ticket, platform))


async def _supersede(session: AsyncSession, ticket: Ticket, actor: Actor) -> list[int]:
    """Earlier questions stop counting: their buttons are retired (or their DM not sent)."""
    replaced = []
    for old in await repo.open_confirmations(session, ticket.id):
        if old.state == "pending":
            await _retire(session, ticket, old, cards.SUPERSEDED)
        old.state = "superseded"
        replaced.append(old.id)
    return replaced


async def _retire(
    session: AsyncSession, ticket: Ticket, request: FixConfirmation, text: str
) -> None:
    """Replace the question's buttons with `text` (an outbox `update`); a question not sent
    yet is not sent at all."""
    key = f"{cards.CONFIRM}:{request.id}"
    sent = (
        await session.execute(select(OutboxMessage).where(OutboxMessage.dedup_key == key))
    ).scalar_one_or_none()
    if sent is None:
        return
    if sent.status == "pending":
        await outbox.cancel_unsent(session, message_id=sent.id, reason="replaced by a newer one")
        return
    message = sent.result.get("ts") or sent.result.get("activity_id")
    if sent.status != "delivered" or not message or not sent.result.get("channel"):
        return
    await notify.update_message(
        session,
        ticket,
        platform=request.platform,
        channel=str(sent.result["channel"]),
        message=str(message),
        purpose=cards.CONFIRM_ANSWER,
        card=cards.answered_card(ticket, text).to_dict(),
        text=text,
    )


async def retire_on_close(session: AsyncSession, ticket: Ticket) -> None:
    """The ticket was just closed (in this transaction, locked): a question still waiting for
    the requester's answer stops asking. One not sent yet (its DM failing, or queued) is never
    sent; a sent one loses its buttons. Its row stays pending, so a late click is told that
    the ticket was closed first and records nothing."""
    for request in await repo.open_confirmations(session, ticket.id):
        if request.state == "pending":
            await _retire(session, ticket, request, cards.closed_first_text(ticket.number))


# -- answers -----------------------------------------------------------------------------------


async def works(deps: Deps, interaction: Interaction) -> Reply:
    """**Works now**: recorded, shown on the card, the technician told."""
    return await _answer(deps, interaction, "works")


async def broken(deps: Deps, interaction: Interaction) -> Reply:
    """**Still broken**: the technician is told, with the comment when one came along."""
    return await _answer(deps, interaction, "broken")


async def _load(
    session: AsyncSession, nonce: object
) -> tuple[FixConfirmation | None, Ticket | None]:
    if not isinstance(nonce, str) or not 0 < len(nonce) <= 64:
        return None, None
    ticket_id = await repo.ticket_of_confirmation(session, nonce)
    if ticket_id is None:
        return None, None
    ticket = await session.get(Ticket, ticket_id, with_for_update=True)
    return await repo.confirmation_by_nonce(session, nonce, lock=True), ticket


async def _refused(
    session: AsyncSession,
    interaction: Interaction,
    ticket: Ticket | None,
    request: FixConfirmation | None,
    reason: str,
) -> None:
    actor = interaction.actor
    await tickets_repo.add_event(
        session,
        ticket_id=ticket.id if ticket else None,
        kind="fix.refused",
        actor_platform=actor.platform,
        actor_id=actor.id,
        channel=interaction.conversation.id,
        data={"reason": reason, "request": request.id if request else None},
    )
    log.warning("fix answer refused (%s) from %s:%s", reason, actor.platform, actor.id)


def _comment(interaction: Interaction) -> tuple[bool, str]:
    """(whether the answer came with a comment box, what was typed in it)."""
    if "comment" not in interaction.data:
        return False, ""
    return True, str(interaction.data.get("comment") or "").strip()


def _check_length(text: str, form: Card | None) -> None:
    """Refuse a comment over the limit; `form`: the card it was typed on, shown again with the
    error under the comment box and the text kept (Teams)."""
    if len(text) > cards.MAX_COMMENT:
        raise InvalidInput(
            f"Keep the comment under {cards.MAX_COMMENT} characters.",
            {"comment": f"Keep it under {cards.MAX_COMMENT} characters."},
            form=form,
        )


async def _requesters(
    session: AsyncSession, interaction: Interaction
) -> tuple[FixConfirmation, Ticket] | Reply:
    """The request a button or comment names, when its requester is the one answering; else
    the refusal to give (and the refusal audited)."""
    request, ticket = await _load(session, interaction.data.get(cards.NONCE_KEY))
    if request is None or ticket is None:
        await _refused(session, interaction, ticket, request, "unknown request")
        return Reply(text=cards.UNKNOWN_REQUEST)
    if not notify.is_user(interaction.actor, request.platform, request.user_id):
        await _refused(session, interaction, ticket, request, "not the requester")
        return Reply(
            text=f"Only the requester of {ticket.number} can answer this. Nothing was recorded."
        )
    return request, ticket


async def _answer(deps: Deps, interaction: Interaction, choice: str) -> Reply:
    actor = interaction.actor
    has_box, comment = _comment(interaction)
    now = deps.clock()
    async with deps.sessions() as session, session.begin():
        found = await _requesters(session, interaction)
        if isinstance(found, Reply):
            return found
        request, ticket = found
        if request.state == "superseded":
            return Reply(text=cards.SUPERSEDED)
        if request.state == "pending" and ticket.status != "open":
            # Closed without the answer (allowed, and recorded so): a late answer changes
            # nothing, so the closure's record and `report` stay as they were.
            await _refused(session, interaction, ticket, request, f"ticket {ticket.status}")
            return Reply(
                text=f"{ticket.number} was closed before you answered, so nothing was recorded. "
                "If it is still not working, please ask for a new ticket."
            )
        if request.state != "pending":
            if request.state == "broken" and choice == "broken" and not has_box:
                if not request.comment:  # Slack: the comment form again, nothing recorded
                    return Reply(
                        card=cards.comment_form(ticket.number, request.nonce), as_form=True
                    )
            # The same comment again is a second press of the same answer: it was not lost.
            if not comment:
                note = ""
            elif comment == request.comment:
                note = " Your technician has your comment."
            else:
                note = " Your comment was not saved."
            return Reply(
                text=f"You already answered for {ticket.number}: {cards.answer_label(request)}. "
                f"Nothing changed.{note}"
            )
        # Shown again with the error (Teams): the question itself, its buttons included, where
        # the comment box is (Slack's buttons carry no comment).
        _check_length(
            comment,
            cards.request_card(ticket, request) if interaction.platform == "teams" else None,
        )
        request.state, request.answered_at, request.answered_by = choice, now, actor.id
        ticket.fix_state, ticket.fix_state_at = choice, now
        if choice == "works":
            ticket.fix_confirmed_at, ticket.fix_confirmed_by = now, actor.id
        if comment:
            request.comment = comment
        await notify.refresh_ticket_card(session, ticket)
        await tickets_repo.add_event(
            session,
            ticket_id=ticket.id,
            kind="fix.confirmed" if choice == "works" else "fix.still_broken",
            actor_platform=actor.platform,
            actor_id=actor.id,
            channel=interaction.conversation.id,
            data={"request": request.id, "comment": bool(comment)},
        )
        if choice == "works":
            told = cards.works_text(ticket, comment)
            outcome = f"You said it works now ({when(now)}). Thank you!"
        else:
            told = cards.broken_text(ticket, comment, asked_for_comment=not has_box)
            outcome = f"You said it is still broken ({when(now)}). Your technician was told."
        await notify.tell_technician_in_chat(
            session,
            ticket,
            told,
            purpose=cards.CONFIRM_ANSWER,
            dedup_key=f"{cards.CONFIRM_ANSWER}:{request.id}",
        )
        await _retire(session, ticket, request, outcome)
    log.info("fix answered", extra={"ticket": ticket.number, "answer": choice})
    if choice == "works":
        return Reply(text=f"Thank you! We recorded that {ticket.number} works now.")
    if not has_box:
        return Reply(card=cards.comment_form(ticket.number, request.nonce), as_form=True)
    return Reply(text=f"Thank you: your technician was told {ticket.number} is still broken.")


async def comment(deps: Deps, interaction: Interaction) -> Reply:
    """The optional comment after **Still broken** (Slack's modal): the technician gets it."""
    actor = interaction.actor
    _, text = _comment(interaction)
    async with deps.sessions() as session, session.begin():
        found = await _requesters(session, interaction)
        if isinstance(found, Reply):
            return found
        request, ticket = found
        # A Still broken answer stays open to its comment after a newer `confirm` replaced it
        # (the requester typing it as the technician asked again): only an answered question
        # is replaced once answered, and a Works now one is never replaced.
        answered_broken = request.state == "broken" or (
            request.state == "superseded" and request.answered_at is not None
        )
        if not answered_broken:
            return Reply(text=f"There is nothing to add to on {ticket.number}. Thank you!")
        if not text:
            return Reply(text="Thank you: your technician already knows it is still broken.")
        if request.comment:
            return Reply(text=f"We already have your comment on {ticket.number}. Thank you!")
        # Shown again with the error (Teams; Slack keeps its modal and shows it there).
        _check_length(text, cards.comment_form(ticket.number, request.nonce))
        request.comment = text
        await tickets_repo.add_event(
            session,
            ticket_id=ticket.id,
            kind="fix.commented",
            actor_platform=actor.platform,
            actor_id=actor.id,
            channel=interaction.conversation.id,
            data={"request": request.id, "length": len(text)},
        )
        await notify.tell_technician_in_chat(
            session,
            ticket,
            cards.comment_text(ticket, text),
            purpose=cards.CONFIRM_ANSWER,
            dedup_key=f"{cards.CONFIRM_ANSWER}:{request.id}:comment",
        )
    return Reply(text=f"Thank you: your technician got your comment on {ticket.number}.")
