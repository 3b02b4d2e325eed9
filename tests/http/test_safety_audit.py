"""SPEC "Errors and safety", checked from outside (audit): what the rest of the suite left
unproven over HTTP.

- "Where the directory lists no technician at all, everyone counts as one and start-up logs a
  warning saying so": on Slack and on Teams.
- "Text a user typed is shown as typed: Slack mrkdwn control sequences in it (`<!channel>`,
  `<!here>`, `<@U…>`, links) are escaped so they never ping or link": in the P1 notice of the
  incident channel, and in `show` and `mine`.
- Teams surface: "The **Requester** input in Teams is an `Input.Text` that takes the person's
  e-mail address; the bot resolves it in the directory (and keeps the typed value when the
  person is not there)".
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from sqlalchemy import select

from storage.models import Ticket
from tests.fakes.botframework import FakeConnector
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, only_ticket, view_submission, wait_until
from tests.http.conftest_teams import (
    ANA_ID,
    PEOPLE,
    activity,
    card_of,
    form_values,
    message,
    submit_action,
)
from tests.http.p1_support import (
    INCIDENT_CHANNEL,
    SLACK_PEOPLE,
    slack_modal,
    slack_posts,
)

QUEUES = {"queues": {"networking": {"slack": "C0NETWORK", "teams": "19:net@thread.tacv2"}}}
WARNING = "the directory lists no technician: everyone counts as one"


def warned(caplog: Any) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and WARNING in r.getMessage()
    ]


def text(value: str) -> dict[str, Any]:
    return {"type": "plain_text_input", "value": value}


def choice(value: str) -> dict[str, Any]:
    return {"type": "static_select", "selected_option": {"value": value}}


async def slack_ticket(
    app: AppHarness, slack: FakeSlack, *, user: str, summary: str, priority: str, n: int
) -> None:
    view = await slack_modal(app, slack, "new")
    values = {
        "requester": {"type": "users_select", "selected_user": "UANA"},
        "summary": text(summary),
        "error_text": text("Error 809: the network connection could not be established"),
        "doing": text("Connecting in the morning"),
        "reproducible": choice("yes"),
        "users_affected": {"type": "number_input", "value": "40"},
        "priority": choice(priority),
        "category": choice("network"),
        "asset": text("VPN-01"),
        "client": text(""),
    }
    response = await app.interactive(view_submission(view, values, user=user, view_id=f"VA{n}"))
    assert response.status == 200
    body = await response.text()
    assert not body or "errors" not in body, body


async def slash_answer(app: AppHarness, text_: str, *, user: str, private: bool = True) -> str:
    response = await app.slash(text_, user=user)
    assert response.status == 200
    answer = await response.json()
    assert not private or answer.get("response_type") == "ephemeral", answer
    return json.dumps(answer)


async def test_slack_with_no_technician_listed_everyone_is_one_and_start_up_warns(
    make_app, slack_api: FakeSlack, caplog
):
    caplog.set_level(logging.WARNING)
    nobody = [{**p, "technician": False} for p in SLACK_PEOPLE]
    config = {"slack": {"incident_channel": INCIDENT_CHANNEL}, **QUEUES}
    app = await make_app(slack=slack_api, config=config, people=nobody)
    assert len(warned(caplog)) == 1, [r.getMessage() for r in caplog.records]

    # Bob (no technician flag; nobody has one) opens a ticket and works it to the end.
    await slack_ticket(app, slack_api, user="UBOB", summary="VPN down", priority="P2", n=1)
    await wait_until(lambda: slack_posts(slack_api, "C0HELP"), what="the ticket card")
    logged = await slash_answer(app, "time HD-1 45m swapped the token", user="UBOB")
    assert "Logged 45m" in logged and "Only technicians" not in logged
    raised = await slash_answer(app, "p1 HD-1", user="UBOB", private=False)
    assert "Only technicians" not in raised, raised
    await wait_until(
        lambda: slack_posts(slack_api, INCIDENT_CHANNEL), what="the P1 notice of Bob's raise"
    )
    for command in ("escalate HD-1", "close HD-1"):
        opened = len(slack_api.views_opened())
        response = await app.slash(command, user="UBOB")
        assert response.status == 200
        assert "Only technicians" not in await response.text()
        await slack_api.wait_for_method("views.open", count=opened + 1)


async def teams_say(
    app: AppHarness, connector: FakeConnector, body: dict[str, Any], chat: str
) -> list[dict[str, Any]]:
    before = len(connector.activities(chat))
    response = await app.teams(body)
    assert response.status in (200, 201), response.status
    await wait_until(lambda: len(connector.activities(chat)) > before, what="the bot's answer")
    return connector.activities(chat)[before:]


async def test_teams_with_no_technician_listed_everyone_is_one_and_start_up_warns(
    make_app, connector: FakeConnector, caplog
):
    caplog.set_level(logging.WARNING)
    nobody = [{**p, "technician": False} for p in PEOPLE]
    app = await make_app(config=QUEUES, people=nobody)
    assert len(warned(caplog)) == 1, [r.getMessage() for r in caplog.records]

    chat = "a:1personal-chat-with-ana"
    url = connector.service_url
    [form] = await teams_say(
        app,
        connector,
        message(url, "ticket new Printer jams", user=ANA_ID, conversation=chat),
        chat,
    )
    value = {**submit_action(card_of(form))["fallback"]["data"], **form_values()}
    await teams_say(
        app, connector, activity(url, value=value, user=ANA_ID, conversation=chat), chat
    )
    assert (await only_ticket(app)).number == "HD-1"
    for typed, expect in (
        ("ticket time HD-1 45m reseated the tray", "Logged 45m"),
        ("ticket p1 HD-1", "HD-1"),
        ("ticket escalate HD-1", "Reproduction steps"),
        ("ticket close HD-1", "Resolution note"),
    ):
        sent = message(url, typed, user=ANA_ID, conversation=chat)
        posted = await teams_say(app, connector, sent, chat)
        said = json.dumps(posted)
        shown = [(a.get("text"), a.get("attachments")) for a in posted]
        assert "Only technicians" not in said and expect in said, (typed, shown)
    assert (await only_ticket(app)).priority == "P1"


EVIL = "VPN down <!here> ask <@UBOB> or <!channel> see <https://evil.example|reset password>"


async def test_typed_pings_and_links_stay_inert_in_the_p1_notice_show_and_mine(
    make_app, slack_api: FakeSlack
):
    config = {"slack": {"incident_channel": INCIDENT_CHANNEL}}
    app = await make_app(slack=slack_api, config=config, people=SLACK_PEOPLE)
    started = time.monotonic()
    await slack_ticket(app, slack_api, user="UTECH", summary=EVIL, priority="P1", n=2)
    await wait_until(lambda: slack_posts(slack_api, INCIDENT_CHANNEL), what="the P1 notice")
    # Side effects are first attempted within about a second of the change.
    assert time.monotonic() - started < 2.0
    assert (await only_ticket(app)).summary == EVIL  # stored as typed
    shown = [
        json.dumps(slack_posts(slack_api, INCIDENT_CHANNEL)),
        json.dumps(slack_posts(slack_api, "C0HELP")),
        await slash_answer(app, "show HD-1", user="UTECH"),
        await slash_answer(app, "mine", user="UTECH"),
    ]
    for where, raw in zip(("notice", "card", "show", "mine"), shown, strict=True):
        for control in ("<!here>", "<!channel>", "<@UBOB>", "<https://evil"):
            assert control not in raw, (where, control, raw)
        assert "evil.example" in raw, (where, raw)  # shown, not dropped


async def test_teams_requester_not_in_the_directory_keeps_the_typed_address(
    make_app, connector: FakeConnector
):
    """Teams surface: the Requester `Input.Text` takes an e-mail address, resolved in the
    directory; someone not there keeps the value typed (the ticket opens, for that address)."""
    app = await make_app(config={}, people=PEOPLE)
    url = connector.service_url
    chat = "a:1personal-chat-with-tech"
    [form] = await teams_say(app, connector, message(url, "ticket new Printer jams"), chat)
    card = card_of(form)
    requester = next(e for e in card["body"] if e.get("id") == "requester")
    assert (requester["type"], requester["label"]) == ("Input.Text", "Requester")
    typed = "Guest.Visitor@partner.example"
    value = {**submit_action(card)["fallback"]["data"], **form_values(requester=typed)}
    answer = json.dumps(await teams_say(app, connector, activity(url, value=value), chat))
    ticket = await only_ticket(app)
    assert ticket.number == "HD-1"
    assert (ticket.requester_id, ticket.requester_email) == (typed, typed)
    assert typed in answer or typed.lower() in answer, answer
    # Someone who is there is resolved to their Teams id.
    [form] = await teams_say(app, connector, message(url, "ticket new Printer jams"), chat)
    value = {**submit_action(card_of(form))["fallback"]["data"], **form_values()}
    await teams_say(app, connector, activity(url, value=value), chat)
    async with app.services.sessions() as session:
        second = (await session.execute(select(Ticket).where(Ticket.number == "HD-2"))).scalar_one()
    assert (second.requester_id, second.requester_email) == (ANA_ID, "ana@example.com")


# "Side effects (DMs, notices, pages, surveys) are first attempted within about a second of
# the change that causes them, unless a configured delay says otherwise."
SOON = 1.5  # about a second, with the loopback's and the CI machine's slack


async def test_slack_manager_dm_and_survey_are_first_attempted_within_about_a_second(
    make_app, slack_api: FakeSlack
):
    from tests.http import test_closure_slack as closure
    from tests.http import test_identity_slack as identity

    config = {**identity.CONFIG, "csat": {"delay": "0s"}}
    app = await make_app(slack=slack_api, config=config, people=identity.PEOPLE)
    await identity.new_ticket(app, slack_api)
    asked = time.monotonic()
    assert (await app.slash("verify HD-1")).status == 200
    [opened] = await slack_api.wait_for_method("conversations.open")
    first = slack_api.calls("/api/conversations.open")[0].at
    assert opened["users"] == "U0BO" and first - asked < SOON, first - asked
    request = await identity.manager_dm(slack_api)
    assert "HD-1" in await identity.click(app, slack_api, request, "Approve", "U0BO")
    await closure.submit_close(app, slack_api, "HD-1")
    closed = time.monotonic()
    await wait_until(lambda: identity.posts_to(slack_api, "DU0ANA"), what="the survey DM")
    assert time.monotonic() - closed < SOON, time.monotonic() - closed


async def test_teams_manager_request_is_first_attempted_within_about_a_second(
    make_app, connector: FakeConnector
):
    from tests.http import test_identity_teams as identity

    app = await identity.start(make_app, connector)
    await identity.new_ticket(app, connector)
    await wait_until(lambda: connector.activities(identity.PERSONAL), what="the ticket card")
    before = len(connector.calls())
    asked = time.monotonic()
    assert (await app.teams(message(connector.service_url, "ticket verify HD-1"))).status == 201
    _, card = await identity.manager_request(connector)
    assert "HD-1" in json.dumps(card)
    [created] = [
        c
        for c in connector.calls()[before:]
        if c.method == "POST" and c.path == "/v3/conversations"
    ]
    assert created.at - asked < SOON, created.at - asked
