"""SPEC "Tickets": every change is an event in an append-only audit trail (who, when, what,
which channel). One table of the changes a ticket can undergo through the public surfaces,
walked in order on one app per platform and database: each change must add exactly one event
of its kind, carrying the actor (platform and id), the time and the conversation it was made
in. Events are read from the database, as the other tests do."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from storage.models import TicketEvent
from tests.fakes.botframework import FakeConnector
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, wait_until
from tests.http.conftest_teams import PERSONAL, TECH_ID, activity, card_of, submit_action
from tests.http.test_escalation import COMPLETE, states
from tests.http.working_support import SlackFlow, TeamsFlow, teams_config

ANA_TEAMS, BO_TEAMS, CY_TEAMS = "29:1ana", "29:1bo", "29:1cy"
PEOPLE = [
    {
        "email": "tom@example.com",
        "name": "Tom Tech",
        "slack_id": "UTECH",
        "teams_id": TECH_ID,
        "technician": True,
    },
    {
        "email": "ana@example.com",
        "name": "Ana User",
        "slack_id": "UANA",
        "teams_id": ANA_TEAMS,
        "manager": "bo@example.com",
    },
    {"email": "bo@example.com", "name": "Bo Boss", "slack_id": "UBO", "teams_id": BO_TEAMS},
    {
        "email": "cy@example.com",
        "name": "Cy User",
        "slack_id": "UCY",
        "teams_id": CY_TEAMS,
        "manager": "bo@example.com",
    },
]
CONFIG: dict[str, Any] = {
    "csat": {"delay": "0s"},
    "queues": {"networking": {"slack": "C0NETWORK"}, "security": {"slack": "C0SECURITY"}},
    "escalation": {"queues": {"printer": "networking"}},
}
NOTE = "Cleared the print queue on PRN-0042 and reinstalled the HP UPD 7.1 driver"


@dataclass(frozen=True)
class Change:
    """One change, who makes it where, and the event it must leave."""

    what: str
    kind: str
    actor: str
    channel: str | Callable[[], str]  # a callable: a chat the bot opens as it goes
    do: Callable[[], Awaitable[Any]]
    tickets: int = 1  # how many tickets it changes (a P1 closes the reports filed under it)


async def last_event_id(app: AppHarness) -> int:
    async with app.services.sessions() as session:
        return int(await session.scalar(select(func.max(TicketEvent.id))) or 0)


async def events_since(app: AppHarness, after: int, kind: str = "") -> list[TicketEvent]:
    """Events written after event `after` (of `kind` when given), oldest first."""
    query = select(TicketEvent).where(TicketEvent.id > after).order_by(TicketEvent.id)
    if kind:
        query = query.where(TicketEvent.kind == kind)
    async with app.services.sessions() as session:
        return list((await session.execute(query)).scalars())


async def audited(app: AppHarness, platform: str, changes: list[Change]) -> None:
    """Make each change in turn; each adds one event of its kind, with who, when and where."""
    for change in changes:
        after = await last_event_id(app)
        started = datetime.now(UTC) - timedelta(seconds=1)
        await change.do()

        async def written(change: Change = change, after: int = after) -> bool:
            return await events_since(app, after, change.kind) != []

        await wait_until(written, what=f"the {change.kind} event of {change.what}")
        found = await events_since(app, after, change.kind)
        assert len(found) == change.tickets, (change.what, [(e.kind, e.data) for e in found])
        assert len({e.ticket_id for e in found}) == change.tickets, change.what
        where = change.channel() if callable(change.channel) else change.channel
        for event in found:
            who = (event.actor_platform, event.actor_id, event.channel)
            assert who == (platform, change.actor, where), (change.what, who)
            assert event.ticket_id is not None, change.what
            at = event.at if event.at.tzinfo else event.at.replace(tzinfo=UTC)
            assert started <= at <= datetime.now(UTC) + timedelta(seconds=1), (change.what, at)
        # What else the change recorded: someone's doing is recorded with where it was done.
        done = [e for e in await events_since(app, after) if e.actor_id]
        assert [e.kind for e in done if not e.channel] == [], change.what


# -- Slack -----------------------------------------------------------------------------------


async def test_every_change_made_on_slack_is_one_audited_event(
    make_app: Any, slack_api: FakeSlack
) -> None:
    app: AppHarness = await make_app(slack=slack_api, config=CONFIG, people=PEOPLE)
    s = SlackFlow(app, slack_api)

    def with_button(user: str, words: str, title: str) -> list[dict[str, Any]]:
        """DMs to `user` that say `words` and carry a button titled `title`."""
        return [p for p in s.dms(user, words) if f'"text": "{title}"' in json.dumps(p["blocks"])]

    async def manager_presses(number: str, title: str) -> None:
        await wait_until(lambda: with_button("UBO", number, title), what=f"Bo's {number}")
        await s.press(with_button("UBO", number, title)[-1], title, "UBO")

    async def ana_presses(words: str, title: str) -> None:
        await wait_until(lambda: with_button("UANA", words, title), what=f"{words!r} to Ana")
        await s.press(with_button("UANA", words, title)[-1], title, "UANA")

    async def escalate() -> None:
        view = await s.modal("escalate HD-1")
        answer = await s.submit(view, states(COMPLETE), "UTECH")
        assert "errors" not in (answer or {}), answer

    async def attach() -> None:
        thread = (s.card("HD-1") or {})["ts"]
        shot = {"id": "F0SHOT", "name": "shot.png", "permalink": "https://x.slack.com/f/shot.png"}
        body = s.event(user="UANA", thread=thread, files=[shot], text="what I see")
        assert (await app.slack(body, content_type="application/json")).status == 200

    async def raise_p1() -> None:
        await s.ticket(requester="UANA", summary="VPN down")  # HD-2
        await s.command("p1 HD-2")

    async def link() -> None:
        await s.ticket(requester="UANA", summary="VPN down for me too")  # HD-3
        await s.command("link HD-3 HD-2")

    async def close_p1() -> None:
        await s.close("HD-2", "Restarted the VPN concentrator VPN-01 and failed over", "KB0012345")

    async def verify_other() -> None:
        await s.ticket(requester="UCY", summary="Locked out")  # HD-4
        await s.command("verify HD-4")

    def tom(text: str) -> Callable[[], Awaitable[str]]:
        return lambda: s.command(text)

    def bo(number: str, title: str) -> Callable[[], Awaitable[None]]:
        return lambda: manager_presses(number, title)

    def ana(words: str, title: str) -> Callable[[], Awaitable[None]]:
        return lambda: ana_presses(words, title)

    await audited(
        app,
        "slack",
        [
            Change("intake", "ticket.opened", "UTECH", "C0HELP", s.ticket),
            Change("time", "time.logged", "UTECH", "C0HELP", tom("time HD-1 20m")),
            Change("verify", "identity.requested", "UTECH", "C0HELP", tom("verify HD-1")),
            Change("approve", "identity.approved", "UBO", "DUBO", bo("HD-1", "Approve")),
            Change("escalate", "ticket.escalated", "UTECH", "C0HELP", escalate),
            Change("confirm", "fix.asked", "UTECH", "C0HELP", tom("confirm HD-1")),
            Change("works now", "fix.confirmed", "UANA", "DUANA", ana("Works now", "Works now")),
            Change("attachment", "attachment.added", "UANA", "C0HELP", attach),
            Change("close", "ticket.closed", "UTECH", "C0HELP", lambda: s.close("HD-1", NOTE)),
            Change("csat answer", "csat.answered", "UANA", "DUANA", ana("HD-1", "4")),
            Change("p1 raise", "ticket.priority_raised", "UTECH", "C0HELP", raise_p1),
            Change("link", "ticket.filed", "UTECH", "C0HELP", link),
            Change("close the P1", "ticket.closed", "UTECH", "C0HELP", close_p1, tickets=2),
            Change("verify again", "identity.requested", "UTECH", "C0HELP", verify_other),
            Change("deny", "identity.denied", "UBO", "DUBO", bo("HD-4", "Deny")),
        ],
    )


# -- Teams -----------------------------------------------------------------------------------


async def test_every_change_made_on_teams_is_one_audited_event(
    make_app: Any, connector: FakeConnector
) -> None:
    config = {**CONFIG, **teams_config(connector)}
    app: AppHarness = await make_app(config=config, people=PEOPLE)
    t = TeamsFlow(app, connector)

    async def submit_close() -> None:
        posted = len(connector.activities(PERSONAL))
        await t.say("ticket close HD-1")
        await wait_until(lambda: len(connector.activities(PERSONAL)) > posted, what="the form")
        form = card_of(connector.activities(PERSONAL)[-1])
        values = {
            "resolution_note": NOTE,
            "resolution_category": "Incident",
            "time_spent": "30m",
            "kb_article": "",
        }
        data = {**submit_action(form)["fallback"]["data"], **values}
        assert (await app.teams(activity(connector.service_url, value=data))).status == 201

    async def manager_presses(title: str) -> None:
        chat, card = await t.dm_card(BO_TEAMS, "Approve")
        await t.invoke(t.invoke_body(card, title, BO_TEAMS, chat))

    async def ana_rates(title: str, **typed: str) -> None:
        chat, card = await t.dm_card(ANA_TEAMS, "Add a comment")
        await t.invoke(t.invoke_body(card, title, ANA_TEAMS, chat, **typed))

    def chat(user: str) -> Callable[[], str]:
        return lambda: t.chat_with(user) or "(no chat)"

    def tom(text: str) -> Callable[[], Awaitable[int]]:
        return lambda: t.say(f"ticket {text}")

    def bo(title: str) -> Callable[[], Awaitable[None]]:
        return lambda: manager_presses(title)

    def ana(title: str, **typed: str) -> Callable[[], Awaitable[None]]:
        return lambda: ana_rates(title, **typed)

    bo_chat, ana_chat = chat(BO_TEAMS), chat(ANA_TEAMS)
    changes = [
        Change("intake", "ticket.opened", TECH_ID, PERSONAL, t.ticket),
        Change("time", "time.logged", TECH_ID, PERSONAL, tom("time HD-1 20m")),
        Change("verify", "identity.requested", TECH_ID, PERSONAL, tom("verify HD-1")),
        Change("approve", "identity.approved", BO_TEAMS, bo_chat, bo("Approve")),
        Change("p1 raise", "ticket.priority_raised", TECH_ID, PERSONAL, tom("p1 HD-1")),
        Change("close", "ticket.closed", TECH_ID, PERSONAL, submit_close),
        Change("csat answer", "csat.answered", ANA_TEAMS, ana_chat, ana("4")),
        Change(
            "csat comment",
            "csat.commented",
            ANA_TEAMS,
            ana_chat,
            ana("Add a comment", comment="Fast"),
        ),
    ]
    await audited(app, "teams", changes)
