"""The ticket card shows the ticket as it stands, also when its message went out late.

A card whose post was throttled (Slack 429, the Teams connector's 429) reaches its channel
after the ticket has changed; the refreshes queued meanwhile had no message to edit, so the
card is brought up to date once it is posted.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from storage.models import Ticket
from tests.fakes.botframework import FakeConnector
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, view_submission, wait_until
from tests.http.conftest_teams import (
    CHANNEL,
    PERSONAL,
    activity,
    form_values,
    message,
    submit_action,
)
from tests.http.test_closure_teams import say, start
from tests.http.test_identity_teams import new_ticket as identity_ticket
from tests.http.test_identity_teams import start as identity_start
from tests.http.working_support import PEOPLE, SlackFlow, _choice, _text, shown


async def test_slack_a_card_posted_after_the_ticket_changed_is_brought_up_to_date(
    make_app: Any, slack_api: FakeSlack
) -> None:
    app: AppHarness = await make_app(slack=slack_api, people=PEOPLE)
    s = SlackFlow(app, slack_api)
    # Slack refuses the card's first post with a 6 s window: it goes out after the raise.
    slack_api.fail(
        "/api/chat.postMessage",
        429,
        times=1,
        headers={"Retry-After": "6"},
        body={"ok": False, "error": "ratelimited"},
    )
    view = await s.modal("new Printer jams on floor 3")
    values = {
        "requester": {"type": "users_select", "selected_user": "UANA"},
        "summary": _text("Printer jams on floor 3"),
        "error_text": _text("Error 0x8007001F: paper path"),
        "doing": _text("Printing the Q3 report"),
        "reproducible": _choice("yes"),
        "users_affected": {"type": "number_input", "value": "1"},
        "priority": _choice("P3"),
        "category": _choice("printer"),
        "asset": _text("PRN-0042"),
        "client": _text("Acme"),
    }
    submitted = view_submission(view, values, view_id="VLATE1")
    assert (await app.interactive(submitted)).status == 200
    await wait_until(lambda: slack_api.calls("/api/chat.postMessage"), what="the refused post")
    assert s.card("HD-1") is None  # not posted yet

    raised = await s.command("p1 HD-1")
    assert "HD-1 is now P1" in raised
    async with app.services.sessions() as session:
        row = (await session.execute(select(Ticket).where(Ticket.number == "HD-1"))).scalar_one()
    assert row.priority == "P1" and row.card_message is None

    await wait_until(lambda: s.card("HD-1") is not None, timeout=20, what="the card posted")
    await wait_until(
        lambda: "HD-1 (P1)" in shown((s.card("HD-1") or {}).get("blocks", [])[:1]),
        timeout=15,
        what="the card updated to P1",
    )
    card = s.card("HD-1")
    assert card is not None and "Respond: met" in shown(card)


async def test_teams_a_card_answered_after_the_ticket_changed_is_brought_up_to_date(
    make_app: Any, connector: FakeConnector
) -> None:
    app = await start(make_app, connector)
    url = connector.service_url
    form = await say(app, connector, text="ticket new Printer jams")
    # The connector throttles the chat: the card (the form's answer) goes out after the raise.
    connector.throttle(PERSONAL, times=1, retry_after=6)
    data = {**submit_action(form)["fallback"]["data"], **form_values(priority="P3")}
    assert (await app.teams(activity(url, value=data))).status in (200, 201)
    await wait_until(lambda: connector.refusals, what="the refused card")

    # Raised from a channel meanwhile (a technician elsewhere, or Slack).
    raised = message(url, "ticket p1 HD-1", conversation=CHANNEL)
    assert (await app.teams(raised)).status in (200, 201)
    await wait_until(
        lambda: "HD-1 is now P1" in shown(connector.activities(CHANNEL)), what="the raise"
    )

    def card() -> str:
        posted = [a for a in connector.activities(PERSONAL) if "HD-1 (P" in shown(a)]
        updated = [u for u in connector.updates() if "HD-1 (P" in shown(u)]
        return shown((posted + updated)[-1]) if posted else ""

    await wait_until(lambda: card() != "", timeout=20, what="the card posted")
    await wait_until(lambda: "HD-1 (P1)" in card(), timeout=15, what="the card updated to P1")
    assert "HD-1 (P3)" not in card()


async def test_teams_the_card_of_a_ticket_whose_check_started_with_it_says_pending(
    make_app: Any, connector: FakeConnector
) -> None:
    """The card is drawn as the ticket is opened, before its identity check asks the manager
    (required, then pending in the same change): once in the chat it shows the check pending."""
    app = await identity_start(make_app, connector, categories=["printer"])
    await identity_ticket(app, connector)
    await wait_until(lambda: connector.created_conversations(), what="the manager's request")

    def card() -> str:
        posted = [a for a in connector.activities(PERSONAL) if "Locked out" in shown(a)]
        updated = [u for u in connector.updates() if "Locked out" in shown(u)]
        return shown((posted + updated)[-1]) if posted else ""

    await wait_until(lambda: '"value": "pending"' in card(), timeout=15, what="pending on the card")
