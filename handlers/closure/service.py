"""Use cases: log time, open the closure form, close a ticket (survey and follow-up queued)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from cards.model import Card, Inline, Rich, Typed, plain
from handlers import csat, diagnosis, identity, incidents, notify, psa, sla, working
from handlers.closure.cards import (
    CATEGORIES,
    MAX_KB,
    closed_notice,
    closure_form,
    fix_unconfirmed,
)
from handlers.closure.rules import DEFAULT_TICKET_PREFIX, note_problem
from handlers.commands import Command, ticket_ref
from handlers.deps import Deps
from handlers.durations import (
    BareNumber,
    format_duration,
    leading_duration,
    parse_typed_duration,
)
from handlers.formatting import who_acted
from handlers.tickets import current_card, load
from handlers.types import DomainError, Interaction, InvalidInput, NotFound, Reply
from storage import inbound
from storage import tickets as repo
from storage.models import Ticket, TimeEntry, utcnow

log = logging.getLogger(__name__)
MAX_ENTRY = timedelta(hours=24)
MAX_TIME_NOTE = 500
TIME_USAGE = "Try `ticket time HD-7 45m [note]` (durations like 45m, 1h30m, 1.5h or 30 min)."
# `KB0012345`, `KB 4412`, and with a dash any number (`KB-42`, as small wikis number them).
_KB = re.compile(r"^KB(?:-\d+|\s?\d{3,})$", re.IGNORECASE)
_URL = re.compile(r"^https?://\S+$", re.IGNORECASE)


class DurationError(ValueError):
    """Why a typed duration will not do: `problem` quotes the typed text as `Typed` (a form's
    field error); `str()` is the same as plain text."""

    def __init__(self, problem: Inline) -> None:
        super().__init__(plain(problem))
        self.problem = problem


def entry_minutes(text: str) -> int:
    """Minutes of one time entry typed as `45m`/`1h30m`/`1.5h`/`30 min`; DurationError says
    what is wrong."""
    try:
        seconds = parse_typed_duration(text)
    except BareNumber as exc:
        raise DurationError(exc.problem) from None
    except ValueError:
        quoted = Rich("'", Typed(text), "' is not a duration like 45m, 1h30m, 1.5h or 30 min.")
        raise DurationError(quoted) from None
    if seconds < 60:
        raise DurationError("Log at least 1 minute (e.g. 45m).")
    if seconds > MAX_ENTRY.total_seconds():
        raise DurationError(
            "One time entry can be at most 24h; log longer work as several entries."
        )
    down = int(seconds // 60)
    if seconds % 60:
        # Logged time is whole minutes (the PSAs' unit): say so rather than drop seconds
        # (`90s`, `0.33h`).
        lower, upper = (format_duration(timedelta(minutes=m)) for m in (down, down + 1))
        said = f"' is not; log {lower} or {upper}."
        raise DurationError(Rich("Time is logged in whole minutes: '", Typed(text), said))
    return down


async def _locked(session: AsyncSession, number: str) -> Ticket:
    ticket = await repo.get_by_number(session, number, lock=True)
    if ticket is None:
        raise NotFound(f"There is no ticket {number}.")
    return ticket


def _require_open(ticket: Ticket) -> None:
    if ticket.status != "open":
        raise DomainError(f"{ticket.number} is already {ticket.status}.")


# -- time entries ----------------------------------------------------------------------------


async def time_command(deps: Deps, interaction: Interaction, command: Command) -> Reply:
    """`ticket time HD-7 45m [note]`: one audited time entry (technicians only)."""
    await deps.require_technician(interaction.actor, "log time")
    number = ticket_ref(command)
    if number is None:
        raise InvalidInput(f"Which ticket? {TIME_USAGE}")
    words = command.args.split()[1:]
    try:
        # Only the leading words that form a duration (`30 min`, `1h 30m`): the rest is the note.
        _, taken = leading_duration(words)
    except BareNumber as exc:
        raise InvalidInput(exc.problem) from None
    if not taken:
        raise InvalidInput(f"How long did you work on {number}? {TIME_USAGE}")
    try:
        minutes = entry_minutes(" ".join(words[:taken]))
    except DurationError as exc:
        # Quotes what was typed (`Typed`): shown literally.
        raise InvalidInput(exc.problem) from None
    note = command.args.split(None, taken + 1)[taken + 1 :]
    text = note[0].strip() if note else ""
    if len(text) > MAX_TIME_NOTE:
        raise InvalidInput(f"Keep the time note under {MAX_TIME_NOTE} characters.")
    # Also who takes a ticket nobody has yet (their name, e-mail, id on its platform).
    technician = (
        await deps.person(interaction.actor)
        if deps.config.psa.enabled
        else await deps.entry_if_known(interaction.actor)
    )
    async with deps.sessions() as session, session.begin():
        ticket = await _locked(session, number)
        await sla.record_first_response(
            session,
            ticket,
            interaction.actor,
            interaction.conversation.id,
            at=deps.clock(),
            action="time",
            person=technician,
        )
        await add_time(
            session,
            ticket=ticket,
            interaction=interaction,
            minutes=minutes,
            note=text,
            technician_email=technician.email if technician else "",
        )
        total = ticket.time_minutes
    return Reply(
        text=f"Logged {format_duration(timedelta(minutes=minutes))} on {number} "
        f"(total {format_duration(timedelta(minutes=total))})."
    )


async def add_time(
    session: AsyncSession,
    *,
    ticket: Ticket,
    interaction: Interaction,
    minutes: int,
    note: str,
    technician_email: str = "",
) -> None:
    """Store one time entry with its audit event and queue it for the PSA (in the caller's
    transaction); the ticket's minutes logged (what `report` adds up) grow with it."""
    entry = TimeEntry(
        ticket_id=ticket.id, minutes=minutes, note=note, actor_id=interaction.actor.id, at=utcnow()
    )
    session.add(entry)
    await session.flush()
    await psa.on_time_logged(
        session,
        ticket=ticket,
        minutes=minutes,
        note=note,
        technician_email=technician_email,
        at=entry.at,
    )
    total = (
        await session.execute(
            update(Ticket)
            .where(Ticket.id == ticket.id)
            .values(time_minutes=Ticket.time_minutes + minutes)
            .returning(Ticket.time_minutes)
            .execution_options(synchronize_session=False)
        )
    ).scalar_one()
    set_committed_value(ticket, "time_minutes", total)
    await repo.add_event(
        session,
        ticket_id=ticket.id,
        kind="time.logged",
        actor_platform=interaction.platform,
        actor_id=interaction.actor.id,
        channel=interaction.conversation.id,
        data={"minutes": minutes, "note": note},
    )


# -- the closure form ------------------------------------------------------------------------


async def _form(deps: Deps, interaction: Interaction, ticket: Ticket) -> Reply:
    await deps.require_technician(interaction.actor, "close tickets")
    _require_open(ticket)
    in_card = notify.answer_replaces_card(interaction, ticket)
    entry = await deps.entry_if_known(interaction.actor)
    async with deps.sessions() as session, session.begin():
        # Working the ticket, even while its identity check holds the closure back.
        responded = await sla.record_first_response(
            session,
            ticket,
            interaction.actor,
            interaction.conversation.id,
            at=deps.clock(),
            action="close",
            refresh_card=not in_card,  # the form takes the card's place
            person=entry,
        )
        await identity.audit_gate(session, interaction, ticket, "close")
        refused = await notify.form_takes_card(
            session,
            ticket,
            lambda: identity.require_confirmed(ticket),
            in_card=in_card,
            responded=responded,
            now=deps.clock(),
        )
        if refused is None:
            # Its answer is the form: a redelivery finding none kept says so (handlers.replay).
            await inbound.note(session, form=True)
    if refused is not None:
        raise refused
    async with deps.sessions() as session:
        logged = sum(e.minutes for e in await repo.time_entries_for(session, ticket.id))
        pattern = await _kb_requirement(session, ticket)
    return Reply(card=_closure_card(ticket, logged, pattern), as_form=True)


async def _kb_requirement(session: AsyncSession, ticket: Ticket) -> diagnosis.KbRequirement | None:
    """Why closing `ticket` needs a KB article: it is part of a pattern, or (a P1) a report
    its closure closes is, and is closed with the P1's KB article (SPEC "Patterns")."""
    own = await diagnosis.kb_requirement(session, ticket)
    if own is not None or not ticket.filed_count:
        return own
    for report in await working.closing_with(session, ticket):
        needed = await diagnosis.kb_requirement(session, report)
        if needed is not None:
            return needed
    return None


def _closure_card(ticket: Ticket, logged: int, pattern: diagnosis.KbRequirement | None) -> Card:
    """The closure form for `ticket`: its summary, whether the fix was confirmed, the KB
    article a pattern requires (`pattern`: diagnosis.kb_requirement's answer)."""
    return closure_form(
        ticket.number,
        logged_minutes=logged,
        summary=ticket.summary,
        kb_required=pattern.reason if pattern else "",
        kb_suggested=pattern.suggested if pattern else "",
        fix=working.fix_line(ticket) or fix_unconfirmed(ticket.number),
    )


async def close_command(deps: Deps, interaction: Interaction, command: Command) -> Reply:
    """`ticket close HD-7`: the closure form."""
    return await _form(deps, interaction, await load(deps, command))


async def close_button(deps: Deps, interaction: Interaction) -> Reply:
    """The **Close** button on a ticket card: the closure form."""
    number = str(interaction.data.get("ticket", ""))
    return await _form(deps, interaction, await load(deps, Command("close", number)))


@dataclass(frozen=True)
class Closure:
    note: str
    category: str
    minutes: int | None
    kb_article: str


def _value(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    return "" if value is None else str(value)


def validate(
    data: dict[str, Any],
    *,
    logged_minutes: int,
    kb_required: Inline = "",
    ticket_prefix: str = DEFAULT_TICKET_PREFIX,
    ticket: Ticket | None = None,
) -> Closure:
    """Check the closure form; InvalidInput names every bad field (ids as in the form).
    `kb_required`: why this ticket needs a KB article (it is part of a pattern).
    `ticket_prefix`: this help desk's ticket numbers, which a note cannot name as its object.
    `ticket`: the ticket closed, whose PSA number names no system either and whose summary,
    error text and what they were doing a note cannot only repeat."""
    errors: dict[str, Inline] = {}
    note = _value(data, "resolution_note")
    references = (ticket.psa_number or "",) if ticket else ()
    reported = (
        {
            "summary": ticket.summary,
            "exact error text": ticket.error_text,
            "'what were they doing'": ticket.doing,
        }
        if ticket
        else None
    )
    if problem := note_problem(
        note, ticket_prefix=ticket_prefix, references=references, reported=reported
    ):
        errors["resolution_note"] = problem
    raw_category = _value(data, "resolution_category").strip().lower()
    category = next((v for v, _ in CATEGORIES if v.lower() == raw_category), "")
    if not category:
        errors["resolution_category"] = "Choose Incident, Request or Problem."
    minutes = None
    spent = _value(data, "time_spent").strip()
    if spent:
        try:
            minutes = entry_minutes(spent)
        except DurationError as exc:
            errors["time_spent"] = exc.problem
    elif not logged_minutes:
        errors["time_spent"] = "No time is logged on this ticket yet: enter the time you spent."
    kb = _value(data, "kb_article").strip()
    if kb and (len(kb) > MAX_KB or not (_KB.match(kb) or _URL.match(kb))):
        errors["kb_article"] = "Enter a KB id like KB0012345 or a link (https://…)."
    elif not kb and kb_required:
        errors["kb_article"] = kb_required
    if errors:
        raise InvalidInput("The ticket was not closed: please fix the highlighted fields.", errors)
    return Closure(note=note.strip(), category=category, minutes=minutes, kb_article=kb)


async def submit(deps: Deps, interaction: Interaction) -> Reply:
    """Close the ticket in one transaction: note, category, time, event, survey, follow-up."""
    actor = interaction.actor
    await deps.require_technician(actor, "close tickets")
    number = str(interaction.data.get("ticket", ""))
    ticket = await load(deps, Command("close", number))
    _require_open(ticket)
    await identity.enforce(deps, interaction, ticket, "close")
    async with deps.sessions() as session:
        logged = sum(e.minutes for e in await repo.time_entries_for(session, ticket.id))
        pattern = await _kb_requirement(session, ticket)
    try:
        form = validate(
            interaction.data,
            logged_minutes=logged,
            kb_required=pattern.reason if pattern else "",
            ticket_prefix=deps.config.ticket_prefix,
            ticket=ticket,
        )
    except InvalidInput as exc:
        # Shown again with the errors (Teams): as it was first shown, fix line included.
        # Still in the card's place (Teams): the hold set when it was first shown goes on.
        exc.form = _closure_card(ticket, logged, pattern)
        raise
    closer = await deps.person(actor)
    closed_by = who_acted(actor, closer)
    closer_name = closed_by.plain()  # for the PSA
    survey_to, vip = await csat.survey_facts(deps, ticket)
    # A P1 closes the reports filed under it: their requesters' surveys, looked up first.
    filed_to = await working.filed_addresses(deps, ticket) if ticket.filed_count else {}
    now = deps.clock()

    async with deps.sessions() as session, session.begin():
        ticket = await _locked(session, ticket.number)
        _require_open(ticket)
        identity.require_confirmed(ticket)
        await sla.record_first_response(
            session,
            ticket,
            actor,
            interaction.conversation.id,
            at=now,
            action="close",
            refresh_card=False,
            person=closer,
        )
        if form.minutes:
            await add_time(
                session,
                ticket=ticket,
                interaction=interaction,
                minutes=form.minutes,
                note="Time spent (closure)",
                technician_email=closer.email if closer else "",
            )
        ticket.status = "closed"
        ticket.closed_at = now
        ticket.resolution_note = form.note
        ticket.resolution_category = form.category
        ticket.kb_article = form.kb_article
        await sla.on_closed(session, ticket, at=now)
        await working.retire_on_close(session, ticket)
        # A form in the card's place (this one, or one opened elsewhere) is of no use now:
        # the refresh held for it shows the closed card, else one is queued.
        if not await notify.card_form_answered(session, ticket, now=now):
            await notify.refresh_ticket_card(session, ticket)
        await psa.on_closed(session, ticket=ticket, closed_by=closer_name)
        await repo.add_event(
            session,
            ticket_id=ticket.id,
            kind="ticket.closed",
            actor_platform=actor.platform,
            actor_id=actor.id,
            channel=interaction.conversation.id,
            data={
                "category": form.category,
                "kb_article": form.kb_article,
                "note": form.note,
                "time_spent_minutes": form.minutes,
                # The requester confirmed the fix works (`confirm`), or closed without it.
                "fix_confirmed": ticket.fix_confirmed_at is not None,
            },
        )
        await incidents.on_ticket_closed(
            session, deps, ticket=ticket, actor=actor, channel=interaction.conversation.id
        )
        also, kept = (
            await working.close_filed(
                session,
                deps,
                p1=ticket,
                actor=actor,
                now=now,
                closed_by=closed_by,
                addresses=filed_to,
                channel=interaction.conversation.id,
                closer=closer,
            )
            if ticket.filed_count
            else ([], [])
        )
        if ticket.priority == "P1":
            await working.drop_p1_matches(session, ticket)
        await csat.schedule_survey(session, deps, ticket=ticket, to=survey_to, now=now)
        await csat.schedule_followup(
            session,
            deps,
            ticket=ticket,
            closed_by=actor,
            now=now,
            vip=vip,
            channel=interaction.conversation.id,
        )
        remarks = _remarks(ticket, also, kept)
        if not notify.answered_in_ticket_place(interaction, ticket):
            # A modal closes on success and shows no answer (Slack), and an answer elsewhere
            # (another platform, another chat) is not where the ticket is worked: the thread
            # gets it all.
            await notify.tell_technician(
                session,
                ticket,
                closed_notice(ticket, closed_by, remarks),
                purpose="closed",
                # Their own closure pings nobody; another technician's tells them.
                mention=not notify.is_ticket_technician(actor, closer, ticket),
            )
        card = await current_card(session, ticket, now=now)
    log.info("ticket closed", extra={"ticket": ticket.number, "with_it": len(also)})
    text = " ".join([f"Closed {ticket.number}.", *remarks])
    return Reply(text=text, card=card, private=False)


def _remarks(ticket: Ticket, also: list[str], kept: list[str]) -> list[str]:
    """What the closer is told beyond "closed": an unconfirmed fix, the reports filed under a
    P1 closed with it, and those left open because their requester is not confirmed."""
    said = []
    if ticket.fix_confirmed_at is None:
        said.append("The requester had not confirmed the fix: that is recorded.")
    if also:
        said.append(f"Also closed with it: {', '.join(also)} (filed under it); surveys queued.")
    if kept:
        said.append(
            f"Still open: {', '.join(kept)} (filed under it): the requester's identity is not "
            "confirmed, so each is closed on its own once it is (`ticket verify`)."
        )
    return said
