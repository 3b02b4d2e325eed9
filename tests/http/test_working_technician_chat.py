"""Teams: the Tier 1 nudge and the requester's answers to `confirm` reach the technician in
their 1:1 chat with the bot (SPEC "Working the ticket to the end": the nudge "in its thread
(Teams: the technician's chat)"; Still broken "tells the technician in the ticket's thread
(Teams: her chat)"), also for a ticket whose card is in a channel. Durable and sent once; when
that chat cannot be opened for good (the app is not installed for the technician: 403/404),
the message goes to the ticket's conversation instead, as a reply to the card (nothing in it is
confidential); refused for the moment, it is retried to the chat. Over HTTP, both databases.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select

from storage.models import Ticket
from tests.fakes.botframework import FakeConnector, mentions
from tests.harness import AppHarness, wait_until
from tests.http.conftest_teams import (
    CHANNEL,
    TECH_ID,
    activity,
    card_of,
    form_values,
    message,
    submit_action,
)
from tests.http.working_support import PEOPLE, TEAMS_IDS, TeamsFlow, rows, shown, teams_config

ANA = TEAMS_IDS["ana"]
NUDGE = "is outside Tier 1 scope"  # the nudge's words (the card says "escalate early" too)
IN_CHANNEL = {"conversation": CHANNEL}
NUDGE_AFTER = 2
CONFIG: dict[str, Any] = {
    "tier1_scope": ["printer"],
    "escalation": {"nudge_after": f"{NUDGE_AFTER}s"},
}


async def start(make_app: Any, connector: FakeConnector) -> AppHarness:
    app: AppHarness = await make_app(config=teams_config(connector, **CONFIG), people=PEOPLE)
    return app


def channel_card(fake: FakeConnector, number: str) -> dict[str, Any] | None:
    """The ticket card of `number` as posted in the channel (the activity, with its `_id`)."""
    for posted in fake.activities(CHANNEL):
        if posted.get("attachments") and f"{number} (P" in shown(card_of(posted)["body"][:1]):
            return posted
    return None


async def channel_ticket(app: AppHarness, fake: FakeConnector, **values: Any) -> str:
    """Tom opens HD-n in the #helpdesk channel: its card, and so its conversation, is there."""
    url = fake.service_url
    async with app.services.sessions() as session:
        number = f"HD-{len((await session.execute(select(Ticket.id))).all()) + 1}"
    before = len(fake.activities(CHANNEL))
    await app.teams(message(url, "ticket new VPN drops", conversation=CHANNEL))
    await wait_until(lambda: len(fake.activities(CHANNEL)) > before, what="the intake form")
    form = card_of(fake.activities(CHANNEL)[-1])
    data = {**submit_action(form)["fallback"]["data"], **form_values(**values)}
    assert (await app.teams(activity(url, value=data, conversation=CHANNEL))).status == 201
    await wait_until(lambda: channel_card(fake, number) is not None, what="the ticket card")
    return number


def toms_chats(fake: FakeConnector) -> list[str]:
    """The 1:1 chats the bot opened with Tom."""
    return [str(c["_id"]) for c in fake.created_conversations() if c["members"][0]["id"] == TECH_ID]


def in_toms_chat(fake: FakeConnector, words: str) -> list[str]:
    return [
        str(a.get("text"))
        for chat in toms_chats(fake)
        for a in fake.activities(chat)
        if words in str(a.get("text") or "").replace("\\", "")
    ]


def in_channel(fake: FakeConnector, words: str) -> list[dict[str, Any]]:
    return [a for a in fake.activities(CHANNEL) if words in shown(a)]


async def test_teams_a_channel_tickets_nudge_reaches_the_technicians_chat_once(
    make_app: Any, connector: FakeConnector
) -> None:
    app = await start(make_app, connector)
    number = await channel_ticket(app, connector, category="network", summary="VPN drops")
    await wait_until(
        lambda: in_toms_chat(connector, NUDGE),
        timeout=NUDGE_AFTER + 8,
        what="the nudge in Tom's chat",
    )
    await asyncio.sleep(1.5)  # the outbox delivers within about 1 s: nothing more comes
    [nudge] = in_toms_chat(connector, NUDGE)
    assert f"{number} is outside Tier 1 scope" in nudge.replace("\\", "")
    assert "<at>" not in nudge  # his 1:1 chat notifies him: no mention there
    assert not in_channel(connector, NUDGE)
    [row] = await rows(app, "tier-nudge")
    assert row.status == "delivered"
    assert len(toms_chats(connector)) == 1


async def test_teams_a_channel_tickets_fix_answers_reach_the_technicians_chat_once(
    make_app: Any, connector: FakeConnector
) -> None:
    """`confirm` typed in the channel; Ana answers Still broken with a comment, then (asked
    again) Works now: Tom hears each in his chat, once; the channel hears nothing."""
    app = await start(make_app, connector)
    number = await channel_ticket(app, connector, category="printer")
    t = TeamsFlow(app, connector)
    await app.teams(message(connector.service_url, f"ticket confirm {number}", **IN_CHANNEL))
    chat, question = await t.dm_card(ANA, "Still broken")
    comment = "The printer still jams on every page"
    body = t.invoke_body(question, "Still broken", ANA, chat, comment=comment)
    assert "your technician was told" in await t.invoke(body)
    assert "You already answered" in await t.invoke(
        t.invoke_body(question, "Still broken", ANA, chat, comment=comment)
    )
    await wait_until(lambda: in_toms_chat(connector, comment), what="Tom told")
    [told] = in_toms_chat(connector, comment)
    assert "still broken" in told and number in told

    await app.teams(message(connector.service_url, f"ticket confirm {number}", **IN_CHANNEL))
    chat, second = await t.dm_card(ANA, "Works now", count=2)
    assert "works now" in await t.invoke(t.invoke_body(second, "Works now", ANA, chat))
    await wait_until(lambda: in_toms_chat(connector, "confirmed the fix"), what="Tom told again")

    await asyncio.sleep(1.5)  # the outbox delivers within about 1 s: nothing more comes
    assert len(in_toms_chat(connector, comment)) == 1
    assert len(in_toms_chat(connector, "confirmed the fix")) == 1
    for words in (comment, "is still broken", "confirmed the fix"):
        assert not in_channel(connector, words), words


@pytest.mark.parametrize("status", [403, 404])
async def test_teams_the_nudge_goes_to_the_card_when_the_technicians_chat_is_refused(
    make_app: Any, connector: FakeConnector, status: int
) -> None:
    """The app is not installed for Tom personally: the connector refuses to open his chat.
    The nudge (nothing confidential in it) is given in the ticket's conversation instead, as a
    reply to its card, once, starting with a mention of him (a reply in the card's chain
    notifies nobody else)."""
    app = await start(make_app, connector)
    number = await channel_ticket(app, connector, category="network", summary="VPN drops")
    card = channel_card(connector, number)
    assert card is not None
    connector.fail("/v3/conversations", status, times=20)
    await wait_until(
        lambda: in_channel(connector, NUDGE),
        timeout=NUDGE_AFTER + 8,
        what="the nudge in the channel",
    )
    await asyncio.sleep(1.5)
    [nudge] = in_channel(connector, NUDGE)
    assert nudge["_reply_to_id"] == card["_id"]
    assert f"{number} is outside Tier 1 scope" in shown(nudge)
    assert nudge["text"].startswith("<at>Tom Tech</at> "), nudge["text"]
    assert mentions(nudge) == [
        {
            "type": "mention",
            "text": "<at>Tom Tech</at>",
            "mentioned": {"id": TECH_ID, "name": "Tom Tech"},
        }
    ]
    assert not toms_chats(connector)
    [row] = await rows(app, "tier-nudge")
    assert row.status == "delivered"


async def test_teams_the_nudge_waits_for_the_technicians_chat_refused_for_the_moment(
    make_app: Any, connector: FakeConnector
) -> None:
    """The connector is throttled or down when the chat is opened: the nudge is retried and
    reaches Tom's chat; the channel gets nothing."""
    app = await start(make_app, connector)
    await channel_ticket(app, connector, category="network", summary="VPN drops")
    connector.fail("/v3/conversations", 503, times=1)
    await wait_until(
        lambda: in_toms_chat(connector, NUDGE),
        timeout=NUDGE_AFTER + 12,
        what="the nudge in Tom's chat",
    )
    await asyncio.sleep(1.0)
    assert len(in_toms_chat(connector, NUDGE)) == 1
    assert not in_channel(connector, NUDGE)
    assert [r.status for r in connector.calls("/v3/conversations")][:1] == [503]
