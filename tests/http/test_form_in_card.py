"""A closure or escalation form in the Teams ticket card's place is never overwritten by a
refresh of the card (the technician typing the resolution note lost it, seen in the Agents
Playground): the refresh is held, durably, until the form is answered or its hold runs out,
and the refreshes held meanwhile reach the card as one current render. Slack's forms are
modals: its card is refreshed at once, as before."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from handlers.notify import FORM_HOLD
from storage.models import OutboxMessage, Ticket, utcnow
from tests.fakes.botframework import FakeConnector
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, TestClock, wait_until
from tests.http.conftest_teams import CARD_TYPE, PERSONAL, TECH_ID
from tests.http.working_support import (
    PEOPLE,
    SlackFlow,
    TeamsFlow,
    shown,
    teams_config,
    ticket_row,
)

CLOSURE_LABELS = ["Resolution note", "Resolution category", "Time spent", "KB article"]
NOTE = "Cleared the print queue on PRN-0042 and reinstalled the HP UPD 7.1 driver"
# What the card says once `ticket confirm` asked the requester (the refresh that is held).
ASKED = "asked"


FACTS = {
    "repro_steps": "Print the Q3 report from Excel on floor 3",
    "error_text": "Error 0x8007001F on the printer's panel",
    "already_tried": "Power-cycled the printer and cleared the tray",
    "asset_link": "https://rmm.example.com/devices/4711",
    "user_impact": "The finance team cannot print the Q3 report",
    "queue": "networking",
}
# Escalation needs a queue to escalate to.
QUEUES = {"queues": {"networking": {"teams": "19:networking@thread.tacv2"}}}


async def start(make_app: Any, connector: FakeConnector) -> tuple[AppHarness, TeamsFlow, TestClock]:
    # Ahead of the real time: rows queued for "now" are due at once (tests.harness.TestClock).
    clock = TestClock(utcnow() + timedelta(minutes=1))
    config = teams_config(connector, **QUEUES)
    app: AppHarness = await make_app(config=config, people=PEOPLE, clock=clock)
    return app, TeamsFlow(app, connector), clock


def card_updates(fake: FakeConnector, message: str) -> list[dict[str, Any]]:
    return [u for u in fake.updates() if u["_activity_id"] == message]


async def press(t: TeamsFlow, number: str, title: str, message: str) -> dict[str, Any]:
    """Press `title` on the ticket card as its technician (Action.Execute: the answer takes
    the place of the card's message); the invoke answer."""
    card = t.card(number)
    assert card is not None
    body = t.invoke_body(card, title, TECH_ID, PERSONAL)
    body["replyToId"] = message  # Teams: the clicked card's message
    response = await t.app.teams(body)
    assert response.status == 200
    answer: dict[str, Any] = await response.json()
    return answer


async def submit_form(
    t: TeamsFlow, form: dict[str, Any], message: str, **typed: str
) -> dict[str, Any]:
    """Press the form's submit button (it sits in the card's message); the invoke answer."""
    [submit] = [a for a in form["actions"] if a["type"] == "Action.Execute"]
    body = t.invoke_body(form, submit["title"], TECH_ID, PERSONAL, **typed)
    body["replyToId"] = message
    response = await t.app.teams(body)
    assert response.status == 200
    answer: dict[str, Any] = await response.json()
    return answer


async def held_refreshes(app: AppHarness, number: str) -> list[OutboxMessage]:
    async with app.services.sessions() as session:
        ticket_id = await session.scalar(select(Ticket.id).where(Ticket.number == number))
        query = select(OutboxMessage).where(OutboxMessage.ticket_id == ticket_id)
        rows = (await session.execute(query)).scalars().all()
    return [r for r in rows if r.payload.get("refresh_ticket_card") and r.status == "pending"]


async def confirm(t: TeamsFlow, number: str) -> None:
    """`ticket confirm`: asks the requester, and refreshes the ticket card (fix asked)."""
    assert await t.say(f"ticket confirm {number}") == 201
    await wait_until(lambda: t.texts(PERSONAL, "Asked Ana User"), what="the answer to confirm")


async def no_update_for(fake: FakeConnector, message: str, seconds: float = 1.0) -> None:
    with pytest.raises(AssertionError, match="timed out"):
        await wait_until(lambda: card_updates(fake, message) != [], timeout=seconds)


async def closure_form_in_place(
    make_app: Any, connector: FakeConnector
) -> tuple[AppHarness, TeamsFlow, TestClock, str, str, dict[str, Any]]:
    """A ticket whose card's **Close** was pressed (the form in its place), then a refresh of
    the card caused (`ticket confirm`): (app, flow, clock, number, card message, form)."""
    app, t, clock = await start(make_app, connector)
    number = await t.ticket(requester="ana@example.com")
    message = (await ticket_row(app, number)).card_message
    assert message
    answer = await press(t, number, "Close", message)
    assert answer["type"] == CARD_TYPE, answer
    form = answer["value"]
    assert [i["label"] for i in form["body"] if i.get("label")] == CLOSURE_LABELS
    await confirm(t, number)
    await no_update_for(connector, message)
    return app, t, clock, number, message, form


async def test_a_refresh_waits_for_the_closure_form_in_the_cards_place_until_submitted(
    make_app: Any, connector: FakeConnector
) -> None:
    app, t, _, number, message, form = await closure_form_in_place(make_app, connector)
    [held] = await held_refreshes(app, number)
    assert held.due_at > utcnow() + FORM_HOLD / 2  # durable: waiting in the database

    # A form with errors is shown again: still in the card's place, still nothing over it.
    again = await submit_form(t, form, message, resolution_note="fixed")
    assert again["type"] == CARD_TYPE and "not closed" in shown(again["value"]), again
    await confirm(t, number)
    await no_update_for(connector, message, 0.5)
    assert len(await held_refreshes(app, number)) == 1  # the held refreshes collapse

    closed = await submit_form(
        t,
        form,
        message,
        resolution_note=NOTE,
        resolution_category="Incident",
        time_spent="30m",
        kb_article="",
    )
    assert closed["type"] == CARD_TYPE and f"Closed {number}" in shown(closed["value"]), closed
    assert (await ticket_row(app, number)).status == "closed"
    # The card is current again: the closed card (no buttons), and nothing held any longer.
    await wait_until(lambda: card_updates(connector, message) != [], what="the card refreshed")
    await wait_until(_nothing_held(app, number), what="nothing held")
    latest = t.card(number)
    assert latest is not None and not latest.get("actions"), latest


def _nothing_held(app: AppHarness, number: str) -> Any:
    async def check() -> bool:
        return await held_refreshes(app, number) == []

    return check


async def test_an_abandoned_form_gives_way_to_the_held_refresh_after_its_hold(
    make_app: Any, connector: FakeConnector
) -> None:
    app, t, clock, number, message, _ = await closure_form_in_place(make_app, connector)
    await confirm(t, number)  # a second refresh, held too
    await no_update_for(connector, message, 0.5)
    clock.set(clock() + FORM_HOLD + timedelta(seconds=1))
    await wait_until(lambda: card_updates(connector, message) != [], what="the held refresh")
    await asyncio.sleep(0.5)
    [update] = card_updates(connector, message)  # one render for both refreshes
    assert ASKED in shown(update).lower() and "Close" in shown(update)
    await wait_until(_nothing_held(app, number), what="nothing held")


async def escalation_form_in_place(
    make_app: Any, connector: FakeConnector
) -> tuple[AppHarness, TeamsFlow, TestClock, str, str, dict[str, Any]]:
    app, t, clock = await start(make_app, connector)
    number = await t.ticket(requester="ana@example.com")
    message = (await ticket_row(app, number)).card_message
    assert message
    answer = await press(t, number, "Escalate", message)
    assert answer["type"] == CARD_TYPE and "Reproduction steps" in shown(answer["value"])
    return app, t, clock, number, message, answer["value"]


async def test_a_refresh_waits_for_the_escalation_form_until_the_escalation(
    make_app: Any, connector: FakeConnector
) -> None:
    app, t, _, number, message, form = await escalation_form_in_place(make_app, connector)
    await confirm(t, number)
    await no_update_for(connector, message)
    answer = await submit_form(t, form, message, **FACTS)
    # A message: Teams leaves the form on screen, and the card held for it comes back.
    assert answer["type"] != CARD_TYPE and "was escalated to networking" in answer["value"]
    await wait_until(lambda: card_updates(connector, message) != [], what="the card back")
    latest = t.card(number)
    assert latest is not None and ASKED in shown(latest).lower() and "Close" in shown(latest)
    await wait_until(_nothing_held(app, number), what="nothing held")


async def test_an_abandoned_escalation_form_gives_the_card_back_after_its_hold(
    make_app: Any, connector: FakeConnector
) -> None:
    """Nothing changed meanwhile: the card, with its buttons, still comes back."""
    _, _, clock, number, message, _ = await escalation_form_in_place(make_app, connector)
    await no_update_for(connector, message, 0.5)
    clock.set(clock() + FORM_HOLD + timedelta(seconds=1))
    await wait_until(lambda: card_updates(connector, message) != [], what="the card back")
    [update] = card_updates(connector, message)
    assert "Escalate" in shown(update) and f"{number} (P" in shown(update)


async def test_a_refresh_survives_a_restart_while_held(
    make_app: Any, connector: FakeConnector
) -> None:
    app, _, clock, number, message, _ = await closure_form_in_place(make_app, connector)
    await app.stop()
    config = teams_config(connector, **QUEUES)
    again: AppHarness = await make_app(config=config, people=PEOPLE, clock=clock)
    await no_update_for(connector, message, 0.5)
    clock.set(clock() + FORM_HOLD + timedelta(seconds=1))
    await wait_until(lambda: card_updates(connector, message) != [], what="the held refresh")
    # Marked delivered once the connector has answered: a moment after the update arrives.
    await wait_until(_nothing_held(again, number), what="nothing held")


async def test_slack_refreshes_the_card_at_once_while_its_closure_modal_is_open(
    make_app: Any, slack_api: FakeSlack
) -> None:
    app: AppHarness = await make_app(slack=slack_api, people=PEOPLE)
    s = SlackFlow(app, slack_api)
    number = await s.ticket()
    card = s.card(number)
    assert card is not None
    opened = len(slack_api.views_opened())
    assert await s.press(card, "Close", "UTECH") == ""
    assert len(slack_api.views_opened()) == opened + 1
    updated = len(slack_api.method_calls("chat.update"))
    assert "Asked Ana User" in await s.command(f"confirm {number}")
    await wait_until(
        lambda: len(slack_api.method_calls("chat.update")) > updated, what="the card refreshed"
    )
    await wait_until(_nothing_held(app, number), what="nothing held")


async def test_a_refused_escalate_leaves_the_card_in_place_refreshed_and_nothing_held(
    make_app: Any, connector: FakeConnector
) -> None:
    """No queue to escalate to: the answer is the refusal (a message), so the card stays where
    it was; the first response it was is shown on it at once, and no form holds it."""
    clock = TestClock(utcnow() + timedelta(minutes=1))
    app: AppHarness = await make_app(config=teams_config(connector), people=PEOPLE, clock=clock)
    t = TeamsFlow(app, connector)
    number = await t.ticket(requester="ana@example.com")
    message = (await ticket_row(app, number)).card_message
    assert message
    answer = await press(t, number, "Escalate", message)
    assert answer["type"] != CARD_TYPE and "No queues are configured" in answer["value"], answer
    await wait_until(lambda: card_updates(connector, message) != [], what="the card refreshed")
    assert (await ticket_row(app, number)).card_form_until is None
    await confirm(t, number)
    await wait_until(lambda: len(card_updates(connector, message)) > 1, what="a refresh at once")


async def test_a_redelivered_submission_with_errors_is_shown_the_same_form(
    make_app: Any, connector: FakeConnector
) -> None:
    """The hold is counted from when the form was first shown, not renewed by a submission
    with errors: renewing it would write on that path, and a redelivery of the submission
    would then be told "This was done: an earlier delivery was saved" when nothing was."""
    _, t, _, _, message, form = await closure_form_in_place(make_app, connector)
    [submit] = [a for a in form["actions"] if a["type"] == "Action.Execute"]
    body = t.invoke_body(form, submit["title"], TECH_ID, PERSONAL, resolution_note="fixed")
    body["replyToId"] = message
    first = await (await t.app.teams(body)).json()
    second = await (await t.app.teams(body)).json()
    assert first["type"] == CARD_TYPE and "not closed" in shown(first["value"]), first
    assert second == first


async def test_a_report_closed_with_its_p1_gets_its_card_back_from_a_form_at_once(
    make_app: Any, connector: FakeConnector
) -> None:
    """A report's closure form was in its card's place when the P1 it is filed under closed
    it: the form is of no use any more (as when the ticket itself is closed elsewhere), so
    the card shows the report closed at once, not once the form's hold runs out."""
    app, t, _ = await start(make_app, connector)
    p1 = await t.ticket(
        requester="ana@example.com", priority="P1", users_affected="10", summary="VPN down"
    )
    report = await t.ticket(requester="ana@example.com", summary="No VPN")
    assert await t.say(f"ticket link {report} {p1}") == 201
    await wait_until(lambda: t.texts(PERSONAL, f"{report} is filed under {p1}"))
    message = (await ticket_row(app, report)).card_message
    assert message
    await wait_until(
        lambda: f"Filed under P1 {p1}" in shown(t.card(report) or {}), what="the card linked"
    )
    await wait_until(_nothing_held(app, report), what="the card refreshed")
    answer = await press(t, report, "Close", message)
    assert answer["type"] == CARD_TYPE, answer
    before = len(card_updates(connector, message))

    posted = len(connector.activities(PERSONAL))
    assert await t.say(f"ticket close {p1}") == 201
    await wait_until(lambda: len(connector.activities(PERSONAL)) > posted, what="the form")
    sent = next(a for a in connector.activities(PERSONAL)[posted:] if a.get("attachments"))
    form = sent["attachments"][0]["content"]
    closed = await submit_form(
        t,
        form,
        sent["_id"],
        resolution_note=NOTE,
        resolution_category="Incident",
        time_spent="30m",
        kb_article="",
    )
    assert f"Closed {p1}" in shown(closed["value"]), closed
    assert (await ticket_row(app, report)).status == "closed"
    await wait_until(
        lambda: len(card_updates(connector, message)) > before, what="the report's card"
    )
    latest = t.card(report)
    assert latest is not None and not latest.get("actions"), latest
    await wait_until(_nothing_held(app, report), what="nothing held")
