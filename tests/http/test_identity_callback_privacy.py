"""The requester's number on file reaches only the technician who asked for the check
(SPEC "Identity confirmation": "No manager on file: the technician is told to call back the
number on file").

Ticket threads are often in shared channels (#helpdesk, a Teams channel) that other staff and
sometimes requesters read: the number goes to the technician in a direct message (through the
outbox, retried), the thread is told only that it was sent to them privately and how to record
the call-back. Over Slack and Teams HTTP, on both databases.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sqlalchemy import select

from storage.models import TicketEvent
from tests.fakes.botframework import FakeConnector
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, wait_until
from tests.http.conftest_teams import (
    CHANNEL,
    TECH_ID,
    TENANT,
    activity,
    card_of,
    form_values,
    message,
    submit_action,
)
from tests.http.test_identity_callback import (
    CALLED_BACK,
    CY_PHONE,
    PEOPLE,
    callback_notice,
    events,
    press,
    say,
    start,
    thread_said,
    ticket,
)
from tests.http.test_identity_gate import open_as
from tests.http.test_identity_slack import posts_to

SENT_TO_TOM = "The number on file in the directory was sent to Tom Tech (tom@example.com) privately"
SENT_TO_TIA = "The number on file in the directory was sent to Tia Tech (tia@example.com) privately"


def leaked(fake: FakeSlack, *private: str) -> list[dict[str, Any]]:
    """Posts that name Cy's number anywhere but the technicians' direct messages."""
    return [
        p for p in fake.posts() if p.get("channel") not in private and CY_PHONE in json.dumps(p)
    ]


async def test_slack_the_number_goes_to_the_asking_technician_not_the_shared_channel(
    make_app, slack_api: FakeSlack
):
    # Tom opens a password reset for Cy (no manager) in #helpdesk: the check starts on its own.
    # Cy's number reaches Tom in a direct message with the button; the channel is told only
    # that it went to him privately, and how to record the call-back.
    app = await start(make_app, slack_api)
    await open_as(app, slack_api, opener="UTECH", requester="U0CY", category="password-reset")
    await wait_until(lambda: SENT_TO_TOM in thread_said(slack_api), what="the thread told")
    told = thread_said(slack_api)
    assert "there is no manager on file for Cy Solo (cy@example.com)" in told
    assert "Called back: confirmed (or `/ticket verify HD-1 called-back`)" in told
    toms = callback_notice(slack_api, "DUTECH")
    assert CY_PHONE in json.dumps(toms["blocks"]) and "never a number the caller" in json.dumps(
        toms["blocks"]
    )
    assert slack_api.method_calls("conversations.open")[-1]["users"] == "UTECH"

    # Tia, another technician, asks again: the number goes to her, who asked; the thread
    # names her. Tom's notice no longer counts.
    answer = await say(app, "verify HD-1", user="U0TIA")
    assert CY_PHONE in answer  # her own answer (ephemeral) names it too
    await wait_until(lambda: SENT_TO_TIA in thread_said(slack_api), what="the thread told")
    await wait_until(lambda: posts_to(slack_api, "DU0TIA"), what="Tia's direct message")
    tias = callback_notice(slack_api, "DU0TIA")
    assert CY_PHONE in json.dumps(tias["blocks"])
    assert "replaced by a newer one" in await press(app, slack_api, toms, "UTECH")

    # `show` answers only the one who asks (ephemeral), and names the number to call.
    response = await (await app.slash("show HD-1", user="UTECH")).json()
    assert response["response_type"] == "ephemeral"
    assert f"no manager: call back {CY_PHONE}, the number on file" in json.dumps(response)

    assert "confirmed by call-back" in await press(app, slack_api, tias, "U0TIA")
    assert (await ticket(app)).identity_state == "confirmed"
    await wait_until(lambda: "You may proceed" in thread_said(slack_api), what="the thread")
    # Her notice's button is retired in her direct message.
    await wait_until(
        lambda: any(
            u["channel"] == "DU0TIA" and "Recorded: confirmed by call-back" in json.dumps(u)
            for u in slack_api.method_calls("chat.update")
        ),
        what="the notice's button retired",
    )
    assert not leaked(slack_api, "DUTECH", "DU0TIA")
    updates = [u for u in slack_api.method_calls("chat.update") if u["channel"] == "C0HELP"]
    assert CY_PHONE not in json.dumps(updates)


async def test_slack_a_number_that_cannot_be_sent_privately_is_not_posted_instead(
    make_app, slack_api: FakeSlack
):
    # Tom's direct message cannot be opened (refused for good): the thread is told, still
    # without the number, and where Tom finds it only for himself (`show`).
    app = await start(make_app, slack_api)
    slack_api.fail_ok_false("conversations.open", "user_not_found")
    await open_as(app, slack_api, opener="UTECH", requester="U0CY", category="password-reset")
    failed = "could not be delivered to Tom Tech (tom@example.com) and will not be retried"
    await wait_until(lambda: failed in thread_said(slack_api), what="the thread told")
    assert "Run `/ticket show HD-1`: it shows the number on file only to you." in thread_said(
        slack_api
    )
    async with app.services.sessions() as session:
        query = select(TicketEvent).where(TicketEvent.kind == "identity.callback_undelivered")
        [event] = (await session.execute(query)).scalars().all()
    assert event.data["permanent"] is True
    shown = await say(app, "show HD-1")
    assert f"no manager: call back {CY_PHONE}" in shown
    assert not leaked(slack_api)
    # The call-back is still recorded by command; the thread is told without the number.
    assert "confirmed by call-back" in await say(app, "verify HD-1 called-back")
    await wait_until(lambda: "You may proceed" in thread_said(slack_api), what="the thread")
    assert not leaked(slack_api)


# -- Teams -----------------------------------------------------------------------------------


async def test_teams_the_number_goes_to_the_technicians_chat_not_the_channel(
    make_app, connector: FakeConnector
):
    # Tom opens a password reset for Cy in the #helpdesk channel: the ticket's conversation is
    # the card's reply chain there. Cy's number goes to Tom's 1:1 chat with the bot, never to
    # the channel: not on intake, not on `verify`, not on the card's Verify identity button.
    config: dict[str, Any] = {"teams": {"service_url": connector.service_url, "tenant_id": TENANT}}
    app: AppHarness = await make_app(config=config, people=PEOPLE)
    url = connector.service_url
    before = len(connector.activities())
    await app.teams(message(url, "ticket new Locked out", conversation=CHANNEL))
    await wait_until(lambda: len(connector.activities()) > before, what="the intake form")
    form = card_of(connector.activities()[-1])
    value = {
        **submit_action(form)["fallback"]["data"],
        **form_values(requester="cy@example.com", category="password-reset", summary="Locked"),
    }
    await app.teams(activity(url, value=value, conversation=CHANNEL))

    def said(conversation: str) -> str:
        return json.dumps(
            [[a.get("text"), a.get("attachments")] for a in connector.activities(conversation)]
        )

    def dm_notices() -> list[dict[str, Any]]:
        """Call-back notices (the number, the button) in Tom's 1:1 chats with the bot."""
        assert all(c["members"][0]["id"] == TECH_ID for c in connector.created_conversations())
        return [
            card_of(a)
            for a in connector.activities()
            if a["_conversation_id"] != CHANNEL
            and a.get("attachments")
            and CALLED_BACK in json.dumps(a["attachments"])
        ]

    await wait_until(lambda: "sent to Tom Tech" in said(CHANNEL), what="the channel told")
    await wait_until(dm_notices, what="Tom's direct message")
    assert CY_PHONE in json.dumps(dm_notices()[0])
    assert CY_PHONE not in said(CHANNEL)

    # `verify` typed in the channel: answered in Tom's 1:1 chat, the channel told only where.
    await app.teams(message(url, "ticket verify HD-1", conversation=CHANNEL))
    await wait_until(
        lambda: len(dm_notices()) >= 3, what="the answer and the direct message", timeout=20
    )
    assert CY_PHONE not in said(CHANNEL)

    # The ticket card's Verify identity button, pressed in the channel: its answer replaces
    # the card the channel sees, so it must not carry the number either.
    [card] = [
        card_of(a)
        for a in connector.activities(CHANNEL)
        if a.get("attachments") and "Verify identity" in json.dumps(a["attachments"])
    ][:1]
    pressed = next(a for a in card["actions"] if a["title"] == "Verify identity")
    response = await app.teams(
        activity(
            url,
            type="invoke",
            name="adaptiveCard/action",
            conversation=CHANNEL,
            value={
                "action": {
                    "type": "Action.Execute",
                    "verb": pressed["verb"],
                    "data": pressed["data"],
                },
                "trigger": "manual",
            },
        )
    )
    assert response.status == 200
    answer = await response.json()
    assert CY_PHONE not in json.dumps(answer)
    assert "privately" in json.dumps(answer), answer
    await wait_until(lambda: len(dm_notices()) >= 4, what="the third direct message", timeout=20)
    assert CY_PHONE not in said(CHANNEL)
    in_channel = [u for u in connector.updates() if u.get("_conversation_id") == CHANNEL]
    assert CY_PHONE not in json.dumps(in_channel)


async def test_slack_a_requester_asking_show_is_not_told_the_number_to_call(
    make_app, slack_api: FakeSlack
):
    # Cy (no technician, no manager on file) opens his own password reset: the number on file
    # goes to nobody until a technician asks (SPEC: the technician is told the number). But
    # `show HD-1`, answered to the requester too, named it: whoever holds Cy's chat account
    # (the very caller the call-back is to check) learnt which number the help desk would
    # call. His `show` leaves the identity checks out; technicians still see the number.
    app = await start(make_app, slack_api)
    await open_as(app, slack_api, opener="U0CY", requester="U0CY", category="password-reset")

    async def no_manager() -> bool:
        return bool(await events(app, "identity.no_manager"))

    for _ in range(200):
        if await no_manager():
            break
        await asyncio.sleep(0.05)
    assert await no_manager()
    own = await say(app, "show HD-1", user="U0CY")
    assert "HD-1" in own and CY_PHONE not in own
    # The requester's own `show` leaves out the identity checks altogether (what a manager
    # answered is not for whoever holds the requester's account either).
    assert "call back" not in own
    assert f"no manager: call back {CY_PHONE}" in await say(app, "show HD-1")

    # Confirmed by Tom's call-back: the requester's `show` says how, not the number called.
    await say(app, "verify HD-1")
    assert "Identity confirmed" in await say(app, "verify HD-1 called-back")
    own = await say(app, "show HD-1", user="U0CY")
    assert "confirmed by call-back to the number on file" in own and CY_PHONE not in own
    assert CY_PHONE in await say(app, "show HD-1")


async def test_teams_a_requester_asking_show_is_not_told_the_number_to_call(
    make_app, connector: FakeConnector
):
    config: dict[str, Any] = {"teams": {"service_url": connector.service_url, "tenant_id": TENANT}}
    app: AppHarness = await make_app(config=config, people=PEOPLE)
    url = connector.service_url
    cy, chat = "29:1cy", "a:1personal-chat-with-cy"
    before = len(connector.activities(chat))
    await app.teams(message(url, "ticket new Locked out", user=cy, conversation=chat))
    await wait_until(lambda: len(connector.activities(chat)) > before, what="the intake form")
    form = card_of(connector.activities(chat)[-1])
    value = {
        **submit_action(form)["fallback"]["data"],
        **form_values(requester="cy@example.com", category="password-reset", summary="Locked"),
    }
    await app.teams(activity(url, value=value, user=cy, conversation=chat))

    async def shown(user: str, conversation: str) -> str:
        before = len(connector.activities(conversation))
        await app.teams(message(url, "ticket show HD-1", user=user, conversation=conversation))
        await wait_until(lambda: len(connector.activities(conversation)) > before, what="show")
        return json.dumps(connector.activities(conversation)[before:])

    for _ in range(200):
        async with app.services.sessions() as session:
            query = select(TicketEvent).where(TicketEvent.kind == "identity.no_manager")
            if (await session.execute(query)).first() is not None:
                break
        await asyncio.sleep(0.05)
    own = await shown(cy, chat)
    assert "HD-1" in own and CY_PHONE not in own
    assert "call back" not in own
    assert CY_PHONE in await shown(TECH_ID, "a:1personal-chat-with-tech")
