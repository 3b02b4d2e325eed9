"""SPEC "SLA clock", statement by statement, where the neighbouring tests left a platform or a
case out: `show` and `mine` are no first response on either platform, a card button is one,
Teams' `show` and refreshed card say met / missed / pending, and the report's UTC days are
inclusive at both ends (the default: the 90 days ending today)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from storage.models import Ticket
from tests.fakes.botframework import FakeConnector
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, TestClock, block_actions, slack_button, wait_until
from tests.http.conftest_teams import (
    CHANNEL,
    PERSONAL,
    TECH_ID,
    card_of,
    form_values,
    submit_action,
)
from tests.http.conftest_teams import PEOPLE as TEAMS_PEOPLE
from tests.http.conftest_teams import message as teams_message
from tests.http.test_report import slack_facts
from tests.http.test_sla_clock import (
    CONFIG,
    PEOPLE,
    QUIET,
    arrives,
    in_channel,
    in_thread,
    near,
    open_ticket,
    said,
    say,
    show,
    sla_clock,
    start,
    ticket,
)
from tests.http.working_support import PEOPLE as WORKING_PEOPLE
from tests.http.working_support import SlackFlow, TeamsFlow, teams_config, ticket_row

# -- Slack: `show` and `mine` are no first response; a card button is one ----------------------


async def test_slack_show_and_mine_are_no_first_response_and_the_breach_still_comes(
    make_app, slack_api: FakeSlack
):
    clock, t0 = sla_clock()
    app = await start(make_app, slack_api, clock)
    row = await open_ticket(app, slack_api)
    clock.set(t0 + timedelta(minutes=5))
    assert "Respond: pending (due 11:00 UTC)" in await show(app, row.number)
    mine = json.dumps(await (await app.slash("mine")).json())
    assert row.number in mine
    # `show` and `mine` from the ticket's own channel too, by the technician who opened it.
    await app.slash(f"show {row.number}", channel=str(row.source_channel))
    await app.slash("mine", channel=str(row.source_channel))
    stored = await ticket(app, row.number)
    assert (stored.first_response_at, stored.respond_met) == (None, None)

    clock.set(t0 + timedelta(hours=2))
    await arrives(
        lambda: (
            in_thread(slack_api, row, "SLA breach") and in_channel(slack_api, row, "SLA breach")
        ),
        "the respond breach despite show and mine",
    )
    assert "Respond: missed (due 11:00 UTC)" in await show(app, row.number)


async def test_slack_the_cards_escalate_button_is_the_first_response(
    make_app, slack_api: FakeSlack
):
    clock, t0 = sla_clock()
    app = await start(make_app, slack_api, clock)
    row = await open_ticket(app, slack_api, category="network")
    clock.set(t0 + timedelta(minutes=12))
    card = next(p for p in slack_api.posts() if row.number in json.dumps(p) and "blocks" in p)
    opened = len(slack_api.views_opened())
    click = block_actions(
        slack_button(card, "Escalate"),
        user="UTECH",
        channel=str(row.source_channel),
        n=7,
        response_url=slack_api.response_url_for("escalate"),
        message_ts=str(row.source_thread),
    )
    assert (await app.interactive(click)).status == 200
    await slack_api.wait_for_method("views.open", count=opened + 1)
    answered = await ticket(app, row.number)
    assert near(answered.first_response_at, t0 + timedelta(minutes=12))
    assert (answered.first_response_by, answered.first_response_channel) == (
        "UTECH",
        f"slack:{row.source_channel}",
    )
    assert answered.respond_met is True
    clock.set(t0 + timedelta(hours=2, minutes=1))
    await asyncio.sleep(QUIET)
    assert not said(slack_api, "SLA", number=row.number)
    assert "Respond: met (due 11:00 UTC)" in await show(app, row.number)


# -- Teams: the same, and `show` / the refreshed card say met, missed, pending -------------------


async def teams_ticket(app: AppHarness, connector: FakeConnector) -> Ticket:
    """A P2 ticket through the intake card in CHANNEL; returns it once its card is posted."""
    url = connector.service_url
    form = card_of(
        (await say(app, connector, teams_message(url, "ticket new", conversation=CHANNEL)))[-1]
    )
    data = {**submit_action(form)["fallback"]["data"], **form_values(client="", priority="P2")}
    async with app.services.sessions() as session:
        before = len((await session.execute(select(Ticket.id))).all())
    await say(app, connector, teams_message(url, "", conversation=CHANNEL, value=data))
    found: list[Ticket] = []

    async def carded() -> bool:
        async with app.services.sessions() as session:
            rows = (await session.execute(select(Ticket).order_by(Ticket.id))).scalars().all()
        if len(rows) > before and rows[-1].card_message:
            found.append(rows[-1])
            return True
        return False

    await wait_until(carded, what="the ticket card in the channel")
    return found[-1]


async def teams_row(app: AppHarness, number: str) -> Ticket:
    async with app.services.sessions() as session:
        return (await session.execute(select(Ticket).where(Ticket.number == number))).scalar_one()


async def test_teams_show_and_mine_are_no_first_response_time_is_and_show_says_so(
    make_app, connector: FakeConnector
):
    clock, t0 = sla_clock()
    app: AppHarness = await make_app(config=CONFIG, people=TEAMS_PEOPLE, clock=clock)
    url = connector.service_url
    worked = await teams_ticket(app, connector)
    untouched = await teams_ticket(app, connector)
    chain = f"{CHANNEL};messageid={worked.card_message}"
    clock.set(t0 + timedelta(minutes=5))

    async def ask(text: str, conversation: str = PERSONAL) -> str:
        return json.dumps(
            await say(app, connector, teams_message(url, text, conversation=conversation))
        )

    shown = await ask(f"ticket show {worked.number}")
    assert "Respond: pending (due 11:00 UTC)" in shown, shown
    await ask(f"<at>Helpdesk</at> ticket show {worked.number}", conversation=chain)
    assert worked.number in await ask("ticket mine")
    for number in (worked.number, untouched.number):
        assert (await teams_row(app, number)).first_response_at is None, number

    clock.set(t0 + timedelta(minutes=10))
    await ask(f"ticket time {worked.number} 10m checked the spooler", conversation=CHANNEL)
    answered = await teams_row(app, worked.number)
    assert near(answered.first_response_at, t0 + timedelta(minutes=10))
    assert (answered.first_response_by, answered.first_response_channel) == (
        TECH_ID,
        f"teams:{CHANNEL}",
    )
    assert answered.respond_met is True
    assert "Respond: met (due 11:00 UTC)" in await ask(f"ticket show {worked.number}")

    def posted(number: str, words: str) -> list[dict[str, Any]]:
        # Not the answers to `ticket show`: their Deliveries name the SLA warnings queued.
        return [
            a
            for a in connector.activities()
            if words in json.dumps(a)
            and number in json.dumps(a)
            and "Deliveries" not in json.dumps(a)
        ]

    clock.set(t0 + timedelta(hours=2))
    await arrives(lambda: len(posted(untouched.number, "SLA breach")) == 2, "the breach")
    await asyncio.sleep(QUIET)
    assert not posted(worked.number, "SLA warning") and not posted(worked.number, "SLA breach")
    shown = await ask(f"ticket show {untouched.number}")
    assert "Respond: missed (due 11:00 UTC)" in shown
    assert f"Resolve: pending (due {t0 + timedelta(days=1):%Y-%m-%d} 09:00 UTC)" in shown
    # The card in the channel is refreshed in place and says so too.
    await wait_until(
        lambda: any(
            u["_activity_id"] == untouched.card_message
            for u in connector.updates()
            if "Respond: missed" in json.dumps(u)
        ),
        what="the refreshed card of the breached ticket",
    )


async def test_teams_the_cards_close_button_is_the_first_response(
    make_app, connector: FakeConnector
):
    clock, t0 = sla_clock()
    app: AppHarness = await make_app(config=CONFIG, people=TEAMS_PEOPLE, clock=clock)
    row = await teams_ticket(app, connector)
    card = next(
        card_of(a)
        for a in connector.activities(CHANNEL)
        if a.get("attachments") and row.number in json.dumps(a) and "Close" in json.dumps(a)
    )
    [close] = [a for a in card["actions"] if a.get("title") == "Close"]
    data = close.get("data") or close["fallback"]["data"]
    clock.set(t0 + timedelta(minutes=20))
    await say(
        app,
        connector,
        teams_message(connector.service_url, "", conversation=CHANNEL, value=data,
                      replyToId=row.card_message),
    )  # fmt: skip
    answered = await teams_row(app, row.number)
    assert near(answered.first_response_at, t0 + timedelta(minutes=20))
    assert answered.first_response_by == TECH_ID and answered.respond_met is True
    assert answered.first_response_channel == f"teams:{CHANNEL}"


# -- the report: UTC days, both inclusive, by creation date -------------------------------------


async def test_report_days_are_utc_and_inclusive_at_both_ends(make_app, slack_api: FakeSlack):
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    first = today - timedelta(days=89)  # the default period's first day
    clock = TestClock(first - timedelta(seconds=1))
    # Targets beyond the test's days: no alarm comes due to queue up before the later cards.
    slow = {p: {"respond": "400d", "resolve": "400d"} for p in ("P1", "P2", "P3", "P4")}
    sla = {"default_tier": "slow", "tiers": {"slow": slow}}
    app = await make_app(slack=slack_api, config={**CONFIG, "sla": sla}, people=PEOPLE, clock=clock)
    numbers = {}
    for name, at in (
        ("before", first - timedelta(seconds=1)),
        ("first", first),
        ("last", first + timedelta(days=10, hours=23, minutes=59, seconds=59)),
        ("after", first + timedelta(days=11)),
    ):
        clock.set(at)
        numbers[name] = (await open_ticket(app, slack_api, summary=f"Ticket {name}")).number
    clock.set(datetime.now(UTC))
    since, until = first.date(), (first + timedelta(days=10)).date()
    facts = slack_facts(await (await app.slash(f"report {since} {until}")).json())
    assert facts["Opened"] == "2", facts
    # The default: the 90 days ending today, the first of them from its midnight.
    facts = slack_facts(await (await app.slash("report")).json())
    assert facts["Opened"] == "3", facts


# -- `confirm` is a first response (Slack and Teams) ----------------------------------------------


async def test_confirm_is_the_first_response_on_slack_and_on_teams(
    make_app, slack_api: FakeSlack, connector: FakeConnector
):
    clock, t0 = sla_clock()
    config = {**CONFIG, **teams_config(connector)}
    app: AppHarness = await make_app(
        slack=slack_api, config=config, people=WORKING_PEOPLE, clock=clock
    )
    on_slack = await SlackFlow(app, slack_api).ticket(priority="P2", client="")
    teams = TeamsFlow(app, connector)
    on_teams = await teams.ticket(requester="ana@example.com", priority="P2", client="")
    clock.set(t0 + timedelta(minutes=3))
    assert "Asked" in await SlackFlow(app, slack_api).command(f"confirm {on_slack}")
    clock.set(t0 + timedelta(minutes=4))
    assert await teams.say(f"ticket confirm {on_teams}") == 201
    await wait_until(lambda: bool(teams.texts(PERSONAL, "Asked Ana User")), what="the answer")
    for number, after, who, where in (
        (on_slack, timedelta(minutes=3), "UTECH", "slack:C0HELP"),
        (on_teams, timedelta(minutes=4), TECH_ID, f"teams:{PERSONAL}"),
    ):
        row = await ticket_row(app, number)
        assert near(row.first_response_at, t0 + after), number
        assert (row.first_response_by, row.first_response_channel) == (who, where)
        assert row.respond_met is True
    clock.set(t0 + timedelta(hours=2, minutes=1))
    await asyncio.sleep(QUIET)
    for words in ("SLA warning", "SLA breach"):
        assert not [a for a in connector.activities() if words in json.dumps(a)], words
    assert not said(slack_api, "SLA", number=on_slack)
