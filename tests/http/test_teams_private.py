"""Answers meant for one person, asked for in a shared Teams conversation (a channel, a group
chat), go to that person's 1:1 chat with the bot (SPEC: `show`, `mine`, `help`, refusals
"go to the person's 1:1 chat or reply"). When that chat cannot be opened (the app is not
installed for them: the connector refuses createConversation with 403 or 404) they are
answered where they asked, except for an answer naming the requester's number on file
(`verify` with no manager to ask, `show` of such a check): that is never posted in the shared
conversation, which gets a short notice naming the person and what to do. Over HTTP with the
fake connector, on both databases."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest

from tests.fakes.botframework import FakeConnector
from tests.fakes.kb_confluence import FakeConfluence
from tests.harness import AppHarness, wait_until
from tests.http.conftest_teams import CHANNEL, PERSONAL, TECH_ID, TENANT, card_of, message
from tests.http.conftest_teams import PEOPLE as TEAMS_PEOPLE
from tests.http.test_closure_teams import new_ticket
from tests.http.test_identity_callback import CY_PHONE, PEOPLE
from tests.http.test_throttling import no_tracebacks

GROUP_CHAT = "19:meeting-or-group@thread.v2"
NOTICE = "could not be sent to you privately"


def in_group_chat(service_url: str, text: str) -> dict[str, Any]:
    body = message(service_url, text, conversation=GROUP_CHAT)
    body["conversation"] = {"id": GROUP_CHAT, "conversationType": "groupChat", "isGroup": True}
    body["conversation"]["tenantId"] = TENANT
    return body


def said(fake: FakeConnector, conversation: str) -> str:
    return json.dumps(
        [
            [a.get("text"), a.get("summary"), a.get("attachments")]
            for a in fake.activities(conversation)
        ]
    )


async def start(make_app: Any) -> AppHarness:
    app: AppHarness = await make_app(config={"sla": {"clients": {"acme": "gold"}}}, people=PEOPLE)
    return app


@pytest.mark.parametrize("status", [403, 404])
async def test_answers_with_nothing_confidential_are_given_in_place_when_the_chat_is_refused(
    make_app, connector: FakeConnector, caplog, status: int
):
    caplog.set_level(logging.INFO)
    app = await start(make_app)
    await new_ticket(app, connector)  # HD-1, Ana's printer, opened in Tom's 1:1 chat
    url = connector.service_url
    for text, expected in [
        ("<at>Helpdesk</at> ticket show HD-1", "Printer jams"),  # the ticket's details
        ("<at>Helpdesk</at> ticket mine", "Printer jams"),
        ("<at>Helpdesk</at> ticket show HD-404", "There is no ticket HD-404"),  # a refusal
        ("<at>Helpdesk</at> ticket help", "show a ticket"),
    ]:
        before = len(connector.activities(CHANNEL))
        caplog.clear()
        connector.fail("/v3/conversations", status)
        response = await app.teams(message(url, text, conversation=CHANNEL))
        assert response.status == 201
        await wait_until(
            lambda before=before: len(connector.activities(CHANNEL)) > before, what="the answer"
        )
        [answered] = connector.activities(CHANNEL)[before:]
        assert expected in json.dumps(answered), text
        assert NOTICE not in json.dumps(answered)
        logged = [r.getMessage() for r in caplog.records if "answering where" in r.getMessage()]
        assert any(str(status) in line for line in logged), logged
        no_tracebacks(caplog)
    assert all(a["_conversation_id"] in (PERSONAL, CHANNEL) for a in connector.activities())


async def test_the_number_on_file_never_lands_in_the_channel_when_the_chat_is_refused(
    make_app, connector: FakeConnector
):
    # Cy (the CEO, no manager) has a ticket; Tom types `verify` in the channel, but the
    # connector will not open his 1:1 chat: the answer, which names Cy's number on file, is
    # not posted in the channel. The call-back notice (a direct message through the outbox, to
    # the chat Tom has already used) still brings him the number.
    app = await start(make_app)
    await new_ticket(app, connector, requester="cy@example.com")
    url = connector.service_url
    connector.fail("/v3/conversations", 403)
    await app.teams(message(url, "<at>Helpdesk</at> ticket verify HD-1", conversation=CHANNEL))
    await wait_until(lambda: connector.activities(CHANNEL), what="the notice")
    await wait_until(lambda: CY_PHONE in said(connector, PERSONAL), what="the direct message")
    assert CY_PHONE not in said(connector, CHANNEL)
    [notice] = connector.activities(CHANNEL)
    assert NOTICE in notice["text"] and "Tom Tech" in notice["text"]
    assert "1:1 chat with Helpdesk" in notice["text"] and "ask again" in notice["text"]
    assert not notice.get("attachments")
    # `show` of the ticket lists the open check with the number: the same rule.
    connector.fail("/v3/conversations", 403)
    await app.teams(message(url, "<at>Helpdesk</at> ticket show HD-1", conversation=CHANNEL))
    await wait_until(lambda: len(connector.activities(CHANNEL)) > 1, what="the second notice")
    assert NOTICE in connector.activities(CHANNEL)[1]["text"]
    assert CY_PHONE not in said(connector, CHANNEL)


async def test_a_group_chat_gets_the_notice_and_a_personal_chat_its_answer(
    make_app, connector: FakeConnector
):
    app = await start(make_app)
    await new_ticket(app, connector, requester="cy@example.com")
    url = connector.service_url
    connector.fail("/v3/conversations", 403)
    await app.teams(in_group_chat(url, "<at>Helpdesk</at> ticket verify HD-1"))
    await wait_until(lambda: connector.activities(GROUP_CHAT), what="the notice")
    [notice] = connector.activities(GROUP_CHAT)
    assert NOTICE in notice["text"] and CY_PHONE not in said(connector, GROUP_CHAT)

    # Asked in the person's own 1:1 chat, the answer is given there (no chat is opened).
    created = len(connector.created_conversations())
    before = len(connector.activities(PERSONAL))
    await app.teams(message(url, "ticket show HD-1"))
    await wait_until(lambda: len(connector.activities(PERSONAL)) > before, what="the card")
    card = json.dumps(card_of(connector.activities(PERSONAL)[-1]))
    assert "Printer jams" in card
    assert len(connector.created_conversations()) == created


async def test_a_chat_that_opens_gets_the_answer_and_the_channel_nothing(
    make_app, connector: FakeConnector
):
    app = await start(make_app)
    await new_ticket(app, connector)
    await app.teams(message(connector.service_url, "ticket show HD-1", conversation=CHANNEL))
    await wait_until(lambda: connector.created_conversations(), what="Tom's chat")
    [chat] = connector.created_conversations()
    await wait_until(lambda: connector.activities(chat["_id"]), what="the card")
    assert "Printer jams" in json.dumps(card_of(connector.activities(chat["_id"])[0]))
    assert connector.activities(CHANNEL) == []


async def test_the_kbs_late_articles_follow_the_answer_where_the_chat_is_refused(
    make_app, connector: FakeConnector
):
    # `ticket kb` answers at once and sends the KB's late articles after the turn, the same
    # way: asked in a channel, to the person's chat; once that is refused, where it was asked
    # (nothing in them is kept from the channel's members).
    async with FakeConfluence() as kb:
        kb.add_page("Windows Update 0x80070005 after Patch Tuesday", "Reset the components")
        kb.set_delay("/wiki/rest/api/search", 3)  # past the inline wait, within the timeout
        app: AppHarness = await make_app(
            people=TEAMS_PEOPLE,
            config={"kb": {"source": "confluence", "url": kb.url, "space": "IT"}},
            env={"KB_API_KEY": kb.token, "KB_USERNAME": kb.email},
        )
        text = "<at>Helpdesk</at> ticket kb 0x80070005"
        await app.teams(message(connector.service_url, text, conversation=CHANNEL))
        await wait_until(lambda: connector.created_conversations(), what="Tom's chat")
        [chat] = connector.created_conversations()
        await wait_until(lambda: connector.activities(chat["_id"]), what="the first answer")
        assert "Still asking Confluence" in json.dumps(connector.activities(chat["_id"]))
        connector.fail("/v3/conversations", 403)  # the app was removed for Tom meanwhile
        await wait_until(lambda: connector.activities(CHANNEL), timeout=15, what="the articles")
        [late] = connector.activities(CHANNEL)
        assert "Patch Tuesday" in json.dumps(late) and NOTICE not in json.dumps(late)


@pytest.mark.parametrize("status", [429, 503])
async def test_a_chat_refused_for_the_moment_gets_the_answer_later_and_the_channel_nothing(
    make_app, connector: FakeConnector, caplog, status: int
):
    # Opening Tom's chat is throttled (or the connector is briefly down): that says nothing
    # about the app being installed for him. An answer naming the number on file (`show` of
    # Cy's open call-back check) reaches his chat once the wait is over (through the outbox),
    # and the channel gets neither it nor a notice.
    caplog.set_level(logging.INFO)
    app = await start(make_app)
    await new_ticket(app, connector, requester="cy@example.com")
    await app.teams(message(connector.service_url, "ticket verify HD-1"))  # in his own chat
    await wait_until(lambda: CY_PHONE in said(connector, PERSONAL), what="the call-back")
    await asyncio.sleep(0.5)  # the answer and the direct message both in
    before = len(connector.activities(PERSONAL))
    connector.fail("/v3/conversations", status, headers={"Retry-After": "2"})
    started = time.monotonic()
    text = "<at>Helpdesk</at> ticket show HD-1"
    response = await app.teams(message(connector.service_url, text, conversation=CHANNEL))
    assert response.status == 201 and time.monotonic() - started < 3
    await wait_until(
        lambda: len(connector.activities(PERSONAL)) > before, timeout=15, what="the card"
    )
    assert time.monotonic() - started >= 1.9, "sent inside the Retry-After window"
    [card] = connector.activities(PERSONAL)[before:]
    assert "Printer jams" in json.dumps(card_of(card)) and CY_PHONE in json.dumps(card_of(card))
    await asyncio.sleep(0.5)
    assert connector.activities(CHANNEL) == []
    assert len(connector.activities(PERSONAL)) == before + 1  # once
    refused = [r.getMessage() for r in caplog.records if "not delivered" in r.getMessage()]
    assert len(refused) == 1 and TECH_ID in refused[0], refused
    no_tracebacks(caplog)
