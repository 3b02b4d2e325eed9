"""A technician's call-back on the number on file confirms a check no manager can answer
(SPEC "Identity confirmation": "No manager on file: ... call back the number on file").

Over Slack and Teams HTTP: the **Called back: confirmed** button and `verify HD-7 called-back`
confirm a `no_manager` check only, only for a technician who is not the requester, only with a
number on file; everything else is refused, changes nothing, and is audited.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any
from urllib.parse import urlencode

import yaml
from sqlalchemy import select

from storage.models import IdentityCheck, Ticket, TicketEvent
from tests.fakes.botframework import FakeConnector
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, block_actions, event_kinds, wait_until
from tests.harness import slack_button as button
from tests.http.conftest_teams import (
    PERSONAL,
    TECH_ID,
    TENANT,
    activity,
    card_of,
    form_values,
    message,
    submit_action,
)
from tests.http.test_identity_gate import open_as
from tests.http.test_identity_slack import click, manager_dm, posts_to

CALLED_BACK = "Called back: confirmed"
CY_PHONE = "+1 555 0199"
PEOPLE: list[dict[str, Any]] = [
    {
        "email": "ana@example.com",
        "name": "Ana Lopez",
        "slack_id": "U0ANA",
        "teams_id": "29:1ana",
        "phone": "+1 555 0100",
        "manager": "bo@example.com",
    },
    {"email": "bo@example.com", "name": "Bo Boss", "slack_id": "U0BO", "teams_id": "29:1bo"},
    {
        "email": "tom@example.com",
        "name": "Tom Tech",
        "slack_id": "UTECH",
        "teams_id": TECH_ID,
        "technician": True,
    },
    # The CEO: nobody above him in the directory.
    {
        "email": "cy@example.com",
        "name": "Cy Solo",
        "slack_id": "U0CY",
        "teams_id": "29:1cy",
        "phone": CY_PHONE,
    },
    {"email": "dee@example.com", "name": "Dee Nophone", "slack_id": "U0DEE"},
    # A technician who is a requester too (no manager, a number on file).
    {
        "email": "tia@example.com",
        "name": "Tia Tech",
        "slack_id": "U0TIA",
        "technician": True,
        "phone": "+1 555 0111",
    },
    # Her manager on file is Tom, the technician: not independent.
    {
        "email": "eve@example.com",
        "name": "Eve Staff",
        "slack_id": "U0EVE",
        "phone": "+1 555 0122",
        "manager": "tom@example.com",
    },
]
CONFIG: dict[str, Any] = {"queues": {"security": {"slack": "C0SECURITY"}}}
FORM = "application/x-www-form-urlencoded"
RETRY = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
_n = itertools.count(1)


async def start(make_app: Any, fake: FakeSlack) -> AppHarness:
    app: AppHarness = await make_app(slack=fake, config=CONFIG, people=PEOPLE)
    return app


async def ticket(app: AppHarness, number: str = "HD-1") -> Ticket:
    async with app.services.sessions() as session:
        found = (await session.execute(select(Ticket).where(Ticket.number == number))).scalar_one()
    return found


async def events(app: AppHarness, kind: str) -> list[TicketEvent]:
    async with app.services.sessions() as session:
        query = select(TicketEvent).where(TicketEvent.kind == kind).order_by(TicketEvent.id)
        return list((await session.execute(query)).scalars().all())


async def refusals(app: AppHarness) -> list[tuple[str, str]]:
    """(who, reason) of each audited call-back refusal, oldest first."""
    return [(e.actor_id, e.data["reason"]) for e in await events(app, "identity.callback_refused")]


async def say(app: AppHarness, text: str, user: str = "UTECH") -> str:
    return json.dumps(await (await app.slash(text, user=user)).json())


def callback_notice(fake: FakeSlack, dm: str = "DUTECH") -> dict[str, Any]:
    """The latest call-back notice (the number on file, with its button): in the technician's
    direct message, never in the ticket's thread."""
    found = [p for p in posts_to(fake, dm) if CALLED_BACK in json.dumps(p.get("blocks"))]
    assert found, f"no call-back notice in {dm}"
    return found[-1]


def thread_said(fake: FakeSlack, channel: str = "C0HELP") -> str:
    return json.dumps(posts_to(fake, channel))


async def press(
    app: AppHarness, fake: FakeSlack, post: dict[str, Any], user: str, value: str | None = None
) -> str:
    """Press **Called back: confirmed** in `post` as `user`; the bot's (private) answer."""
    n = next(_n)
    payload = block_actions(
        button(post, CALLED_BACK),
        user=user,
        channel="C0HELP",
        n=n,
        response_url=fake.response_url_for(f"cb{n}"),
        message_ts=post.get("ts", "1.1"),
        value=value,
    )
    assert (await app.interactive(payload)).status == 200
    await fake.wait_for(f"/response/cb{n}")
    return json.dumps(fake.responses(f"cb{n}")[-1])


async def test_a_ceos_identity_is_confirmed_by_call_back_and_the_ticket_can_then_close(
    make_app, slack_api: FakeSlack
):
    # Cy (no manager) asks for a password reset: the check starts on its own and finds nobody
    # to ask; the ticket cannot be closed. Tom calls Cy back on the number on file and records
    # it with the notice's button: the identity is confirmed, said so on the card, in `show`
    # and in the audit trail, and the ticket can close.
    app = await start(make_app, slack_api)
    await open_as(app, slack_api, opener="UTECH", requester="U0CY", category="password-reset")
    await wait_until(lambda: any(CALLED_BACK in json.dumps(p) for p in slack_api.posts()))
    notice = callback_notice(slack_api)
    assert CY_PHONE in json.dumps(notice["blocks"])
    # The ticket's thread (a channel others read) is told where the number went, not it.
    sent = "The number on file in the directory was sent to Tom Tech (tom@example.com) privately"
    await wait_until(lambda: sent in thread_said(slack_api), what="the thread told")
    assert CY_PHONE not in thread_said(slack_api)
    assert "`/ticket verify HD-1 called-back`" in thread_said(slack_api)
    value = json.loads(button(notice, CALLED_BACK)["value"])
    assert list(value) == ["check"]  # only the check's nonce: never a ticket or a number
    opened = len(slack_api.views_opened())
    assert "identity confirmed first" in await say(app, "close HD-1")
    assert len(slack_api.views_opened()) == opened

    # Ana is no technician; a made-up value is no check.
    assert "Only technicians" in await press(app, slack_api, notice, "U0ANA")
    assert "not valid" in await press(app, slack_api, notice, "UTECH", value='{"check":"HD-1"}')
    assert (await ticket(app)).identity_state == "required"
    assert await refusals(app) == [("U0ANA", "not a technician"), ("UTECH", "unknown request")]

    answer = await press(app, slack_api, notice, "UTECH")
    assert "Identity confirmed for HD-1: confirmed by call-back to the number on file by" in answer
    assert (await ticket(app)).identity_state == "confirmed"
    async with app.services.sessions() as session:
        check = (await session.execute(select(IdentityCheck))).scalar_one()
    assert (check.state, check.answered_by, check.callback_phone) == (
        "called_back",
        "UTECH",
        CY_PHONE,
    )
    assert (check.answered_name, check.answered_email) == ("Tom Tech", "tom@example.com")
    assert check.answered_at is not None
    [confirmed] = await events(app, "identity.callback_confirmed")
    assert (confirmed.actor_id, confirmed.channel) == ("UTECH", "C0HELP")
    assert confirmed.data == {
        "check": check.id,
        "phone": CY_PHONE,
        "technician": "tom@example.com",
    }

    said = "confirmed by call-back to the number on file by <@UTECH> (tom@example.com) at "
    shown = await say(app, "show HD-1")
    assert f"*Identity:* {said}" in shown and CY_PHONE in shown
    card = (await ticket(app)).card_message
    await wait_until(
        lambda: any(
            u["ts"] == card and said in json.dumps(u["blocks"])
            for u in slack_api.method_calls("chat.update")
        ),
        what="the ticket card refreshed",
    )
    # The notice's button is gone; the thread is told.
    await wait_until(
        lambda: any(
            "Recorded: confirmed by call-back" in json.dumps(u["blocks"])
            and CALLED_BACK not in json.dumps(u["blocks"])
            for u in slack_api.method_calls("chat.update")
        ),
        what="the notice's button retired",
    )
    await wait_until(
        lambda: any("You may proceed" in json.dumps(p) for p in posts_to(slack_api, "C0HELP"))
    )
    assert CY_PHONE not in thread_said(slack_api)

    # Pressed again (a new delivery): nothing more is recorded.
    assert "already confirmed" in await press(app, slack_api, notice, "UTECH")
    assert len(await events(app, "identity.callback_confirmed")) == 1
    await app.slash("close HD-1")
    closure = await slack_api.wait_for_method("views.open", count=opened + 1)
    assert "Resolution note" in json.dumps(closure[-1]["view"])


async def test_the_command_form_and_its_slack_retry_record_once(make_app, slack_api: FakeSlack):
    app = await start(make_app, slack_api)
    await open_as(app, slack_api, opener="UTECH", requester="U0CY", category="printer")
    answer = await say(app, "verify HD-1")
    # `verify` without an argument is unchanged: it starts the check and tells the number,
    # now with the button under it.
    assert CY_PHONE in answer and CALLED_BACK in answer and "called-back" in answer
    assert (await ticket(app)).identity_state == "required"
    form = {
        "command": "/ticket",
        "text": "verify HD-1 called-back",
        "user_id": "UTECH",
        "user_name": "utech",
        "channel_id": "C0HELP",
        "team_id": "T0TEAM",
        "response_url": "http://127.0.0.1:9/unused",
        "trigger_id": f"trigger-{time.monotonic_ns()}",
    }
    body = urlencode(form)
    first = await app.slack(body, content_type=FORM)
    assert "confirmed by call-back to the number on file" in await first.text()
    retried = await app.slack(body, content_type=FORM, headers=RETRY)
    # Recorded once; the retry (its first response did not count) is answered the same.
    assert retried.status == 200 and await retried.text() == await first.text()
    assert (await ticket(app)).identity_state == "confirmed"
    assert len(await events(app, "identity.callback_confirmed")) == 1


async def test_a_manager_who_is_the_technician_leaves_the_call_back(make_app, slack_api: FakeSlack):
    # Eve's manager on file is Tom, the technician asking: he cannot approve his own work, so
    # the check is one no manager can answer; his call-back on Eve's number confirms it.
    app = await start(make_app, slack_api)
    await open_as(app, slack_api, opener="UTECH", requester="U0EVE", category="printer")
    answer = await say(app, "verify HD-1")
    assert "the manager on file is the technician asking" in answer and CALLED_BACK in answer
    assert "+1 555 0122" in await say(app, "verify HD-1 called-back")
    assert (await ticket(app)).identity_state == "confirmed"


async def test_a_call_back_is_refused_while_the_manager_is_asked_or_after_a_deny(
    make_app, slack_api: FakeSlack
):
    app = await start(make_app, slack_api)
    await open_as(app, slack_api, opener="UTECH", requester="U0ANA", category="printer")
    await say(app, "verify HD-1")
    dm = await manager_dm(slack_api)
    refused = await say(app, "verify HD-1 called-back")
    assert "manager is being asked" in refused and "Nothing was changed" in refused
    assert (await ticket(app)).identity_state == "pending"
    assert await refusals(app) == [("UTECH", "pending")]

    assert "stopped" in await click(app, slack_api, dm, "Deny", "U0BO")
    refused = await say(app, "verify HD-1 called-back")
    assert "possible impersonation" in refused
    assert (await ticket(app)).identity_state == "denied"
    [gate] = await events(app, "identity.gate_refused")
    assert (gate.actor_id, gate.data) == ("UTECH", {"action": "called-back", "identity": "denied"})
    assert not await events(app, "identity.callback_confirmed")


async def test_no_number_on_file_means_in_person_and_nothing_changes(
    make_app, slack_api: FakeSlack
):
    app = await start(make_app, slack_api)
    await open_as(app, slack_api, opener="UTECH", requester="U0DEE", category="printer")
    answer = await say(app, "verify HD-1")
    assert "no phone number on file" in answer and CALLED_BACK not in answer
    refused = await say(app, "verify HD-1 called-back")
    assert "confirm their identity in person" in refused and "Nothing was changed" in refused
    assert (await ticket(app)).identity_state == "required"
    assert await refusals(app) == [("UTECH", "no phone on file")]


async def test_only_a_technician_who_is_not_the_requester_may_record_it(
    make_app, slack_api: FakeSlack
):
    # Tia is a technician, and the requester: she cannot vouch for herself. Ana, who opened
    # the ticket, is no technician. Tom can.
    app = await start(make_app, slack_api)
    await open_as(app, slack_api, opener="U0ANA", requester="U0TIA", category="password-reset")

    async def no_manager() -> bool:
        return "identity.no_manager" in await event_kinds(app)

    await wait_until(no_manager, what="the check")
    assert "Only technicians" in await say(app, "verify HD-1 called-back", user="U0ANA")
    assert "You are the requester" in await say(app, "verify HD-1 called-back", user="U0TIA")
    assert (await ticket(app)).identity_state == "required"
    assert await refusals(app) == [("U0ANA", "not a technician"), ("U0TIA", "requester")]
    assert "confirmed by call-back" in await say(app, "verify HD-1 called-back")
    [confirmed] = await events(app, "identity.callback_confirmed")
    assert confirmed.actor_id == "UTECH"


async def test_a_stale_notice_or_a_changed_number_is_refused(make_app, slack_api: FakeSlack):
    app = await start(make_app, slack_api)
    await open_as(app, slack_api, opener="UTECH", requester="U0CY", category="password-reset")
    await wait_until(lambda: any(CALLED_BACK in json.dumps(p) for p in slack_api.posts()))
    stale = callback_notice(slack_api)
    await say(app, "verify HD-1")  # a fresh check: the first notice's button stops counting
    assert "replaced by a newer one" in await press(app, slack_api, stale, "UTECH")
    assert (await ticket(app)).identity_state == "required"

    # The directory now has another number for Cy than the one Tom was told to call.
    people = yaml.safe_load((app.tmp / "people.yaml").read_text())
    for person in people:
        if person["email"] == "cy@example.com":
            person["phone"] = "+1 555 0999"
    (app.tmp / "people.yaml").write_text(yaml.safe_dump(people))
    await asyncio.sleep(1.2)  # the file is looked at again after a second
    refused = await say(app, "verify HD-1 called-back")
    assert "has changed since you were told to call it" in refused
    assert (await ticket(app)).identity_state == "required"
    assert await refusals(app) == [("UTECH", "superseded"), ("UTECH", "phone changed")]
    assert "+1 555 0999" in await say(app, "verify HD-1")
    assert "confirmed by call-back" in await say(app, "verify HD-1 called-back")


# -- Teams -----------------------------------------------------------------------------------


async def test_teams_call_back_by_execute_and_redelivery_records_once(
    make_app, connector: FakeConnector
):
    config: dict[str, Any] = {"teams": {"service_url": connector.service_url, "tenant_id": TENANT}}
    app: AppHarness = await make_app(config=config, people=PEOPLE)
    form_posted = len(connector.activities(PERSONAL))
    await app.teams(message(connector.service_url, "ticket new Locked out"))
    await wait_until(lambda: len(connector.activities(PERSONAL)) > form_posted)
    form = card_of(connector.activities(PERSONAL)[-1])
    value = {
        **submit_action(form)["fallback"]["data"],
        **form_values(requester="cy@example.com", category="printer", summary="Locked out"),
    }
    assert (await app.teams(activity(connector.service_url, value=value))).status == 201
    posted = len(connector.activities(PERSONAL))
    await app.teams(message(connector.service_url, "ticket verify HD-1"))

    def notices() -> list[dict[str, Any]]:
        return [
            card_of(a)  # validated against the Adaptive Cards schema
            for a in connector.activities(PERSONAL)[posted:]
            if a.get("attachments") and CALLED_BACK in json.dumps(a["attachments"])
        ]

    await wait_until(lambda: notices(), what="the call-back notice")
    card = notices()[0]
    assert CY_PHONE in json.dumps(card)
    pressed = next(a for a in card["actions"] if a["title"] == CALLED_BACK)
    assert pressed["type"] == "Action.Execute" and set(pressed["data"]) == {"action", "check"}

    def invoke(user: str, activity_id: str) -> dict[str, Any]:
        return activity(
            connector.service_url,
            type="invoke",
            name="adaptiveCard/action",
            user=user,
            activity_id=activity_id,
            value={
                "action": {"type": "Action.Execute", "verb": pressed["verb"],
                           "data": pressed["data"]},
                "trigger": "manual",
            },
        )  # fmt: skip

    async def answer(body: dict[str, Any]) -> str:
        response = await app.teams(body)
        assert response.status == 200
        return json.dumps((await response.json())["value"])

    assert "Only technicians" in await answer(invoke("29:1ana", "act-ana"))
    assert (await ticket(app)).identity_state == "required"
    pressed_by_tom = invoke(TECH_ID, "act-tom")
    assert "confirmed by call-back to the number on file by Tom Tech" in await answer(
        pressed_by_tom
    )
    # The same activity again: answered as the first was (its answer was lost), nothing redone.
    assert "confirmed by call-back to the number on file by Tom Tech" in await answer(
        pressed_by_tom
    )
    assert (await ticket(app)).identity_state == "confirmed"
    assert len(await events(app, "identity.callback_confirmed")) == 1
    assert await refusals(app) == [("29:1ana", "not a technician")]
    # The ticket card shows how (refreshed in place), and the ticket can now close.
    await wait_until(
        lambda: any(
            "HD-1 (P" in json.dumps(u)
            and "confirmed by call-back to the number on file by Tom Tech" in json.dumps(u)
            for u in connector.updates()
        ),
        what="the ticket card refreshed",
    )
    before = len(connector.activities(PERSONAL))
    await app.teams(message(connector.service_url, "ticket close HD-1"))
    await wait_until(
        lambda: "Resolution note" in json.dumps(connector.activities(PERSONAL)[before:])
    )
