"""Closure, time entries, CSAT and escalation in the core (no HTTP), on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select

from bot.directory.file import FileDirectory
from cards.model import ActionId, Card, plain
from cards.slack import render_message
from handlers import closure, csat, dispatch, escalation
from handlers.commands import parse
from handlers.config import HelpdeskConfig
from handlers.deps import Deps
from handlers.tickets import details as ticket_details
from handlers.tickets import ticket_card
from handlers.types import (
    Actor,
    Conversation,
    DomainError,
    Forbidden,
    Interaction,
    InvalidInput,
    NotFound,
)
from storage import db
from storage import tickets as repo
from storage.models import CsatSurvey, OutboxMessage, Ticket, TicketEvent, TimeEntry

NOW = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
TECH = Actor("slack", "UTECH", "tom")
ANA = Actor("slack", "UANA", "ana")
PEOPLE = [
    {"email": "tech@example.com", "name": "Tom Tech", "slack_id": "UTECH", "technician": True},
    {"email": "ana@example.com", "name": "Ana Lopez", "slack_id": "UANA", "teams_id": "29:1ana"},
    {"email": "vera@example.com", "name": "Vera Vip", "teams_id": "29:1vera", "vip": True},
    {"email": "sam@example.com", "name": "Sam User", "slack_id": "USAM"},
]
CONFIG = {
    "csat": {"delay": "5m", "vip_followup_delay": "1d"},
    "queues": {"networking": {"slack": "C0NETWORK"}, "security": {"teams": "19:sec"}},
    "escalation": {"queues": {"network": "networking", "m365": "messaging"}},
}
GOOD_NOTE = "Cleared the print queue on PRN-0042 and reinstalled the HP UPD 7.1 driver"


@pytest.fixture
async def deps(db_url: str, tmp_path: Path) -> AsyncIterator[Deps]:
    (tmp_path / "people.yaml").write_text(yaml.safe_dump(PEOPLE))
    engine = db.create_engine(db_url)
    yield Deps(
        config=HelpdeskConfig.model_validate(CONFIG),
        sessions=db.session_factory(engine),
        directory=FileDirectory(tmp_path / "people.yaml"),
        clock=lambda: NOW,
    )
    await engine.dispose()


async def make_ticket(deps: Deps, **fields: Any) -> Ticket:
    async with deps.sessions() as session, session.begin():
        seq, number = await repo.next_number(session, prefix="HD")
        values: dict[str, Any] = {
            "number": number,
            "prefix": "HD",
            "seq": seq,
            "status": "open",
            "summary": "Printer jams",
            "reproducible": "yes",
            "priority": "P3",
            "category": "printer",
            "tier": "standard",
            "requester_id": "UANA",
            "requester_name": "Ana Lopez",
            "requester_email": "ana@example.com",
            "technician_id": "UTECH",
            "source_platform": "slack",
            "source_channel": "C0HELP",
            "source_thread": "1700000000.000100",
            "respond_by": NOW,
            "resolve_by": NOW,
        }
        return await repo.create(session, **(values | fields))


def act(
    action: ActionId | None = None,
    *,
    actor: Actor = TECH,
    text: str = "",
    delivery: str | None = None,
    can_reply: bool = True,
    **data: Any,
) -> Interaction:
    return Interaction(
        actor=actor,
        conversation=Conversation(actor.platform, "C0HELP"),
        text=text,
        action=action,
        data=data,
        delivery_id=delivery,
        can_reply=can_reply,
    )


def close_data(ticket: Ticket, **values: str) -> dict[str, str]:
    data = {
        "ticket": ticket.number,
        "resolution_note": GOOD_NOTE,
        "resolution_category": "Incident",
        "time_spent": "45m",
        "kb_article": "",
    }
    return data | values


async def rows(deps: Deps, model: Any) -> list[Any]:
    async with deps.sessions() as session:
        return list((await session.execute(select(model).order_by(model.id))).scalars())


async def reload(deps: Deps, ticket: Ticket) -> Ticket:
    async with deps.sessions() as session:
        found = await repo.get_by_number(session, ticket.number)
    assert found is not None
    return found


async def close(deps: Deps, ticket: Ticket, **values: str) -> None:
    await closure.submit(deps, act(ActionId.CLOSE_SUBMIT, **close_data(ticket, **values)))


# -- time entries ------------------------------------------------------------------------------


async def test_time_entries_are_logged_audited_and_totalled(deps: Deps) -> None:
    ticket = await make_ticket(deps)
    first = await closure.time_command(deps, act(), parse(f"time {ticket.number} 45m"))
    assert first.text == "Logged 45m on HD-1 (total 45m)."
    second = await closure.time_command(
        deps, act(), parse("time hd-1 1h 30m  checked the  spooler")
    )
    assert second.text == "Logged 1h 30m on HD-1 (total 2h 15m)."
    entries = await rows(deps, TimeEntry)
    assert [(e.minutes, e.note, e.actor_id) for e in entries] == [
        (45, "", "UTECH"),
        (90, "checked the  spooler", "UTECH"),
    ]
    events = [e for e in await rows(deps, TicketEvent) if e.kind == "time.logged"]
    assert [e.data["minutes"] for e in events] == [45, 90]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("time HD-1 0m", "at least 1 minute"),
        ("time HD-1 30s", "at least 1 minute"),
        # Seconds were dropped without a word (90s logged as 1m).
        ("time HD-1 90s", "whole minutes: '90s' is not; log 1m or 2m"),
        ("time HD-1 1h 59s", "whole minutes: '1h 59s' is not; log 1h or 1h 1m"),
        ("time HD-1 25h", "at most 24h"),
        ("time HD-1 1d1m", "at most 24h"),
        ("time HD-1", "How long"),
        ("time HD-1 soon", "How long"),
        ("time 45m", "Which ticket"),
    ],
)
async def test_bad_time_entries_are_refused(deps: Deps, text: str, problem: str) -> None:
    await make_ticket(deps)
    with pytest.raises(InvalidInput, match=problem):
        await closure.time_command(deps, act(), parse(text))
    assert await rows(deps, TimeEntry) == []


async def test_only_technicians_log_time_and_retries_log_once(deps: Deps) -> None:
    await make_ticket(deps)
    with pytest.raises(Forbidden, match="Only technicians can log time"):
        await closure.time_command(deps, act(actor=ANA), parse("time HD-1 45m"))
    with pytest.raises(NotFound):
        await closure.time_command(deps, act(), parse("time HD-9 45m"))
    logged = act(delivery="teams:x:1", text="time HD-1 45m")
    first, retry = await dispatch.handle(deps, logged), await dispatch.handle(deps, logged)
    # The retry runs nothing and is answered what the first was (tests/http/test_answer_replay).
    assert not retry.duplicate and (retry.text, first.text) == (
        first.text,
        "Logged 45m on HD-1 (total 45m).",
    )
    assert len(await rows(deps, TimeEntry)) == 1


# -- the closure form --------------------------------------------------------------------------


def labels(card: Card) -> list[str]:
    return [i.label for i in card.inputs()]


async def test_close_opens_the_form_with_spec_labels(deps: Deps) -> None:
    ticket = await make_ticket(deps)
    reply = await closure.close_command(deps, act(), parse("close HD-1"))
    assert reply.as_form and reply.card is not None
    assert labels(reply.card) == [
        "Resolution note",
        "Resolution category",
        "Time spent",
        "KB article",
    ]
    category = next(i for i in reply.card.inputs() if i.id == "resolution_category")
    assert [t for _, t in category.options] == ["Incident", "Request", "Problem"]  # type: ignore[union-attr]
    assert reply.card.form is not None and reply.card.form.action == ActionId.CLOSE_SUBMIT
    assert reply.card.form.context == {"ticket": "HD-1", "logged": "0"}
    button = await closure.close_button(deps, act(ActionId.CLOSE, ticket=ticket.number))
    assert button.card is not None and labels(button.card) == labels(reply.card)


async def test_close_form_is_for_technicians_and_open_confirmed_tickets(deps: Deps) -> None:
    await make_ticket(deps)
    await make_ticket(deps, identity_state="pending")
    await make_ticket(deps, status="closed")
    with pytest.raises(Forbidden, match="Only technicians can close"):
        await closure.close_command(deps, act(actor=ANA), parse("close HD-1"))
    with pytest.raises(Forbidden):
        await closure.close_command(deps, act(), parse("close HD-2"))
    with pytest.raises(DomainError, match="already closed"):
        await closure.close_command(deps, act(), parse("close HD-3"))
    with pytest.raises(InvalidInput, match="Which ticket"):
        await closure.close_button(deps, act(ActionId.CLOSE))


# -- closing -----------------------------------------------------------------------------------


async def assert_unchanged(deps: Deps, ticket: Ticket, *, audited: tuple[str, ...] = ()) -> None:
    """Nothing changed; `audited`: the audit events the refusal itself wrote."""
    assert (await reload(deps, ticket)).status == "open"
    assert await rows(deps, TimeEntry) == []
    assert await rows(deps, OutboxMessage) == []
    assert await rows(deps, CsatSurvey) == []
    assert [e.kind for e in await rows(deps, TicketEvent)] == list(audited)


@pytest.mark.parametrize("note", ["rebooted and it worked", "fixed", "works now", "done"])
async def test_filler_note_is_refused_and_nothing_changes(deps: Deps, note: str) -> None:
    ticket = await make_ticket(deps)
    with pytest.raises(InvalidInput) as refused:
        await close(deps, ticket, resolution_note=note)
    assert set(refused.value.field_errors) == {"resolution_note"}
    assert "PRN-0042" in refused.value.field_errors["resolution_note"]
    await assert_unchanged(deps, ticket)


async def test_a_ticket_number_of_this_help_desk_names_nothing(deps: Deps) -> None:
    deps.config = deps.config.model_copy(update={"ticket_prefix": "IT"})
    ticket = await make_ticket(deps)
    with pytest.raises(InvalidInput) as refused:
        await close(deps, ticket, resolution_note="Rebooted the laptop and it worked, see IT-12")
    assert refused.value.field_errors["resolution_note"].startswith("Name what you did it to")
    await assert_unchanged(deps, ticket)


async def test_every_bad_field_is_named(deps: Deps) -> None:
    ticket = await make_ticket(deps)
    with pytest.raises(InvalidInput) as refused:
        await close(
            deps,
            ticket,
            resolution_note="fixed",
            resolution_category="",
            time_spent="",
            kb_article="see wiki",
        )
    assert set(refused.value.field_errors) == {
        "resolution_note",
        "resolution_category",
        "time_spent",
        "kb_article",
    }
    with pytest.raises(InvalidInput) as refused:
        await close(deps, ticket, time_spent="25h")
    assert refused.value.field_errors == {"time_spent": closure_error("25h")}
    await assert_unchanged(deps, ticket)


def closure_error(text: str) -> str:
    with pytest.raises(ValueError) as error:
        closure.entry_minutes(text)
    return str(error.value)


async def test_good_close_closes_and_queues_the_survey(deps: Deps) -> None:
    ticket = await make_ticket(deps)
    reply = await closure.submit(
        deps,
        act(
            ActionId.CLOSE_SUBMIT,
            **close_data(ticket, kb_article="KB0012345", resolution_category="request"),
        ),
    )
    assert reply.text.startswith("Closed HD-1.") and reply.card is not None
    assert not reply.card.buttons
    # Closed without the requester's confirmation (`confirm`): allowed, and recorded.
    assert "had not confirmed the fix" in reply.text
    closed = await reload(deps, ticket)
    assert (closed.status, closed.closed_at) == ("closed", NOW)
    assert (closed.resolution_note, closed.resolution_category, closed.kb_article) == (
        GOOD_NOTE,
        "Request",
        "KB0012345",
    )
    [entry] = await rows(deps, TimeEntry)
    assert entry.minutes == 45
    kinds = [e.kind for e in await rows(deps, TicketEvent)]
    assert kinds == ["sla.first_response", "time.logged", "ticket.closed", "csat.scheduled"]
    # Closing is a first response too; both clocks stop (the ticket was due at NOW: met).
    assert (closed.first_response_at, closed.first_response_by) == (NOW, "UTECH")
    assert (closed.respond_met, closed.resolve_met, closed.time_minutes) == (True, True, 45)
    [survey] = await rows(deps, CsatSurvey)
    assert (survey.requester_platform, survey.requester_id, survey.rating) == (
        "slack",
        "UANA",
        None,
    )
    [dm] = await rows(deps, OutboxMessage)
    assert (dm.kind, dm.payload["platform"], dm.payload["user"]) == ("dm", "slack", "UANA")
    assert dm.payload["purpose"] == "csat-survey"
    assert dm.due_at == NOW + timedelta(minutes=5)
    titles = [b["title"] for b in dm.payload["card"]["buttons"]]
    assert titles == ["1", "2", "3", "4", "5", "Add a comment"]
    assert dm.payload["card"]["buttons"][3]["value"] == {"survey": survey.nonce, "rating": "4"}
    with pytest.raises(DomainError, match="already closed"):
        await close(deps, ticket)


async def test_logged_time_makes_time_spent_optional(deps: Deps) -> None:
    ticket = await make_ticket(deps)
    await closure.time_command(deps, act(), parse("time HD-1 20m"))
    reply = await closure.close_command(deps, act(), parse("close HD-1"))
    assert reply.card is not None and reply.card.form is not None
    assert reply.card.form.context["logged"] == "20"
    assert not next(i for i in reply.card.inputs() if i.id == "time_spent").required
    await close(deps, ticket, time_spent="")
    assert [e.minutes for e in await rows(deps, TimeEntry)] == [20]


async def test_closed_from_a_modal_tells_the_thread(deps: Deps) -> None:
    ticket = await make_ticket(deps)
    await closure.submit(deps, act(ActionId.CLOSE_SUBMIT, can_reply=False, **close_data(ticket)))
    notice = [r for r in await rows(deps, OutboxMessage) if r.payload["purpose"] == "closed"]
    assert notice[0].payload["thread"] == ticket.source_thread
    assert "closed by Tom Tech" in notice[0].payload["text"]


async def test_gated_ticket_cannot_close_until_confirmed(deps: Deps) -> None:
    ticket = await make_ticket(deps, identity_state="required")
    with pytest.raises(Forbidden):
        await close(deps, ticket)
    await assert_unchanged(deps, ticket, audited=("identity.gate_refused",))
    async with deps.sessions() as session, session.begin():
        (await repo.get_by_number(session, "HD-1")).identity_state = "confirmed"  # type: ignore[union-attr]
    await close(deps, ticket)
    assert (await reload(deps, ticket)).status == "closed"


async def test_only_technicians_close(deps: Deps) -> None:
    ticket = await make_ticket(deps)
    with pytest.raises(Forbidden):
        await closure.submit(deps, act(ActionId.CLOSE_SUBMIT, actor=ANA, **close_data(ticket)))
    await assert_unchanged(deps, ticket)


async def test_p1_close_tells_incidents(deps: Deps, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    async def on_ticket_closed(session: Any, deps: Deps, **kwargs: Any) -> None:
        calls.append(kwargs)

    monkeypatch.setattr("handlers.incidents.on_ticket_closed", on_ticket_closed)
    ticket = await make_ticket(deps, priority="P1")
    await close(deps, ticket)
    assert [(c["ticket"].number, c["actor"]) for c in calls] == [("HD-1", TECH)]


# -- personal follow-up ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "reasons"),
    [
        ({"requester_vip": True}, ["VIP requester"]),
        ({"priority": "P1"}, ["P1 ticket"]),
        ({"priority": "P3"}, None),
    ],
)
async def test_followup_for_vip_and_p1_only(deps: Deps, fields: dict, reasons: Any) -> None:
    ticket = await make_ticket(deps, **fields)
    await close(deps, ticket)
    reminders = [
        r for r in await rows(deps, OutboxMessage) if r.payload["purpose"] == "vip-followup"
    ]
    events = [e for e in await rows(deps, TicketEvent) if e.kind == "followup.scheduled"]
    if reasons is None:
        assert reminders == [] and events == []
        return
    [reminder] = reminders
    assert (reminder.kind, reminder.payload["platform"], reminder.payload["user"]) == (
        "dm",
        "slack",
        "UTECH",
    )
    assert reminder.due_at == NOW + timedelta(days=1)
    assert events[0].data["reasons"] == reasons


# -- where the survey goes ---------------------------------------------------------------------


async def test_survey_goes_to_the_other_platform_when_needed(deps: Deps) -> None:
    ticket = await make_ticket(
        deps, requester_id="vera@example.com", requester_email="", source_platform="slack"
    )
    assert await csat.survey_address(deps, ticket) == ("teams", "29:1vera")
    teams = await make_ticket(
        deps, requester_id="29:1ana", requester_email="ana@example.com", source_platform="teams"
    )
    assert await csat.survey_address(deps, teams) == ("teams", "29:1ana")
    stranger = await make_ticket(
        deps, requester_id="nobody@example.com", requester_email="", source_platform="teams"
    )
    assert await csat.survey_address(deps, stranger) is None


async def test_survey_goes_only_to_a_platform_this_help_desk_is_connected_to(deps: Deps) -> None:
    """Slack-only: Vera (Teams only) cannot be surveyed, Ana (both) is on Slack even for a
    ticket that came through Teams. Teams-only: Sam (Slack only) cannot, nor a Slack ticket's
    requester by the Slack id it is on file for; the technician is told why."""
    vera = await make_ticket(
        deps, requester_id="vera@example.com", requester_email="", source_platform="slack"
    )
    ana = await make_ticket(
        deps, requester_id="29:1ana", requester_email="ana@example.com", source_platform="teams"
    )
    sam = await make_ticket(deps, requester_id="USAM", requester_email="sam@example.com")
    stranger = await make_ticket(deps, requester_id="UNOBODY", requester_email="")
    slack_only = dataclasses.replace(deps, platforms=("slack",))
    assert await csat.survey_address(slack_only, vera) is None
    assert await csat.survey_address(slack_only, ana) == ("slack", "UANA")
    assert await csat.survey_address(slack_only, stranger) == ("slack", "UNOBODY")
    teams_only = dataclasses.replace(deps, platforms=("teams",))
    assert await csat.survey_address(teams_only, sam) is None
    assert await csat.survey_address(teams_only, stranger) is None
    assert await csat.survey_address(teams_only, ana) == ("teams", "29:1ana")
    await close(teams_only, sam)
    [told] = [
        r for r in await rows(deps, OutboxMessage) if r.payload["purpose"] == "csat-unreachable"
    ]
    assert "has no Teams id in the directory (Slack is not connected" in told.payload["text"]
    assert not [r for r in await rows(deps, CsatSurvey)]


async def test_unreachable_requester_is_reported_not_lost(deps: Deps) -> None:
    ticket = await make_ticket(
        deps,
        requester_id="nobody@example.com",
        requester_email="",
        source_platform="teams",
        source_channel="a:chat",
    )
    await close(deps, ticket)
    assert await rows(deps, CsatSurvey) == []
    # Closed from Slack, the Teams ticket's conversation also hears of the closure itself.
    queued = {r.payload["purpose"]: r for r in await rows(deps, OutboxMessage)}
    assert set(queued) == {"csat-unreachable", "closed"}
    notice = queued["csat-unreachable"]
    assert "nobody@example.com" in notice.payload["text"]
    assert "csat.unreachable" in [e.kind for e in await rows(deps, TicketEvent)]


# -- answers -----------------------------------------------------------------------------------


async def closed_survey(deps: Deps, **fields: Any) -> CsatSurvey:
    ticket = await make_ticket(deps, **fields)
    await close(deps, ticket)
    [survey] = await rows(deps, CsatSurvey)
    return survey


async def rate(deps: Deps, survey: CsatSurvey, rating: str, actor: Actor = ANA, **extra: str):
    return await csat.rate(
        deps, act(ActionId.CSAT_RATE, actor=actor, survey=survey.nonce, rating=rating, **extra)
    )


async def comment(deps: Deps, survey: CsatSurvey, **extra: str):
    return await csat.comment(
        deps, act(ActionId.CSAT_COMMENT, actor=ANA, survey=survey.nonce, **extra)
    )


async def test_rating_is_stored_once(deps: Deps) -> None:
    survey = await closed_survey(deps)
    reply = await rate(deps, survey, "4")
    assert reply.text == "Thank you! You rated HD-1 4/5."
    again = await rate(deps, survey, "1")
    assert "already rated HD-1 4/5" in again.text
    [stored] = await rows(deps, CsatSurvey)
    assert (stored.rating, stored.answered_at) == (4, NOW)
    assert [r.payload["purpose"] for r in await rows(deps, OutboxMessage)] == ["csat-survey"]


async def test_only_the_requester_can_answer(deps: Deps) -> None:
    survey = await closed_survey(deps)
    sam = Actor("slack", "USAM")
    reply = await rate(deps, survey, "5", sam)
    assert "Only the requester" in reply.text
    teams_ana = Actor("teams", "UANA")
    await rate(deps, survey, "5", teams_ana)
    [stored] = await rows(deps, CsatSurvey)
    assert stored.rating is None
    refused = [e for e in await rows(deps, TicketEvent) if e.kind == "csat.refused"]
    assert [e.actor_id for e in refused] == ["USAM", "UANA"]
    with pytest.raises(NotFound):
        await csat.rate(deps, act(ActionId.CSAT_RATE, actor=ANA, survey="nope", rating="5"))
    with pytest.raises(InvalidInput):
        await rate(deps, survey, "7")


@pytest.mark.parametrize("rating", ["1", "2"])
async def test_low_rating_alerts_the_technician(deps: Deps, rating: str) -> None:
    survey = await closed_survey(deps)
    await rate(deps, survey, rating, comment="Took three days")
    alerts = [r for r in await rows(deps, OutboxMessage) if r.payload["purpose"] == "csat-alert"]
    [alert] = alerts
    assert alert.payload["thread"] == "1700000000.000100"
    assert (
        f"rated {rating}/5" in alert.payload["text"] and "Took three days" in alert.payload["text"]
    )
    [stored] = await rows(deps, CsatSurvey)
    assert stored.comment == "Took three days"


async def test_comment_opens_a_form_then_is_stored_once(deps: Deps) -> None:
    survey = await closed_survey(deps)
    form = await comment(deps, survey)
    assert form.as_form and form.card is not None and form.card.form is not None
    assert form.card.form.context == {"survey": survey.nonce}
    empty = await comment(deps, survey, comment="  ")
    assert "Type your comment" in empty.text
    done = await comment(deps, survey, comment="Quick and friendly")
    assert "Thank you for your comment" in done.text
    again = await comment(deps, survey, comment="More")
    assert "already have your comment" in again.text
    [stored] = await rows(deps, CsatSurvey)
    assert stored.comment == "Quick and friendly"


async def test_ticket_show_details(deps: Deps) -> None:
    survey = await closed_survey(deps, requester_vip=True)
    await rate(deps, survey, "4")
    async with deps.sessions() as session:
        ticket = await repo.get_by_number(session, "HD-1")
        assert ticket is not None
        body, confidential = await ticket_details.details(session, ticket, deps.directory)
    assert not confidential  # no identity check names a number here
    # `show` is the ticket card (a closed one shows its resolution) and these details.
    card = ticket_card(ticket)
    text = render_message(Card(title="", body=[*card.body, *body]))["blocks"].__repr__()
    for expected in (
        "Time entries (total 45m)",
        "Time spent (closure)",
        GOOD_NOTE,
        "Incident",
        "4/5",
        "CSAT survey to the requester",
        "VIP follow-up reminder",
        "queued for",
    ):
        assert expected in text, expected


# -- escalation --------------------------------------------------------------------------------

FACTS = {
    "repro_steps": "Open VPN, connect",
    "error_text": "Error 809",
    "already_tried": "Reinstalled the client",
    "asset_link": "",
    "user_impact": "Cannot work remotely",
    "queue": "networking",
}


async def test_escalation_form_and_submit(deps: Deps) -> None:
    ticket = await make_ticket(deps, category="network", error_text="Error 809")
    reply = await escalation.escalate_command(deps, act(), parse("escalate HD-1"))
    assert reply.card is not None
    assert labels(reply.card) == [
        "Reproduction steps",
        "Error text",
        "Already tried",
        "Asset link",
        "User impact",
        "Queue",
    ]
    queue = next(i for i in reply.card.inputs() if i.id == "queue")
    assert [v for v, _ in queue.options] == ["messaging", "networking", "security"]  # type: ignore[union-attr]
    assert queue.value == "networking"
    with pytest.raises(InvalidInput) as refused:
        await escalation.submit(
            deps,
            act(
                ActionId.ESCALATE_SUBMIT,
                ticket=ticket.number,
                **(FACTS | {"repro_steps": " ", "queue": "x"}),
            ),
        )
    assert set(refused.value.field_errors) == {"repro_steps", "queue"}
    done = await escalation.submit(
        deps, act(ActionId.ESCALATE_SUBMIT, can_reply=False, ticket=ticket.number, **FACTS)
    )
    assert "escalated to networking" in plain(done.text)
    [event] = [e for e in await rows(deps, TicketEvent) if e.kind == "ticket.escalated"]
    assert event.data["queue"] == "networking" and event.data["user_impact"] == FACTS["user_impact"]
    posts = await rows(deps, OutboxMessage)
    queue_post = next(r for r in posts if r.payload["purpose"] == "escalation")
    assert queue_post.payload["channel"] == "C0NETWORK"
    assert "Cannot work remotely" in str(queue_post.payload["card"])
    assert any(r.payload["purpose"] == "escalated" for r in posts)


async def test_escalation_refusals(deps: Deps) -> None:
    await make_ticket(deps, identity_state="pending")
    ticket = await make_ticket(deps)
    with pytest.raises(Forbidden, match="Only technicians can escalate"):
        await escalation.escalate_button(deps, act(ActionId.ESCALATE, actor=ANA, ticket="HD-2"))
    with pytest.raises(Forbidden):
        await escalation.escalate_command(deps, act(), parse("escalate HD-1"))
    done = await escalation.submit(
        deps,
        act(ActionId.ESCALATE_SUBMIT, ticket=ticket.number, **(FACTS | {"queue": "messaging"})),
    )
    assert "no Slack or Teams channel" in plain(done.text)
    async with deps.sessions() as session:
        count = (await session.execute(select(func.count()).select_from(OutboxMessage))).scalar()
    assert count == 0
