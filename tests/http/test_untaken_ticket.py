"""A ticket its requester opened has no technician until one takes it (SPEC: anyone may open a
ticket; "Deny: ... the technician is told not to proceed"; P1 notice "requester, technician";
SLA warnings "the technician is warned in the thread").

The opener was stored as the ticket's technician, so on a ticket Sam (no technician) opened for
himself everything meant for "the technician" went to Sam: the manager's Deny of an identity
check ("possible impersonation ... do not proceed") was posted in Sam's own thread, tipping off
the very caller the check exists to stop, while Tom, who ran `verify`, heard nothing; the P1
notice named Sam as Technician; SLA warnings pinged Sam. Now the first technician who acts on
such a ticket takes it; until then nobody is named or pinged as its technician, and identity
outcomes go privately to the technician who asked. Over Slack and Teams HTTP, both
databases."""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from storage.models import Ticket, TicketEvent
from tests.fakes.botframework import FakeConnector
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, TestClock, block_actions, view_submission, wait_until
from tests.harness import slack_button as button
from tests.http.conftest_teams import (
    ANA_ID,
    PERSONAL,
    TECH_ID,
    TENANT,
    activity,
    card_of,
    form_values,
    message,
    submit_action,
)

PEOPLE = [
    {
        "email": "sam@example.com",
        "name": "Sam User",
        "slack_id": "USAM",
        "phone": "+1 555 0100",
        "manager": "bo@example.com",
    },
    {"email": "bo@example.com", "name": "Bo Boss", "slack_id": "U0BO"},
    {"email": "tom@example.com", "name": "Tom Tech", "slack_id": "UTECH", "technician": True},
]
CONFIG: dict[str, Any] = {
    "queues": {"security": {"slack": "C0SECURITY"}},
    "slack": {"incident_channel": "C0INCIDENT"},
    "tier1_scope": [],  # no Tier 2/3 nudges in these threads
}
_ids = itertools.count(1)


def _text(value: str) -> dict[str, Any]:
    return {"type": "plain_text_input", "value": value}


def _select(value: str) -> dict[str, Any]:
    return {"type": "static_select", "selected_option": {"value": value}}


def posts_to(fake: FakeSlack, channel: str) -> list[dict[str, Any]]:
    return [p for p in fake.posts() if p.get("channel") == channel]


async def open_own_ticket(
    app: AppHarness, fake: FakeSlack, *, category: str = "printer", priority: str = "P3"
) -> Ticket:
    """Sam opens a ticket for himself in C0HELP (the card and its thread are there)."""
    opened = len(fake.views_opened())
    assert (await app.slash("new Locked out", user="USAM")).status == 200
    await fake.wait_for_method("views.open", count=opened + 1)
    view = fake.views_opened()[-1]["view"]
    values = {
        "requester": {"type": "users_select", "selected_user": "USAM"},
        "summary": _text("Locked out of my laptop"),
        "error_text": _text("Error 0x8007001F"),
        "doing": _text("Signing in"),
        "reproducible": _select("yes"),
        "users_affected": {"type": "number_input", "value": "1"},
        "priority": _select(priority),
        "category": _select(category),
        "asset": _text(""),
        "client": _text(""),
    }
    before = len(posts_to(fake, "C0HELP"))
    submission = view_submission(values=values, view=view, user="USAM", view_id=f"VU{next(_ids)}")
    assert (await app.interactive(submission)).status == 200
    await wait_until(lambda: len(posts_to(fake, "C0HELP")) > before, what="the ticket card")
    return await only_ticket(app)


async def only_ticket(app: AppHarness) -> Ticket:
    """The newest ticket (the only one, but in the test of two)."""
    async with app.services.sessions() as session:
        query = select(Ticket).order_by(Ticket.id.desc())
        newest = (await session.execute(query)).scalars().first()
    assert newest is not None
    return newest


async def manager_dm(fake: FakeSlack, count: int) -> dict[str, Any]:
    await wait_until(lambda: len(posts_to(fake, "DU0BO")) >= count, what="the manager's DM")
    return posts_to(fake, "DU0BO")[count - 1]


async def click(app: AppHarness, fake: FakeSlack, post: dict[str, Any], title: str) -> str:
    """Bo presses a button of his DM; returns the bot's answer."""
    n = next(_ids)
    payload = block_actions(
        button(post, title),
        user="U0BO",
        channel="DU0BO",
        n=n,
        response_url=fake.response_url_for(f"u{n}"),
        message_ts=post.get("ts", "1.1"),
        text=post.get("text", ""),
    )
    assert (await app.interactive(payload)).status == 200
    await fake.wait_for(f"/response/u{n}")
    return json.dumps(fake.responses(f"u{n}")[-1])


def technician_fact(blocks: Any) -> str:
    """The text after `*Technician:*` in a rendered card (up to the end of its line)."""
    rendered = json.dumps(blocks)
    start = rendered.index("*Technician:*") + len("*Technician:*")
    return rendered[start:].split("\\n", 1)[0].split('"', 1)[0]


async def test_a_deny_on_a_requesters_own_ticket_goes_to_the_technician_who_asked(
    make_app: Any, slack_api: FakeSlack
) -> None:
    app: AppHarness = await make_app(slack=slack_api, config=CONFIG, people=PEOPLE)
    ticket = await open_own_ticket(app, slack_api, category="password-reset")
    await manager_dm(slack_api, 1)  # a gated ticket's check starts on its own
    assert "Bo Boss" in json.dumps(await (await app.slash(f"verify {ticket.number}")).json())
    fresh = await manager_dm(slack_api, 2)
    assert "security team" in await click(app, slack_api, fresh, "Deny")

    def told_tom() -> list[dict[str, Any]]:
        return [p for p in posts_to(slack_api, "DUTECH") if "DO NOT PROCEED" in json.dumps(p)]

    await wait_until(told_tom, what="the denial, to Tom privately")
    assert ticket.number in json.dumps(told_tom())
    await wait_until(lambda: posts_to(slack_api, "C0SECURITY"), what="the security queue")
    assert "Possible impersonation on HD-1" in json.dumps(posts_to(slack_api, "C0SECURITY"))
    await asyncio.sleep(1.2)  # anything else due has gone out
    # Nothing about the denial where Sam reads (the card's channel and thread, his DMs), nor
    # on the card in his thread, refreshed as the check went on.
    for channel in ("C0HELP", "DUSAM"):
        for post in posts_to(slack_api, channel):
            words = json.dumps(post)
            assert "DO NOT PROCEED" not in words and "impersonation" not in words, post
    cards = [u for u in slack_api.method_calls("chat.update") if u.get("channel") == "C0HELP"]
    assert cards and not [u for u in cards if "denied" in json.dumps(u).lower()], cards[-1]
    shown = json.dumps(await (await app.slash(f"show {ticket.number}", user="USAM")).json())
    assert "denied" not in shown.lower() and "not confirmed" in shown
    # Tom sees it as it is.
    shown = json.dumps(await (await app.slash(f"show {ticket.number}")).json())
    assert "denied" in shown


async def test_a_technicians_time_takes_the_ticket_and_its_warnings_mention_them(
    make_app: Any, slack_api: FakeSlack
) -> None:
    start = (datetime.now(UTC) + timedelta(days=1)).replace(hour=9, minute=0, second=0)
    clock = TestClock(start.replace(microsecond=0))
    config = {**CONFIG, "sla": {"warn_before": "15m"}}
    app: AppHarness = await make_app(slack=slack_api, config=config, people=PEOPLE, clock=clock)
    ticket = await open_own_ticket(app, slack_api)
    shown = await (await app.slash(f"show {ticket.number}")).json()
    assert "USAM" not in technician_fact(shown["blocks"]), technician_fact(shown["blocks"])
    assert "none yet" in technician_fact(shown["blocks"])

    logged = await (await app.slash(f"time {ticket.number} 15m checked the account")).json()
    assert "Logged 15m" in json.dumps(logged)
    shown = await (await app.slash(f"show {ticket.number}")).json()
    assert "<@UTECH>" in technician_fact(shown["blocks"]), technician_fact(shown["blocks"])
    # The card in the channel names Tom too.
    await wait_until(
        lambda: any(
            "<@UTECH>" in technician_fact(u["blocks"])
            for u in slack_api.method_calls("chat.update")
            if u.get("channel") == "C0HELP"
        ),
        what="the card refreshed with Tom",
    )
    async with app.services.sessions() as session:
        taken = (
            (await session.execute(select(TicketEvent).where(TicketEvent.kind == "ticket.taken")))
            .scalars()
            .all()
        )
    assert [(e.actor_platform, e.actor_id) for e in taken] == [("slack", "UTECH")]
    assert (await only_ticket(app)).technician_id == "UTECH"

    # The resolve warning (P3: 3 days) mentions Tom, not Sam.
    clock.set(start + timedelta(days=3) - timedelta(minutes=15))
    row = await only_ticket(app)

    def warned() -> list[dict[str, Any]]:
        return [
            p
            for p in posts_to(slack_api, "C0HELP")
            if p.get("thread_ts") == row.source_thread and "SLA warning" in json.dumps(p)
        ]

    await wait_until(warned, timeout=5, what="the resolve warning")
    [warning] = warned()
    assert warning["text"].startswith("<@UTECH> SLA warning"), warning["text"]
    assert "USAM" not in json.dumps(warning)


async def test_an_untaken_tickets_warning_pings_nobody_and_says_so(
    make_app: Any, slack_api: FakeSlack
) -> None:
    start = (datetime.now(UTC) + timedelta(days=1)).replace(hour=9, minute=0, second=0)
    clock = TestClock(start.replace(microsecond=0))
    config = {**CONFIG, "sla": {"warn_before": "15m"}}
    app: AppHarness = await make_app(slack=slack_api, config=config, people=PEOPLE, clock=clock)
    await open_own_ticket(app, slack_api)

    async def card_thread() -> bool:
        return bool((await only_ticket(app)).source_thread)

    await wait_until(card_thread, what="the card's thread recorded")
    row = await only_ticket(app)
    clock.set(row.respond_by - timedelta(minutes=15))  # P3: respond within 8 h

    def warned() -> list[dict[str, Any]]:
        return [
            p
            for p in posts_to(slack_api, "C0HELP")
            if p.get("thread_ts") == row.source_thread and "SLA warning" in json.dumps(p)
        ]

    await wait_until(warned, timeout=5, what="the respond warning")
    [warning] = warned()
    assert warning["text"].startswith("SLA warning"), warning["text"]
    assert "USAM" not in json.dumps(warning)
    assert f"No technician has taken {row.number} yet" in warning["text"]
    clock.set(row.respond_by)
    await wait_until(
        lambda: any(
            "SLA breach on" in json.dumps(p) and not p.get("thread_ts")
            for p in posts_to(slack_api, "C0HELP")
        ),
        timeout=5,
        what="the breach in the channel",
    )
    [breach] = [
        p
        for p in posts_to(slack_api, "C0HELP")
        if "SLA breach on" in json.dumps(p) and not p.get("thread_ts")
    ]
    assert "no technician has taken it yet" in breach["text"] and "Sam" not in breach["text"]
    assert not posts_to(slack_api, "DUSAM")  # and nothing "for the technician" in Sam's DM


async def test_the_p1_notice_names_the_technician_who_took_it_never_the_requester(
    make_app: Any, slack_api: FakeSlack
) -> None:
    app: AppHarness = await make_app(slack=slack_api, config=CONFIG, people=PEOPLE)
    ticket = await open_own_ticket(app, slack_api)
    assert "is now P1" in json.dumps(await (await app.slash(f"p1 {ticket.number}")).json())
    await wait_until(lambda: posts_to(slack_api, "C0INCIDENT"), what="the incident notice")
    [notice] = posts_to(slack_api, "C0INCIDENT")
    assert "<@UTECH>" in technician_fact(notice["blocks"]), technician_fact(notice["blocks"])
    assert "USAM" not in technician_fact(notice["blocks"])


# -- Teams: Ana opens her own ticket in her 1:1 chat with the bot (the ticket's conversation) --

BO_ID = "29:1bo"
ANA_CHAT = "a:1personal-chat-with-ana"
TEAMS_SECURITY = "19:security@thread.tacv2"
TEAMS_PEOPLE = [
    {
        "email": "ana@example.com",
        "name": "Ana Lopez",
        "teams_id": ANA_ID,
        "phone": "+1 555 0100",
        "manager": "bo@example.com",
    },
    {"email": "bo@example.com", "name": "Bo Boss", "teams_id": BO_ID},
    {"email": "tech@example.com", "name": "Tom Tech", "teams_id": TECH_ID, "technician": True},
]


async def start_teams(make_app: Any, fake: FakeConnector) -> AppHarness:
    config: dict[str, Any] = {
        "teams": {"service_url": fake.service_url, "tenant_id": TENANT},
        "queues": {"security": {"teams": TEAMS_SECURITY}},
        "tier1_scope": [],
    }
    app: AppHarness = await make_app(config=config, people=TEAMS_PEOPLE)
    return app


async def ana_opens_her_own(app: AppHarness, fake: FakeConnector, *, category: str) -> None:
    url = fake.service_url
    asked = message(
        url, "ticket new Locked out", user=ANA_ID, user_name="Ana", conversation=ANA_CHAT
    )
    assert (await app.teams(asked)).status == 201
    await wait_until(lambda: fake.activities(ANA_CHAT), what="the intake form")
    form = card_of(fake.activities(ANA_CHAT)[-1])
    data = {
        **submit_action(form)["fallback"]["data"],
        **form_values(requester="ana@example.com", category=category, priority="P3"),
    }
    sent = activity(url, value=data, user=ANA_ID, user_name="Ana", conversation=ANA_CHAT)
    assert (await app.teams(sent)).status == 201
    await wait_until(
        lambda: any("HD-1" in json.dumps(a) for a in fake.activities(ANA_CHAT)), what="the card"
    )


def chats_with(fake: FakeConnector, user: str) -> set[str]:
    """The 1:1 chats the bot has with `user` (the one they wrote in, and any it opened)."""
    known = {TECH_ID: PERSONAL, ANA_ID: ANA_CHAT}
    opened = {c["_id"] for c in fake.created_conversations() if c["members"][0]["id"] == user}
    return opened | {known[user]}


def posted_saying(fake: FakeConnector, words: str) -> list[dict[str, Any]]:
    return [a for a in fake.activities() if words in json.dumps(a)]


async def bo_request(fake: FakeConnector, count: int) -> tuple[str, dict[str, Any]]:
    def chats() -> list[dict[str, Any]]:
        return [c for c in fake.created_conversations() if c["members"][0]["id"] == BO_ID]

    await wait_until(chats, what="Bo's chat")
    chat = chats()[0]["_id"]

    def cards() -> list[dict[str, Any]]:
        return [a for a in fake.activities(chat) if a.get("attachments")]

    await wait_until(lambda: len(cards()) >= count, what="the request to Bo")
    return chat, card_of(cards()[count - 1])


async def test_teams_a_deny_on_a_requesters_own_ticket_goes_to_the_technician_who_asked(
    make_app: Any, connector: FakeConnector
) -> None:
    app = await start_teams(make_app, connector)
    await ana_opens_her_own(app, connector, category="password-reset")
    await bo_request(connector, 1)
    assert (await app.teams(message(connector.service_url, "ticket verify HD-1"))).status == 201
    chat, card = await bo_request(connector, 2)
    deny = next(a for a in card["actions"] if a["title"] == "Deny")
    submitted = activity(
        connector.service_url, user=BO_ID, conversation=chat, value=deny["fallback"]["data"]
    )
    assert (await app.teams(submitted)).status == 201
    await wait_until(
        lambda: posted_saying(connector, "DO NOT PROCEED with HD-1"), what="the denial"
    )
    await wait_until(
        lambda: posted_saying(connector, "Possible impersonation on HD-1"), what="security"
    )
    await asyncio.sleep(1.2)
    told = posted_saying(connector, "DO NOT PROCEED")
    assert {a["_conversation_id"] for a in told} <= chats_with(connector, TECH_ID), told
    for words in ("DO NOT PROCEED", "impersonation"):
        where = {a["_conversation_id"] for a in posted_saying(connector, words)}
        assert not where & chats_with(connector, ANA_ID), words
    assert {a["_conversation_id"] for a in posted_saying(connector, "Possible impersonation")} == {
        TEAMS_SECURITY
    }
    # The card in Ana's chat, refreshed as the check went on, does not say it either.
    refreshed = [u for u in connector.updates() if u["_conversation_id"] == ANA_CHAT]
    assert refreshed and not [u for u in refreshed if "denied" in json.dumps(u).lower()]


async def test_teams_a_technicians_time_takes_the_ticket(
    make_app: Any, connector: FakeConnector
) -> None:
    app = await start_teams(make_app, connector)
    await ana_opens_her_own(app, connector, category="printer")
    logged = len(connector.activities(PERSONAL))
    assert (await app.teams(message(connector.service_url, "ticket time HD-1 15m"))).status == 201
    await wait_until(lambda: len(connector.activities(PERSONAL)) > logged, what="the answer")
    assert "Logged 15m" in json.dumps(connector.activities(PERSONAL)[logged:])
    async with app.services.sessions() as session:
        row = (await session.execute(select(Ticket))).scalars().one()
    assert (row.technician_id, row.technician_name) == (TECH_ID, "Tom Tech")
    shown = len(connector.activities(PERSONAL))
    assert (await app.teams(message(connector.service_url, "ticket show HD-1"))).status == 201
    await wait_until(lambda: len(connector.activities(PERSONAL)) > shown, what="the card")
    card = json.dumps(card_of(connector.activities(PERSONAL)[-1]))
    facts = card[card.index('"Technician"') :][:200]
    assert "Tom Tech" in facts and "Ana" not in facts, facts


async def test_a_technician_acting_from_the_other_platform_takes_it_by_their_id_there_if_any(
    make_app: Any, slack_api: FakeSlack, connector: FakeConnector
) -> None:
    """Tom (on Slack and Teams) logs time on Sam's Slack ticket from Teams: the ticket is his
    by his Slack id. Tia, only on Teams, takes another: by name and e-mail, with no id (a Teams
    id on a Slack ticket would make a mention of nobody); nothing mentions a wrong id."""
    tom = {**PEOPLE[2], "teams_id": TECH_ID}
    tia = {
        "email": "tia@example.com",
        "name": "Tia Tech",
        "teams_id": "29:1tia",
        "technician": True,
    }
    config = {**CONFIG, "teams": {"service_url": connector.service_url, "tenant_id": TENANT}}
    people = [PEOPLE[0], PEOPLE[1], tom, tia]
    app: AppHarness = await make_app(slack=slack_api, config=config, people=people)
    url = connector.service_url
    for number, user, chat in (("HD-1", TECH_ID, PERSONAL), ("HD-2", "29:1tia", "a:1tia-chat")):
        await open_own_ticket(app, slack_api)
        said = len(connector.activities(chat))
        logged = message(url, f"ticket time {number} 15m", user=user, conversation=chat)
        assert (await app.teams(logged)).status == 201
        await wait_until(lambda: len(connector.activities(chat)) > said, what="the answer")  # noqa: B023
    async with app.services.sessions() as session:
        rows = (await session.execute(select(Ticket).order_by(Ticket.id))).scalars().all()
    assert [(r.technician_id, r.technician_name, r.technician_email) for r in rows] == [
        ("UTECH", "Tom Tech", "tom@example.com"),
        ("", "Tia Tech", "tia@example.com"),
    ]
    shown = await (await app.slash("show HD-2")).json()
    fact = technician_fact(shown["blocks"])
    assert "Tia Tech" in fact and "<@" not in fact, fact
