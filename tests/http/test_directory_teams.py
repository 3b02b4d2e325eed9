"""Teams over HTTP on a real directory: a private slapd, or the Graph fake (TLS token endpoint).

Each test runs on both sources and both databases. With Graph, Teams users are the Graph users
whose object id is the activity's `from.aadObjectId`, and Bo (no chat ids in Graph, never in a
1:1 chat with the bot) is DMed by AAD object id: the bot opens the chat with his AAD id and the
tenant, and his answer counts because it comes from that AAD id. No `teams.service_url` is
configured: the service URL and tenant come from the conversations the bot already has.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlalchemy import select

from storage.models import Ticket
from tests.directory_people import ANA, BO, CY, PAT, TENANT, TOM, VIC, Who
from tests.fakes.botframework import FakeConnector
from tests.harness import AppHarness, only_ticket, wait_until
from tests.http.conftest_teams import (
    CARD_TYPE,
    activity,
    card_of,
    form_values,
    submit_action,
)
from tests.http.directory_support import (
    UNREACHABLE,
    Source,
    elapsed,
    graph_calls_between,
    identity_rows,
)


def chat_of(who: Who) -> str:
    return f"a:1chat-with-{who.key}"


def sent_by(connector: FakeConnector, who: Who, *, conversation: str | None = None, **fields: Any):
    """An activity from `who` (their Teams id and AAD object id), in their 1:1 chat."""
    body = activity(
        connector.service_url,
        conversation=conversation or chat_of(who),
        user=who.teams,
        user_name=who.name,
        **fields,
    )
    body["from"]["aadObjectId"] = who.aad
    body["conversation"]["tenantId"] = TENANT
    return body


async def start(make_app: Any, source: Source, **config: Any) -> AppHarness:
    app: AppHarness = await make_app(config=source.config(**config), env=source.env)
    return app


def texts(connector: FakeConnector, conversation: str) -> str:
    return json.dumps([a.get("text") for a in connector.activities(conversation)])


async def say(app: AppHarness, connector: FakeConnector, who: Who, text: str) -> str:
    """`ticket <text>` from `who` in their chat; everything the bot said there since (texts
    and cards)."""
    before = len(connector.activities(chat_of(who)))
    message = sent_by(connector, who, text=f"ticket {text}", textFormat="plain")
    started = time.monotonic()
    response = await app.teams(message)
    assert response.status == 201 and elapsed(started) < 15
    posted = connector.activities(chat_of(who))[before:]
    return json.dumps([[a.get("text"), a.get("attachments")] for a in posted])


async def new_ticket(
    app: AppHarness, connector: FakeConnector, requester: Who, *, typed: str = ""
) -> None:
    """Tom opens a ticket for `requester` (typed by e-mail, as the Teams form takes it:
    `typed`, else their address)."""
    chat = chat_of(TOM)
    posted = len(connector.activities(chat))
    await app.teams(sent_by(connector, TOM, text="ticket new Locked out", textFormat="plain"))
    await wait_until(lambda: len(connector.activities(chat)) > posted)
    form = card_of(connector.activities(chat)[-1])
    value = {
        **submit_action(form)["fallback"]["data"],
        **form_values(requester=typed or requester.email, category="printer", summary="Locked out"),
    }
    assert (await app.teams(sent_by(connector, TOM, value=value))).status == 201


async def manager_request(
    connector: FakeConnector, source: Source, count: int
) -> tuple[str, dict[str, Any]]:
    """(chat id, card) of the count-th request to Bo, in the 1:1 chat the bot opened."""

    def chats() -> list[dict[str, Any]]:
        return [
            c
            for c in connector.created_conversations()
            if c["members"][0]["id"] == source.manager_teams_id
        ]

    await wait_until(lambda: bool(chats()), timeout=10)
    chat = chats()[0]
    assert chat["tenantID"] == TENANT
    if source.name == "graph":
        assert chat["members"][0].get("aadObjectId") == BO.aad

    def cards() -> list[dict[str, Any]]:
        return [a for c in chats() for a in connector.activities(c["_id"]) if a.get("attachments")]

    await wait_until(lambda: len(cards()) >= count, timeout=10)
    return chat["_id"], card_of(cards()[count - 1])


async def press(
    app: AppHarness, connector: FakeConnector, card: dict[str, Any], who: Who, chat: str
) -> str:
    """`who` presses Approve (Action.Execute); the invoke response's message."""
    pressed = next(a for a in card["actions"] if a["title"] == "Approve")
    invoke = sent_by(
        connector,
        who,
        conversation=chat,
        type="invoke",
        name="adaptiveCard/action",
        value={
            "action": {"type": "Action.Execute", "verb": pressed["verb"], "data": pressed["data"]},
            "trigger": "manual",
        },
    )
    response = await app.teams(invoke)
    assert response.status == 200
    body = await response.json()
    return json.dumps(body["value"]) if body["type"] == CARD_TYPE else str(body["value"])


async def state(app: AppHarness, number: str) -> str:
    async with app.services.sessions() as session:
        query = select(Ticket.identity_state).where(Ticket.number == number)
        return str((await session.execute(query)).scalar_one())


async def test_vip_check_starts_by_itself_and_verify_is_approved(
    make_app, connector: FakeConnector, source: Source
):
    app = await start(make_app, source)
    await new_ticket(app, connector, VIC)  # VIP through a nested group
    chat, card = await manager_request(connector, source, 1)
    assert "Vic VIP" in json.dumps(card)
    assert await state(app, "HD-1") == "pending"
    await new_ticket(app, connector, ANA)
    assert await state(app, "HD-2") == "not_required"
    assert "Bo Boss" in await say(app, connector, TOM, "verify HD-2")
    chat, card = await manager_request(connector, source, 2)
    assert "Ana Lopez (ana@example.com)" in json.dumps(card).replace("\\\\", "")
    assert "Only the requester's manager" in await press(app, connector, card, PAT, chat)
    assert "confirmed the identity for HD-2" in await press(app, connector, card, BO, chat)
    assert await state(app, "HD-2") == "confirmed"
    await wait_until(lambda: "Identity confirmed for HD-2" in texts(connector, chat_of(TOM)))


async def test_no_manager_callback_and_the_technician_group(
    make_app, connector: FakeConnector, source: Source
):
    app = await start(make_app, source, teams={"incident_conversation": "19:incident@thread"})
    await new_ticket(app, connector, CY)
    answer = await say(app, connector, TOM, "verify HD-1")
    assert "+1 555 0199" in answer and "number on file in the directory" in answer
    assert (await only_ticket(app)).identity_state == "required"
    assert not connector.created_conversations()
    assert "Only technicians can raise a ticket to P1" in await say(app, connector, PAT, "p1 HD-1")
    assert (await only_ticket(app)).priority == "P2"
    assert "HD-1 is now P1" in await say(app, connector, TOM, "p1 HD-1")
    assert (await only_ticket(app)).priority == "P1"


async def test_directory_outage_tells_the_technician_and_later_verify_works(
    make_app, connector: FakeConnector, source: Source
):
    app = await start(make_app, source, cache_ttl="0s")
    await new_ticket(app, connector, ANA)
    await wait_until(lambda: len(connector.activities(chat_of(TOM))) >= 2, timeout=20)
    source.go_down()
    started = time.monotonic()
    answer = await say(app, connector, TOM, "verify HD-1")
    assert elapsed(started) < 30
    assert f"The directory ({source.label}) {UNREACHABLE}" in answer
    assert "manager was not asked" in answer and "Something went wrong" not in answer
    assert (await only_ticket(app)).identity_state == "not_required"
    assert await identity_rows(app) == (0, [])
    assert not connector.created_conversations()
    source.come_back()
    assert "Bo Boss" in await say(app, connector, TOM, "verify HD-1")
    await manager_request(connector, source, 1)
    assert (await only_ticket(app)).identity_state == "pending"


@pytest.mark.parametrize("source", ["graph"], indirect=True)
async def test_graph_429_is_waited_out_and_verify_completes(
    make_app, connector: FakeConnector, source: Source
):
    assert source.graph is not None
    app = await start(make_app, source, cache_ttl="0s")
    await new_ticket(app, connector, ANA)
    source.graph.fail("/v1.0/*", 429, times=1, headers={"Retry-After": "2"})
    assert "Bo Boss" in await say(app, connector, TOM, "verify HD-1")
    await manager_request(connector, source, 1)
    [refused] = [c for c in source.graph.graph_calls() if c.status == 429]
    assert not graph_calls_between(source.graph, refused.at, refused.at + 2.0)
    assert (await only_ticket(app)).identity_state == "pending"


async def test_an_unlisted_teams_user_is_not_a_technician(
    make_app, connector: FakeConnector, source: Source
):
    """Someone the directory does not know (no such AAD object id / Teams id) is refused."""
    app = await start(make_app, source)
    await new_ticket(app, connector, ANA)
    stranger = Who("zed", "Zed Unknown", "U0ZED", "29:1zed", "00000000-0000-4000-8000-000000000000")
    assert "Only technicians" in await say(app, connector, stranger, "p1 HD-1")
    assert (await only_ticket(app)).priority == "P2"


async def test_a_manager_who_chatted_with_the_bot_gets_the_request_in_that_chat(
    make_app, connector: FakeConnector, source: Source
):
    """Bo has talked to the bot 1:1 before: the request goes to that chat (found by his Teams
    id, or with Graph by his AAD object id), no new conversation is opened."""
    app = await start(make_app, source)
    await say(app, connector, BO, "help")
    await new_ticket(app, connector, ANA)
    assert "Bo Boss" in await say(app, connector, TOM, "verify HD-1")
    await wait_until(
        lambda: "Identity check for HD-1" in json.dumps(connector.activities(chat_of(BO))),
        timeout=10,
    )
    assert not connector.created_conversations()
    cards = [card_of(a) for a in connector.activities(chat_of(BO)) if a.get("attachments")]
    # His chat holds the help card he asked for and the identity request.
    [card] = [c for c in cards if "Identity check for HD-1" in json.dumps(c)]
    assert "confirmed the identity for HD-1" in await press(app, connector, card, BO, chat_of(BO))


async def test_a_ticket_opened_during_an_outage_opens_gated_and_verify_works_later(
    make_app, connector: FakeConnector, source: Source
):
    app = await start(make_app, source, cache_ttl="0s")
    source.go_down(graph_status=500)  # Graph: an error not worth waiting on
    await new_ticket(app, connector, ANA)
    ticket = await only_ticket(app)
    assert ticket.identity_state == "required" and ticket.requester_email == ANA.email
    await wait_until(
        lambda: "could not be reached when HD-1 was opened" in texts(connector, chat_of(TOM)),
        timeout=30,
    )
    assert await identity_rows(app) == (0, ["identity.directory_unavailable"])
    source.come_back()
    assert "Bo Boss" in await say(app, connector, TOM, "verify HD-1")
    await manager_request(connector, source, 1)


async def test_show_asks_the_directory_while_it_reads_the_ticket(
    make_app, connector: FakeConnector, source: Source
):
    """`show` checks the caller against the directory (uncached) with the ticket's read
    still open (on SQLite, the one connection): answered at once, and only to technicians."""
    app = await start(make_app, source, cache_ttl="0s")
    await new_ticket(app, connector, ANA)
    before = len(connector.activities(chat_of(TOM)))
    started = time.monotonic()
    await app.teams(sent_by(connector, TOM, text="ticket show HD-1", textFormat="plain"))
    assert elapsed(started) < 5
    [shown] = connector.activities(chat_of(TOM))[before:]
    assert "HD-1" in json.dumps(card_of(shown))
    assert "Only technicians and the requester" in await say(app, connector, PAT, "show HD-1")


async def test_the_requester_reached_by_aad_object_id_can_rate_the_survey(
    make_app, connector: FakeConnector, source: Source
):
    """Ana never chatted with the bot: with Graph her survey goes to a chat opened by her AAD
    object id. Her click (her Teams id, her AAD object id) is her answer, not a stranger's."""
    app = await start(make_app, source, csat={"delay": "0s"})
    await new_ticket(app, connector, ANA)
    assert "Logged 30m on HD-1" in await say(app, connector, TOM, "time HD-1 30m")
    chat = chat_of(TOM)
    posted = len(connector.activities(chat))
    await app.teams(sent_by(connector, TOM, text="ticket close HD-1", textFormat="plain"))
    await wait_until(lambda: len(connector.activities(chat)) > posted)
    form = card_of(connector.activities(chat)[-1])
    closing = {
        **submit_action(form)["fallback"]["data"],
        "resolution_note": "Cleared the print queue on PRN-0042 and reinstalled the driver",
        "resolution_category": "Incident",
        "time_spent": "",
        "kb_article": "",
    }
    assert (await app.teams(sent_by(connector, TOM, value=closing))).status == 201
    requester_id = ANA.teams if source.name == "ldap" else ANA.aad

    def chats() -> list[dict[str, Any]]:
        return [
            c for c in connector.created_conversations() if c["members"][0]["id"] == requester_id
        ]

    await wait_until(lambda: bool(chats()) and bool(connector.activities(chats()[0]["_id"])))
    survey_chat = chats()[0]["_id"]
    survey = card_of(connector.activities(survey_chat)[0])
    four = next(a for a in survey["actions"] if a["title"] == "4")
    invoke = sent_by(
        connector,
        ANA,
        conversation=survey_chat,
        type="invoke",
        name="adaptiveCard/action",
        value={"action": {"type": "Action.Execute", "verb": four["verb"], "data": four["data"]}},
    )
    response = await app.teams(invoke)
    assert response.status == 200
    answer = json.dumps((await response.json())["value"])
    assert "Thank you! You rated HD-1 4/5." in answer, answer
    assert (await only_ticket(app)).csat_rating == 4


async def close_from_form(app: AppHarness, connector: FakeConnector, number: str) -> None:
    """Tom closes `number` through the closure form (30m of Time spent)."""
    chat = chat_of(TOM)
    posted = len(connector.activities(chat))
    await app.teams(sent_by(connector, TOM, text=f"ticket close {number}", textFormat="plain"))
    await wait_until(lambda: len(connector.activities(chat)) > posted)
    form = card_of(connector.activities(chat)[-1])
    closing = {
        **submit_action(form)["fallback"]["data"],
        "resolution_note": "Cleared the print queue on PRN-0042 and reinstalled the driver",
        "resolution_category": "Incident",
        "time_spent": "30m",
        "kb_article": "",
    }
    assert (await app.teams(sent_by(connector, TOM, value=closing))).status == 201
    await wait_until(lambda: f"Closed {number}." in json.dumps(connector.activities(chat)))


async def test_a_vip_ticket_opened_during_an_outage_still_gets_the_personal_follow_up(
    make_app, connector: FakeConnector, source: Source
):
    """The directory could not say Vic is a VIP when HD-1 was opened; it can when HD-1 is
    closed: Tom is reminded to write to him personally all the same."""
    app = await start(
        make_app, source, cache_ttl="0s", csat={"delay": "0s", "vip_followup_delay": "1s"}
    )
    source.go_down(graph_status=500)
    await new_ticket(app, connector, VIC)
    await wait_until(
        lambda: "could not be reached when HD-1 was opened" in texts(connector, chat_of(TOM)),
        timeout=30,
    )
    source.come_back()
    assert "Bo Boss" in await say(app, connector, TOM, "verify HD-1")
    chat, card = await manager_request(connector, source, 1)
    assert "confirmed the identity for HD-1" in await press(app, connector, card, BO, chat)
    await close_from_form(app, connector, "HD-1")
    await wait_until(
        lambda: "Personal follow-up: HD-1" in json.dumps(connector.activities(chat_of(TOM))),
        timeout=10,
    )


async def test_the_requester_known_by_aad_object_id_sees_their_ticket_in_show_and_mine(
    make_app, connector: FakeConnector, source: Source
):
    """With Graph, Ana (never in a chat with the bot) is the ticket's requester by her AAD
    object id; her own `show` and `mine` come with her Teams id and that AAD object id."""
    app = await start(make_app, source)
    await new_ticket(app, connector, ANA)
    assert (await only_ticket(app)).requester_id == (
        ANA.teams if source.name == "ldap" else ANA.aad
    )
    before = len(connector.activities(chat_of(ANA)))
    await app.teams(sent_by(connector, ANA, text="ticket show HD-1", textFormat="plain"))
    await wait_until(lambda: len(connector.activities(chat_of(ANA))) > before)
    [shown] = connector.activities(chat_of(ANA))[before:]
    assert "Only technicians" not in json.dumps(shown)
    assert "HD-1 (P" in json.dumps(card_of(shown))
    assert "HD-1 (P" in await say(app, connector, ANA, "mine")
    assert "no open tickets" in await say(app, connector, PAT, "mine")


async def show_to(app: AppHarness, connector: FakeConnector, who: Who, number: str) -> str:
    """`ticket show <number>` from `who`: what came back (the card or the text)."""
    before = len(connector.activities(chat_of(who)))
    await app.teams(sent_by(connector, who, text=f"ticket show {number}", textFormat="plain"))
    await wait_until(lambda: len(connector.activities(chat_of(who))) > before)
    # What else reaches that chat meanwhile (the ticket card of a ticket just opened there,
    # delivered by the outbox) comes along: the answer is among what arrived.
    return "\n".join(
        json.dumps(card_of(shown)) if shown.get("attachments") else str(shown.get("text"))
        for shown in connector.activities(chat_of(who))[before:]
    )


async def test_the_requester_on_file_by_e_mail_sees_their_ticket_in_show_and_mine(
    make_app, connector: FakeConnector, source: Source
):
    """A ticket opened while the directory could not be reached keeps its requester by the
    e-mail typed (in another case than the directory's). Once it answers, Ana's `show` and
    `mine` find it by her directory e-mail; Pat's do not. While it is down again, Ana is told
    the directory could not be reached, not that only technicians may see it."""
    app = await start(make_app, source, cache_ttl="0s")
    source.go_down(graph_status=500)
    await new_ticket(app, connector, ANA, typed="Ana@Example.COM")
    ticket = await only_ticket(app)
    assert (ticket.requester_id, ticket.requester_email) == ("Ana@Example.COM",) * 2
    source.come_back()
    assert "HD-1 (P" in await show_to(app, connector, ANA, "HD-1")
    assert "HD-1 (P" in await say(app, connector, ANA, "mine")
    assert "Only technicians and the requester" in await show_to(app, connector, PAT, "HD-1")
    assert "no open tickets" in await say(app, connector, PAT, "mine")
    source.go_down(graph_status=500)
    shown = await show_to(app, connector, ANA, "HD-1")
    assert f"The directory ({source.label}) {UNREACHABLE}" in shown
    assert "HD-1 is yours" in shown and "Only technicians" not in shown
    mine = await say(app, connector, ANA, "mine")
    assert f"The directory ({source.label}) {UNREACHABLE}" in mine
    assert "no open tickets" not in mine


async def test_a_technician_sees_the_ticket_while_the_directory_is_down(
    make_app, connector: FakeConnector, source: Source
):
    """Tom, known to be a technician (the directory's answer cached), still sees a ticket on
    file by e-mail while the directory cannot be reached: no e-mail look-up is needed."""
    app = await start(make_app, source)
    source.go_down(graph_status=500)
    await new_ticket(app, connector, ANA, typed=ANA.email)
    source.come_back()
    assert "HD-1 (P" in await show_to(app, connector, TOM, "HD-1")
    source.go_down(graph_status=500)
    assert "HD-1 (P" in await show_to(app, connector, TOM, "HD-1")
