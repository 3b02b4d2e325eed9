"""CSAT: queue the survey and the personal follow-up on closure; take the requester's answer."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import case, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from cards.model import Inline, Rich, Typed
from handlers import notify
from handlers.csat.cards import (
    COMMENT_TITLE,
    MAX_COMMENT,
    RATINGS,
    comment_form,
    followup_card,
    survey_card,
)
from handlers.deps import Deps
from handlers.directory import Person
from handlers.formatting import named, requester
from handlers.types import Actor, Interaction, InvalidInput, NotFound, Reply
from storage import tickets as repo
from storage.models import CsatSurvey, OutboxMessage, Ticket, TicketEvent

log = logging.getLogger(__name__)
SURVEY_PURPOSE = "csat-survey"
ALERT_PURPOSE = "csat-alert"  # a rating of 1 or 2 (or its comment) for the technician


# -- on closure ------------------------------------------------------------------------------


async def _requester(deps: Deps, ticket: Ticket) -> Person | None:
    """The requester as the directory has them now: by the chat id the ticket is on file by
    first (an e-mail may since be someone else's: Ana renamed, ana@ handed on), else by the
    e-mail kept on the ticket (or typed, for a ticket on file by e-mail)."""
    if ticket.requester_id and not repo.on_file_by_email(ticket.requester_id):
        found = await deps.directory.find_by_platform_id(
            ticket.source_platform, ticket.requester_id
        )
        if found is not None:
            return found
    for email in (ticket.requester_email, ticket.requester_id):
        if email and "@" in email:
            found = await deps.directory.find_by_email(email)
            if found is not None:
                return found
    return None


async def survey_address(deps: Deps, ticket: Ticket) -> tuple[str, str] | None:
    """(platform, user id) for the requester's survey DM: the ticket's platform when the
    requester has an id there, else their other one, of the platforms this deployment is
    connected to; None when there is no such chat id at all."""
    return (await survey_facts(deps, ticket))[0]


async def survey_facts(deps: Deps, ticket: Ticket) -> tuple[tuple[str, str] | None, bool]:
    """The requester's survey address (`survey_address`) and whether they are a VIP: marked
    so when the ticket was opened, or by the directory now (a ticket opened while the
    directory could not answer carries no mark, and its VIP is owed the follow-up all the
    same)."""
    person = await _requester(deps, ticket)
    vip = ticket.requester_vip or bool(person and person.vip)
    if person is not None:
        picked = notify.pick_platform(person, ticket.source_platform, deps.platforms)
        if picked is not None:
            return picked, vip
    if (
        ticket.requester_id
        and "@" not in ticket.requester_id
        and ticket.source_platform in deps.platforms
    ):
        # The chat id the ticket is on file for (the directory does not list one we can use).
        return (ticket.source_platform, ticket.requester_id), vip
    return None, vip


async def schedule_survey(
    session: AsyncSession,
    deps: Deps,
    *,
    ticket: Ticket,
    to: tuple[str, str] | None,
    now: datetime,
) -> None:
    """The survey row and its DM, due `csat.delay` after closure (or a note why it cannot go)."""
    if to is None:
        await repo.add_event(
            session,
            ticket_id=ticket.id,
            kind="csat.unreachable",
            data={"requester": ticket.requester_id},
        )
        await notify.tell_technician(
            session,
            ticket,
            Rich(
                f"No satisfaction survey for {ticket.number}: the requester (",
                named(requester(ticket)),
                f") has {notify.no_chat_id(deps.platforms)}.",
            ),
            purpose="csat-unreachable",
        )
        return
    platform, user_id = to
    nonce = secrets.token_urlsafe(24)
    session.add(
        CsatSurvey(
            ticket_id=ticket.id,
            nonce=nonce,
            requester_platform=platform,
            requester_id=user_id,
            created_at=now,
        )
    )
    due = now + deps.config.csat.delay
    await notify.dm(
        session,
        platform=platform,
        user_id=user_id,
        ticket=ticket,
        purpose=SURVEY_PURPOSE,
        text=f"How did we do on {ticket.number}?",
        card=survey_card(ticket, nonce),
        due_at=due,
        dedup_key=f"csat-survey:{ticket.id}",
    )
    await repo.add_event(
        session,
        ticket_id=ticket.id,
        kind="csat.scheduled",
        data={"platform": platform, "user": user_id, "due_at": due.isoformat()},
    )


async def _closer(session: AsyncSession, ticket: Ticket) -> tuple[str, str] | None:
    """(platform, user id) of the technician who closed the ticket (its P1's closer for a
    report closed with it), from the audit trail."""
    query = (
        select(TicketEvent.actor_platform, TicketEvent.actor_id)
        .where(TicketEvent.ticket_id == ticket.id, TicketEvent.kind == "ticket.closed")
        .order_by(TicketEvent.id.desc())
        .limit(1)
    )
    found = (await session.execute(query)).one_or_none()
    if found is None or not found.actor_platform or not found.actor_id:
        return None
    return str(found.actor_platform), str(found.actor_id)


async def _own_ticket_closer(session: AsyncSession, ticket: Ticket) -> tuple[str, str] | None:
    """(platform, user id) of the technician who closed a ticket a non-technician opened (a
    requester opening their own; also when the directory could not say): what the bot has to
    tell "the technician" about it goes to them (its thread may be the requester's own chat).
    None for a ticket a technician opened, or one not closed."""
    if not await repo.opened_by_non_technician(session, ticket.id):
        return None
    return await _closer(session, ticket)


async def tell_technician_or_closer(
    session: AsyncSession,
    ticket: Ticket,
    text: Inline,
    *,
    purpose: str,
    dedup_key: str | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Tell the technician in the ticket's thread (`notify.tell_technician`); for a closed
    ticket its requester opened, a direct message to the technician who closed it instead
    (`_own_ticket_closer`): a low rating, an undelivered survey."""
    closer = await _own_ticket_closer(session, ticket)
    if closer is None:
        await notify.tell_technician(
            session, ticket, text, purpose=purpose, dedup_key=dedup_key, extra=extra
        )
        return
    platform, user_id = closer
    await notify.dm(
        session,
        platform=platform,
        user_id=user_id,
        text=text,
        ticket=ticket,
        purpose=purpose,
        dedup_key=dedup_key,
        extra=extra,
    )


async def schedule_followup(
    session: AsyncSession,
    deps: Deps,
    *,
    ticket: Ticket,
    closed_by: Actor,
    now: datetime,
    vip: bool | None = None,
    channel: str = "",
) -> bool:
    """VIP requesters and P1 tickets: remind the ticket's technician to write personally (the
    one who worked it and knows the requester, as a low rating alerts them; not a colleague
    who closed it for them). A ticket its requester opened has no technician on it: the one
    who closed it (`closed_by`) is reminded, never the requester. `closed_by` is recorded as
    who caused it. `vip`: what the directory says now (`survey_facts`); None: the ticket's
    mark from when it was opened. `channel`: where the closure was made."""
    vip = ticket.requester_vip if vip is None else vip
    reasons = (["VIP requester"] if vip else []) + (
        ["P1 ticket"] if ticket.priority == "P1" else []
    )
    if not reasons:
        return False
    due = now + deps.config.csat.vip_followup_delay
    platform, user_id = ticket.source_platform, ticket.technician_id
    if await repo.opened_by_non_technician(session, ticket.id):
        platform, user_id = closed_by.platform, closed_by.id
    await notify.dm(
        session,
        platform=platform,
        user_id=user_id,
        ticket=ticket,
        purpose="vip-followup",
        card=followup_card(ticket, reasons),
        text=f"Personal follow-up due for {ticket.number}",
        due_at=due,
        dedup_key=f"vip-followup:{ticket.id}",
    )
    await repo.add_event(
        session,
        ticket_id=ticket.id,
        kind="followup.scheduled",
        actor_platform=closed_by.platform,
        actor_id=closed_by.id,
        channel=channel,
        data={"reasons": reasons, "due_at": due.isoformat(), "technician": user_id},
    )
    return True


async def on_survey_delivered(
    session: AsyncSession, *, message: OutboxMessage, at: datetime
) -> None:
    """The survey reached the requester: it counts as sent (the CSAT response rate)."""
    if message.kind != "dm" or message.payload.get("purpose") != SURVEY_PURPOSE:
        return
    if message.ticket_id is None:
        return
    await session.execute(
        update(Ticket)
        .where(Ticket.id == message.ticket_id, Ticket.csat_sent_at.is_(None))
        .values(csat_sent_at=at)
    )


# -- answers ---------------------------------------------------------------------------------


async def _survey(session: AsyncSession, interaction: Interaction) -> tuple[CsatSurvey, Ticket]:
    nonce = str(interaction.data.get("survey", ""))
    survey = (
        await session.execute(select(CsatSurvey).where(CsatSurvey.nonce == nonce))
    ).scalar_one_or_none()
    ticket = await session.get(Ticket, survey.ticket_id) if survey else None
    if survey is None or ticket is None:
        raise NotFound("That survey is not known (any more). Thank you anyway!")
    return survey, ticket


def _is_requester(actor: Actor, survey: CsatSurvey) -> bool:
    """The survey's addressee (on Teams also when the survey went to their AAD object id)."""
    return notify.is_user(actor, survey.requester_platform, survey.requester_id)


async def _refuse(session: AsyncSession, interaction: Interaction, ticket: Ticket) -> Reply:
    await repo.add_event(
        session,
        ticket_id=ticket.id,
        kind="csat.refused",
        actor_platform=interaction.platform,
        actor_id=interaction.actor.id,
        channel=interaction.conversation.id,
        data={"reason": "not the requester"},
    )
    return Reply(text=f"Only the requester of {ticket.number} can answer this survey.")


async def rate(deps: Deps, interaction: Interaction) -> Reply:
    """A click on `1` ... `5`: the first answer of the requester counts; 1 or 2 alerts."""
    rating = str(interaction.data.get("rating", "")).strip()
    if rating not in RATINGS:
        raise InvalidInput("Choose a rating from 1 to 5.")
    comment = str(interaction.data.get("comment") or "").strip()
    async with deps.sessions() as session, session.begin():
        survey, ticket = await _survey(session, interaction)
        if not _is_requester(interaction.actor, survey):
            return await _refuse(session, interaction, ticket)
        if len(comment) > MAX_COMMENT and survey.rating is None:
            # Not cut: the whole answer waits for a comment that fits (a 1 or 2 alerts with it).
            raise InvalidInput(
                f"Your rating was not saved: keep the comment under {MAX_COMMENT} characters "
                f"(it has {len(comment)}), then press your rating again."
            )
        had_comment = bool(survey.comment)  # as read: the UPDATE below may expire it
        values: dict[str, object] = {"rating": int(rating), "answered_at": deps.clock()}
        if comment:
            # Only onto a survey with no comment yet, as the row is when written: a comment
            # sent meanwhile ('Add a comment' landing at once) is the first and stays.
            values["comment"] = case((CsatSurvey.comment == "", comment), else_=CsatSurvey.comment)
        stored = (
            await session.execute(
                update(CsatSurvey)
                .where(CsatSurvey.id == survey.id, CsatSurvey.rating.is_(None))
                .values(**values)
                .returning(CsatSurvey.comment)
            )
        ).one_or_none()
        if stored is None:
            await session.refresh(survey)
            return Reply(
                text=f"You already rated {ticket.number} {survey.rating}/5: the first "
                f"answer is the one we keep.{_comment_not_kept(comment, survey.comment)} "
                "Thank you!"
            )
        kept: str = stored.comment
        saved = bool(comment) and not had_comment and kept == comment
        # The ticket row carries the answer too: `report` aggregates tickets alone.
        await session.execute(
            update(Ticket).where(Ticket.id == ticket.id).values(csat_rating=int(rating))
        )
        await repo.add_event(
            session,
            ticket_id=ticket.id,
            kind="csat.answered",
            actor_platform=interaction.platform,
            actor_id=interaction.actor.id,
            channel=interaction.conversation.id,
            data={"rating": int(rating), "comment": saved},
        )
        if int(rating) <= 2:
            said = Rich(' They wrote: "', Typed(kept), '"') if kept else ""
            await tell_technician_or_closer(
                session,
                ticket,
                Rich(
                    f"{ticket.number} was rated {rating}/5 by ",
                    named(requester(ticket)),
                    ".",
                    said,
                    " Please get in touch with them.",
                ),
                purpose=ALERT_PURPOSE,
            )
    deps.observe("csat", rating=rating)
    log.info("csat answered", extra={"ticket": ticket.number, "rating": rating})
    not_kept = "" if saved else _comment_not_kept(comment, kept)
    return Reply(text=f"Thank you! You rated {ticket.number} {rating}/5.{not_kept}")


def _comment_not_kept(comment: str, kept: str) -> str:
    """What to say about a comment typed with a rating that did not store it (the first
    rating and the first comment are kept; `kept`: the survey's comment): empty when nothing
    was typed."""
    if not comment:
        return ""
    if kept:
        return " Your comment was not saved: we already have your comment on this survey."
    return f" Your comment was not saved with it: press {COMMENT_TITLE} to send it."


async def comment(deps: Deps, interaction: Interaction) -> Reply:
    """`Add a comment`: a form when the card has no input (Slack), else store the text."""
    has_input = "comment" in interaction.data
    text = str(interaction.data.get("comment") or "").strip()
    if has_input and not text:
        return Reply(text=f"Type your comment in the box first, then press {COMMENT_TITLE}.")
    async with deps.sessions() as session, session.begin():
        survey, ticket = await _survey(session, interaction)
        if not _is_requester(interaction.actor, survey):
            return await _refuse(session, interaction, ticket)
        if survey.comment:
            return Reply(text=f"We already have your comment on {ticket.number}. Thank you!")
        if not has_input:
            return Reply(card=comment_form(ticket.number, survey.nonce), as_form=True)
        if len(text) > MAX_COMMENT:
            # Shown again with the error (Teams): the survey itself, its rating buttons
            # included, where the comment box is (Slack's comment is a modal of its own).
            form = (
                survey_card(ticket, survey.nonce)
                if interaction.platform == "teams"
                else comment_form(ticket.number, survey.nonce)
            )
            raise InvalidInput(
                f"Keep the comment under {MAX_COMMENT} characters.",
                {"comment": f"Keep it under {MAX_COMMENT} characters."},
                form=form,
            )
        stored = (
            await session.execute(
                update(CsatSurvey)
                .where(CsatSurvey.id == survey.id, CsatSurvey.comment == "")
                .values(comment=text)
                .returning(CsatSurvey.rating)
            )
        ).one_or_none()
        if stored is None:
            return Reply(text=f"We already have your comment on {ticket.number}. Thank you!")
        await repo.add_event(
            session,
            ticket_id=ticket.id,
            kind="csat.commented",
            actor_platform=interaction.platform,
            actor_id=interaction.actor.id,
            channel=interaction.conversation.id,
            data={"length": len(text)},
        )
        # The rating as the row is now (also one committed meanwhile): a 1 or 2 already
        # alerted without this comment (Slack's comment comes after the click), so the
        # technician gets the comment too. A comment sent first rides on the rating's alert.
        if stored.rating is not None and stored.rating <= 2:
            await tell_technician_or_closer(
                session,
                ticket,
                Rich(
                    named(requester(ticket)),
                    f' added a comment to their {stored.rating}/5 rating of {ticket.number}: "',
                    Typed(text),
                    '" Please get in touch with them.',
                ),
                purpose=ALERT_PURPOSE,
                dedup_key=f"csat-comment:{survey.id}",
            )
    return Reply(text=f"Thank you for your comment on {ticket.number}.")
