"""Teams end to end over HTTP (Emulator mode): messages, Action.Submit, Action.Execute."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from storage.models import ConversationRef, Ticket
from tests import FIXTURES
from tests.adaptive_schema import validate_adaptive_card
from tests.fakes.botframework import FakeConnector
from tests.harness import INTAKE_LABELS, AppHarness, only_ticket
from tests.http.conftest_teams import (
    ANA_ID,
    BOT_ID,
    CARD_TYPE,
    CHANNEL,
    CONFIG,
    PEOPLE,
    PERSONAL,
    TECH_ID,
    TENANT,
    activity,
    card_of,
    form_values,
    inputs,
    message,
    submit_action,
)

REFERENCE = FIXTURES / "teams"


def unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


async def start(make_app: Any, **kwargs: Any) -> AppHarness:
    app: AppHarness = await make_app(config=CONFIG, people=PEOPLE, **kwargs)
    return app


async def open_form(
    app: AppHarness, fake: FakeConnector, text: str = "ticket new Printer jams"
) -> dict[str, Any]:
    before = len(fake.activities())
    response = await app.teams(message(fake.service_url, text))
    assert response.status == 201
    await fake.wait_for(lambda r: r.method == "POST", count=before + 1)
    return card_of(fake.activities()[-1])


async def count_tickets(app: AppHarness) -> int:
    async with app.services.sessions() as session:
        return (await session.execute(select(func.count()).select_from(Ticket))).scalar_one()


def assert_stored_verbatim(ticket: Ticket) -> None:
    values = form_values()
    assert ticket.number == "HD-1"
    assert ticket.summary == values["summary"]
    assert ticket.error_text == values["error_text"]
    assert ticket.doing == values["doing"]
    assert (ticket.reproducible, ticket.users_affected, ticket.priority) == (
        "intermittent",
        1,
        "P2",
    )
    assert (ticket.category, ticket.asset, ticket.client) == ("printer", "PRN-0042", "Acme")
    assert (ticket.requester_id, ticket.requester_email) == (ANA_ID, "ana@example.com")
    assert ticket.technician_id == TECH_ID
    assert (ticket.source_platform, ticket.source_channel) == ("teams", PERSONAL)
    assert ticket.tier == "gold"
    assert ticket.respond_by - ticket.created_at == timedelta(hours=1)
    assert ticket.resolve_by - ticket.created_at == timedelta(hours=8)


def assert_ticket_card(card: dict[str, Any], ticket: Ticket) -> None:
    validate_adaptive_card(card)
    # TextBlock and FactSet text is Markdown-escaped by the renderer.
    facts = {
        unescape(f["title"]): unescape(f["value"])
        for e in card["body"]
        if e["type"] == "FactSet"
        for f in e["facts"]
    }
    assert facts["Ticket"] == "HD-1"
    assert facts["Priority"] == "P2"
    assert ticket.respond_by.strftime("%Y-%m-%d %H:%M") in facts["Respond by"]
    assert ticket.resolve_by.strftime("%Y-%m-%d %H:%M") in facts["Resolve by"]
    titles = [a["title"] for a in card["actions"]]
    assert titles == ["Verify identity", "Escalate", "Close"]


async def test_ticket_new_replies_with_intake_card(make_app, connector: FakeConnector):
    app = await start(make_app)
    card = await open_form(app, connector)
    assert [i["label"] for i in inputs(card)] == INTAKE_LABELS
    summary = next(i for i in inputs(card) if i["id"] == "summary")
    assert summary["value"] == "Printer jams"
    requester = next(i for i in inputs(card) if i["id"] == "requester")
    assert (requester["type"], requester["style"]) == ("Input.Text", "Email")
    action = submit_action(card)
    assert action["type"] == "Action.Execute" and action["verb"] == "ticket.create"
    assert action["fallback"]["type"] == "Action.Submit"
    assert action["data"] == {"action": "ticket.create", "channel": PERSONAL}
    [posted] = connector.activities()
    assert posted["_conversation_id"] == PERSONAL
    assert posted["_authorization"] is None  # Emulator mode: no outbound token


async def test_action_submit_stores_ticket_and_replies_with_card(
    make_app, connector: FakeConnector
):
    app = await start(make_app)
    card = await open_form(app, connector)
    value = {**submit_action(card)["fallback"]["data"], **form_values()}
    response = await app.teams(activity(connector.service_url, value=value))
    assert response.status == 201
    ticket = await only_ticket(app)
    assert_stored_verbatim(ticket)
    await connector.wait_for(lambda r: r.method == "POST", count=2)
    reply = connector.activities()[-1]
    assert reply["_conversation_id"] == PERSONAL
    assert_ticket_card(card_of(reply), ticket)
    # The card went out in the turn: its message is the ticket's thread, as a queued card's is.
    ticket = await only_ticket(app)
    assert (ticket.source_channel, ticket.source_thread) == (PERSONAL, reply["_id"])


async def test_action_execute_answers_with_ticket_card(make_app, connector: FakeConnector):
    app = await start(make_app)
    card = await open_form(app, connector)
    action = submit_action(card)
    invoke = activity(
        connector.service_url,
        type="invoke",
        name="adaptiveCard/action",
        value={
            "action": {
                "type": "Action.Execute",
                "verb": action["verb"],
                "data": {**action["data"], **form_values()},
            },
            "trigger": "manual",
        },
        replyToId=connector.activities()[0]["_id"],  # Teams: the clicked card's message
    )
    response = await app.teams(invoke)
    assert response.status == 200
    body = await response.json()
    assert (body["statusCode"], body["type"]) == (200, CARD_TYPE)
    ticket = await only_ticket(app)
    assert_stored_verbatim(ticket)
    assert_ticket_card(body["value"], ticket)
    await asyncio.sleep(0.1)
    assert len(connector.activities()) == 1  # the card is replaced through the invoke response
    # ... so the clicked card's message (the invoke's replyToId) is now the ticket's thread.
    ticket = await only_ticket(app)
    assert ticket.source_thread == invoke["replyToId"]


async def test_action_execute_field_errors_resend_the_form(make_app, connector: FakeConnector):
    app = await start(make_app)
    card = await open_form(app, connector)
    action = submit_action(card)
    data = {**action["data"], **form_values(requester="not an email", users_affected="")}
    invoke = activity(
        connector.service_url,
        type="invoke",
        name="adaptiveCard/action",
        value={"action": {"type": "Action.Execute", "verb": action["verb"], "data": data}},
    )
    response = await app.teams(invoke)
    assert response.status == 200
    body = await response.json()
    assert (body["statusCode"], body["type"]) == (200, CARD_TYPE)
    form = body["value"]
    validate_adaptive_card(form)
    assert [i["label"] for i in inputs(form)] == INTAKE_LABELS
    assert form["body"][1]["text"].startswith("Please fix")
    assert next(i for i in inputs(form) if i["id"] == "requester")["value"] == "not an email"
    assert submit_action(form)["data"] == {"action": "ticket.create", "channel": PERSONAL}
    assert await count_tickets(app) == 0


async def test_repeated_activity_id_makes_one_ticket(make_app, connector: FakeConnector):
    app = await start(make_app)
    card = await open_form(app, connector)
    submit = activity(
        connector.service_url, value={**submit_action(card)["fallback"]["data"], **form_values()}
    )
    first = await app.teams(submit)
    again = await app.teams(submit)
    assert (first.status, again.status) == (201, 201)
    assert await count_tickets(app) == 1
    invoke = activity(
        connector.service_url,
        type="invoke",
        name="adaptiveCard/action",
        value={
            "action": {
                "type": "Action.Execute",
                "verb": "ticket.create",
                "data": {"channel": PERSONAL, **form_values()},
            }
        },
    )
    replies = [await app.teams(invoke), await app.teams(invoke)]
    bodies = [await r.json() for r in replies]
    # The same invoke again (its response was lost): answered as the first was, no ticket more.
    assert bodies[1] == bodies[0] and bodies[0]["type"] == "application/vnd.microsoft.card.adaptive"
    assert await count_tickets(app) == 2
    await asyncio.sleep(0.1)
    assert len(connector.activities()) == 2  # the form, then one ticket card


async def test_ticket_show_and_mine(make_app, connector: FakeConnector):
    app = await start(make_app)
    card = await open_form(app, connector)
    await app.teams(
        activity(
            connector.service_url,
            value={**submit_action(card)["fallback"]["data"], **form_values()},
        )
    )
    ticket = await only_ticket(app)

    await app.teams(message(connector.service_url, "ticket show hd-1"))
    await connector.wait_for(lambda r: r.method == "POST", count=3)
    assert_ticket_card(card_of(connector.activities()[-1]), ticket)

    await app.teams(message(connector.service_url, "ticket mine"))
    await connector.wait_for(lambda r: r.method == "POST", count=4)
    mine = connector.activities()[-1]
    # One Markdown paragraph per line: Teams runs single line breaks together.
    assert mine["textFormat"] == "markdown"
    heading, line = mine["text"].split("\n\n")
    assert heading == "Your open tickets (1):"
    assert line.startswith("HD-1 (P2) Printer jams  on floor 3  - resolve by ")


async def test_mention_is_stripped_and_private_reply_goes_to_personal_chat(
    make_app, connector: FakeConnector
):
    app = await start(make_app)
    text = "<at>Helpdesk</at> ticket help"
    response = await app.teams(message(connector.service_url, text, conversation=CHANNEL))
    assert response.status == 201
    await connector.wait_for(lambda r: r.method == "POST", count=2)
    [created] = connector.created_conversations()
    assert created["isGroup"] is False
    assert created["members"][0]["id"] == TECH_ID
    assert created["bot"]["id"] == BOT_ID
    assert created["tenantID"] == created["channelData"]["tenant"]["id"] == TENANT
    [usage] = connector.activities()
    assert usage["_conversation_id"] == created["_id"]
    facts = {f["title"]: f["value"] for f in card_of(usage)["body"][1]["facts"]}
    assert facts["ticket show HD-7"] == "show a ticket", facts
    async with app.services.sessions() as session:
        keys = set((await session.execute(select(ConversationRef.key))).scalars())
    assert keys == {CHANNEL, f"user:{TECH_ID}"}


async def test_other_text_gets_a_hint_and_help_stays_in_a_failed_personal_chat(
    make_app, connector: FakeConnector
):
    app = await start(make_app)
    await app.teams(message(connector.service_url, "hello there"))
    await connector.wait_for(lambda r: r.method == "POST")
    assert "ticket" in connector.activities()[0]["text"]
    connector.fail("/v3/conversations", 403)
    await app.teams(message(connector.service_url, "ticket mine", conversation=CHANNEL))
    await connector.wait_for(
        lambda r: r.method == "POST" and r.path != "/v3/conversations", count=2
    )
    assert connector.activities()[-1]["_conversation_id"] == CHANNEL


async def test_bot_added_stores_reference_and_welcomes(make_app, connector: FakeConnector):
    app = await start(make_app)
    update = activity(
        connector.service_url,
        type="conversationUpdate",
        conversation=CHANNEL,
        membersAdded=[{"id": BOT_ID}],
    )
    response = await app.teams(update)
    assert response.status == 201
    await connector.wait_for(lambda r: r.method == "POST")
    [welcome] = connector.activities()
    assert welcome["_conversation_id"] == CHANNEL and welcome["_reply_to_id"] is None
    card = card_of(welcome)
    assert card["body"][0]["text"] == "Hi, I am the help-desk bot"
    assert card["body"][1]["text"] == "Start a message with `ticket`:"
    titles = [f["title"] for f in card["body"][2]["facts"]]
    assert titles == ["ticket new [summary]", "ticket show HD-7", "ticket mine", "ticket help"]
    assert welcome["summary"].startswith("Hi, I am the help-desk bot")
    async with app.services.sessions() as session:
        [row] = (await session.execute(select(ConversationRef))).scalars()
    assert (row.platform, row.key) == ("teams", CHANNEL)
    assert row.reference["serviceUrl"] == connector.service_url
    assert row.reference["bot"]["id"] == BOT_ID
    assert "activityId" not in row.reference


async def test_malformed_requests_get_4xx_and_server_keeps_serving(
    make_app, connector: FakeConnector
):
    app = await start(make_app)
    assert app.http is not None
    url = f"{app.url}/api/messages"
    cases = [
        (b"{not json", {"Content-Type": "application/json"}, 400),
        (b"[1, 2]", {"Content-Type": "application/json"}, 400),
        (b'{"text": "no type"}', {"Content-Type": "application/json"}, 400),
        (b'{"type": "message"}', {"Content-Type": "application/json"}, 400),
        (b'{"type": "message"}', {"Content-Type": "text/plain"}, 415),
        (b'{"type": "message"}', {}, 415),
    ]
    for body, headers, status in cases:
        async with app.http.post(url, data=body, headers=headers) as response:
            assert response.status == status, body
    await open_form(app, connector)


@pytest.mark.parametrize("authenticated", [False, True], ids=["emulator", "app-id-set"])
async def test_a_deeply_nested_body_is_a_400_with_one_log_line(
    make_app, connector: FakeConnector, caplog: pytest.LogCaptureFixture, authenticated: bool
):
    # 400 kB, under the size limit; json.loads raises RecursionError on it. With an app id set
    # and a Bearer token the body is read (and refused) before the token is checked (which
    # needs the activity's serviceUrl); without a token it is not read at all (test_teams_auth).
    env = {"MicrosoftAppId": "0000-1111", "MicrosoftAppPassword": "pw"} if authenticated else {}
    app = await start(make_app, env=env)
    assert app.http is not None
    caplog.clear()
    body = b"[" * 200_000 + b"]" * 200_000
    headers = {"Content-Type": "application/json"}
    if authenticated:
        headers["Authorization"] = "Bearer not.checked.yet"
    async with app.http.post(f"{app.url}/api/messages", data=body, headers=headers) as response:
        assert response.status == 400
    lines = [r for r in caplog.records if r.name.startswith(("bot", "aiohttp"))]
    assert [r.levelname for r in lines if r.levelno >= logging.WARNING] == ["WARNING"]
    assert all(r.exc_info is None for r in lines)
    async with app.http.get(f"{app.url}/healthz") as health:
        assert health.status == 200
    if not authenticated:
        await open_form(app, connector)


async def test_emulator_mode_refuses_when_host_is_not_loopback(make_app, connector: FakeConnector):
    app = await make_app(env={"HOST": "0.0.0.0"})
    response = await app.teams(message(connector.service_url, "ticket new"))
    assert response.status == 403
    await asyncio.sleep(0.05)
    assert connector.recorded == []


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-For": "203.0.113.9"},
        {"X-Forwarded-For": "127.0.0.1, 203.0.113.9"},
        {"Forwarded": "for=203.0.113.9;proto=https"},
        {"X-Real-IP": "203.0.113.9"},
        {"X-Forwarded-For": "127.0.0.1"},  # any proxy header: the client behind it is unknown
    ],
    ids=["xff", "xff-chain", "forwarded", "x-real-ip", "xff-loopback"],
)
async def test_proxied_requests_are_refused_in_emulator_mode(
    make_app, connector: FakeConnector, caplog: pytest.LogCaptureFixture, headers: dict[str, str]
):
    app = await start(make_app)
    caplog.clear()
    response = await app.teams(message(connector.service_url, "ticket mine"), headers=headers)
    assert response.status == 403
    refusals = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(refusals) == 1 and "403" in refusals[0].getMessage()
    await asyncio.sleep(0.05)
    assert connector.recorded == []
    # The same activity straight from a loopback client is still served.
    served = await app.teams(message(connector.service_url, "ticket mine"))
    assert served.status == 201


async def test_unknown_actions_get_friendly_answers_and_other_invokes_400(
    make_app, connector: FakeConnector
):
    app = await start(make_app)
    submit = await app.teams(activity(connector.service_url, value={"action": "ticket.nope"}))
    assert submit.status == 201
    await connector.wait_for(lambda r: r.method == "POST")
    assert "not available" in connector.activities()[0]["text"]

    execute = activity(
        connector.service_url,
        type="invoke",
        name="adaptiveCard/action",
        value={"action": {"type": "Action.Execute", "verb": "nope", "data": {}}},
    )
    response = await app.teams(execute)
    assert response.status == 200
    body = await response.json()
    assert body["type"] == "application/vnd.microsoft.activity.message"
    assert "not available" in body["value"]

    other = activity(connector.service_url, type="invoke", name="composeExtension/query", value={})
    assert (await app.teams(other)).status == 400  # not offered: a 4xx, never a 5xx
    assert len(connector.activities()) == 1


@pytest.mark.parametrize(
    ("fixture", "status"),
    [
        ("message.json", 201),
        ("message_action_submit.json", 201),
        ("invoke_adaptive_card_action.json", 200),
        ("conversation_update_bot_added.json", 201),
        ("conversation_update_bot_added_personal.json", 201),
    ],
)
async def test_reference_payloads_are_answered(
    make_app, connector: FakeConnector, fixture: str, status: int
):
    app = await start(make_app)
    body = json.loads((REFERENCE / fixture).read_text(encoding="utf-8"))
    body["serviceUrl"] = connector.service_url
    response = await app.teams(body)
    assert response.status == status
    if status == 200:
        invoke = await response.json()
        assert invoke["statusCode"] == 200
        if invoke["type"] == CARD_TYPE:
            validate_adaptive_card(invoke["value"])
    await asyncio.sleep(0.1)
    for posted in connector.activities():
        if posted.get("attachments"):
            card_of(posted)
        else:
            assert posted["text"]


async def test_forged_channel_in_submit_data_is_ignored(make_app, connector: FakeConnector):
    """Teams clients can send any `value`: the ticket belongs to the conversation it came from."""
    app = await start(make_app)
    card = await open_form(app, connector)
    value = {
        **submit_action(card)["fallback"]["data"],
        **form_values(),
        "channel": "19:someone-elses@thread.tacv2",
        "thread": "1700000000000",
    }
    response = await app.teams(activity(connector.service_url, value=value))
    assert response.status == 201
    ticket = await only_ticket(app)
    assert ticket.source_channel == PERSONAL
    assert ticket.source_thread == connector.activities()[-1]["_id"]  # the bot's own reply


async def test_a_person_mentioned_in_the_summary_is_prefilled_by_name_not_as_markup(
    make_app, connector: FakeConnector
):
    """Teams writes every @mention into the text as `<at>Name</at>`: the bot's own (leading)
    one is dropped, and one in the summary is prefilled as the name it shows."""
    app = await start(make_app)
    text = "<at>Helpdesk</at> ticket new Outlook crashes for <at>Ana Lopez</at> since 9:00"
    response = await app.teams(message(connector.service_url, text, conversation=CHANNEL))
    assert response.status == 201
    await connector.wait_for(lambda r: r.method == "POST", count=1)
    form = card_of(connector.activities()[-1])
    summary = next(i for i in inputs(form) if i["id"] == "summary")
    assert summary["value"] == "Outlook crashes for Ana Lopez since 9:00"


async def test_a_requester_address_too_long_to_be_one_is_refused_under_its_field(
    make_app, connector: FakeConnector
):
    """An e-mail address has at most 254 characters (RFC 5321). A longer Requester (a paste
    gone wrong, an outside suite's huge value) passed the e-mail check, nobody in the
    directory had it, and it was kept as typed: SQLite stored it, PostgreSQL refused the
    255-character column and the technician read 'Something went wrong'. Now the form comes
    back with the reason under Requester, on both databases, and nothing is stored."""
    app = await start(make_app)
    card = await open_form(app, connector)
    action = submit_action(card)
    typed = "a" * 300 + "@example.com"
    data = {**action["data"], **form_values(requester=typed)}
    invoke = activity(
        connector.service_url,
        type="invoke",
        name="adaptiveCard/action",
        value={"action": {"type": "Action.Execute", "verb": action["verb"], "data": data}},
    )
    response = await app.teams(invoke)
    assert response.status == 200
    body = await response.json()
    assert (body["statusCode"], body["type"]) == (200, CARD_TYPE), body
    form = body["value"]
    validate_adaptive_card(form)
    said = json.dumps(form)
    assert "254 characters" in said and "Something went wrong" not in said, said
    assert next(i for i in inputs(form) if i["id"] == "requester")["value"] == typed
    assert await count_tickets(app) == 0


async def test_users_affected_typed_in_full_width_digits_is_that_number(
    make_app, connector: FakeConnector
):
    """An East Asian input method types full-width digits (U+FF11 U+FF12 for 12): Users
    affected came back 'Enter a whole number of users, 1 or more.' for a whole number. They
    are read as the digits they are (as a full-width Requester address is folded), the
    ticket keeps 12 and its card says the matrix calls it P1."""
    app = await start(make_app)
    card = await open_form(app, connector)
    value = {
        **submit_action(card)["fallback"]["data"],
        **form_values(users_affected="\uff11\uff12"),
    }
    response = await app.teams(activity(connector.service_url, value=value))
    assert response.status == 201
    ticket = await only_ticket(app)
    assert (ticket.users_affected, ticket.priority) == (12, "P2")
    await connector.wait_for(lambda r: r.method == "POST", count=2)
    shown = card_of(connector.activities()[-1])
    validate_adaptive_card(shown)
    assert "12 users are affected" in json.dumps(shown)


async def test_one_intake_card_submitted_twice_makes_one_ticket(make_app, connector: FakeConnector):
    """A card stays in the chat after Action.Submit (and until the invoke's answer replaces
    it after Action.Execute): a second click on Create, with the same values, came as a new
    activity id and opened a second ticket (at P1 a second notice and page). As a Slack
    modal's submission is one delivery (its view and values), so is a Teams card's (its
    message, who submitted it, its values): the repeat is answered as already done. A
    corrected resubmission of a refused card, or other values on it, is a new delivery."""
    app = await start(make_app)
    card = await open_form(app, connector)
    card_message = connector.activities()[-1]["_id"]
    fallback = submit_action(card)["fallback"]["data"]

    def submit(**overrides: Any) -> dict[str, Any]:
        value = {**fallback, **form_values(**overrides)}
        return activity(connector.service_url, value=value, replyToId=card_message)

    def execute(**overrides: Any) -> dict[str, Any]:
        data = {**submit_action(card)["data"], **form_values(**overrides)}
        value = {"action": {"type": "Action.Execute", "verb": "ticket.create", "data": data}}
        return activity(
            connector.service_url,
            type="invoke",
            name="adaptiveCard/action",
            value=value,
            replyToId=card_message,
        )

    # Refused first (no requester), then corrected on the same card: a ticket.
    assert (await app.teams(submit(requester=""))).status == 201
    assert await count_tickets(app) == 0
    assert (await app.teams(submit())).status == 201
    await connector.wait_for(lambda r: r.method == "POST", count=3)
    assert await count_tickets(app) == 1
    # Clicked again: by Action.Submit and by Action.Execute, nothing more.
    assert (await app.teams(submit())).status == 201
    answer = await app.teams(execute())
    # Action.Execute replaces the card clicked: with the ticket's card its submission made.
    shown = await answer.json()
    assert shown["type"] == "application/vnd.microsoft.card.adaptive"
    assert "HD-1" in json.dumps(shown["value"])
    await asyncio.sleep(0.2)
    assert await count_tickets(app) == 1
    assert len(connector.activities()) == 3  # the form, the refusal, one ticket card
    # Other values on the same card are another ticket.
    answer = await app.teams(execute(summary="Scanner jams too"))
    assert (await answer.json())["type"] == CARD_TYPE
    assert await count_tickets(app) == 2
