"""The SLA clock over HTTP on a clock the test sets (the app's and the worker's): first response,
warnings and breaches in the ticket's thread and channel, each once, none once the clock has
stopped, and targets that move with a raise to P1."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from storage.models import OutboxMessage, Ticket, TicketEvent
from tests.fakes.botframework import FakeConnector
from tests.fakes.slack_api import FakeSlack
from tests.harness import (
    AppHarness,
    TestClock,
    block_actions,
    is_sla_alarm,
    slack_button,
    view_submission,
    wait_until,
)
from tests.http.conftest_teams import (
    ANA_ID,
    CHANNEL,
    TECH_ID,
    card_of,
    form_values,
    submit_action,
)
from tests.http.conftest_teams import PEOPLE as TEAMS_PEOPLE
from tests.http.conftest_teams import message as teams_message
from tests.http.working_support import SlackFlow

PEOPLE = [
    {"email": "tom@example.com", "name": "Tom Tech", "slack_id": "UTECH", "technician": True},
    {"email": "ana@example.com", "name": "Ana Lopez", "slack_id": "UANA"},
    {"email": "bob@example.com", "name": "Bob Tech", "slack_id": "UBOB", "technician": True},
]
CONFIG: dict[str, Any] = {
    "sla": {"warn_before": "15m"},
    # No tier nudges: when the clock jumps hours ahead they would come due with the alarms
    # and share the help channel's pacing with them (nudges: test_working_scope.py).
    "tier1_scope": [],
    "queues": {"networking": {"slack": "C0NETWORK"}},
    "escalation": {"queues": {"network": "networking"}},
}
QUIET = 1.2  # a few polls of the worker (every 0.5 s): long enough for anything due to go
_views = itertools.count(1)


def sla_clock() -> tuple[TestClock, datetime]:
    """Tomorrow 09:00 UTC: ahead of the real time, on whole minutes."""
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    start = tomorrow.replace(hour=9, minute=0, second=0, microsecond=0)
    return TestClock(start), start


def minute(moment: datetime) -> datetime:
    """To the minute: the clock runs on for the few milliseconds a request takes."""
    return moment.replace(second=0, microsecond=0)


def near(moment: datetime | None, expected: datetime) -> bool:
    return moment is not None and abs(moment - expected) < timedelta(seconds=3)


async def start(make_app: Any, slack: FakeSlack, clock: TestClock) -> AppHarness:
    app: AppHarness = await make_app(slack=slack, config=CONFIG, people=PEOPLE, clock=clock)
    return app


def _text(value: str) -> dict[str, Any]:
    return {"type": "plain_text_input", "value": value}


def _choice(value: str) -> dict[str, Any]:
    return {"type": "static_select", "selected_option": {"value": value}}


async def open_ticket(
    app: AppHarness,
    fake: FakeSlack,
    *,
    priority: str = "P2",
    category: str = "printer",
    summary: str = "Printer jams on floor 3",
    client: str = "",
) -> Ticket:
    """A ticket through the intake modal; returns it once its card is in C0HELP."""
    opened = len(fake.views_opened())
    await app.slash("new")
    await fake.wait_for_method("views.open", count=opened + 1)
    view = fake.views_opened()[-1]["view"]
    values = {
        "requester": {"type": "users_select", "selected_user": "UANA"},
        "summary": _text(summary),
        "error_text": _text("Error 0x8007001F: paper path"),
        "doing": _text("Printing the Q3 report"),
        "reproducible": _choice("yes"),
        "users_affected": {"type": "number_input", "value": "1"},
        "priority": _choice(priority),
        "category": _choice(category),
        "asset": _text("PRN-0042"),
        "client": _text(client),
    }
    response = await app.interactive(view_submission(view, values, view_id=f"VS{next(_views)}"))
    assert response.status == 200
    async with app.services.sessions() as session:
        number = (
            await session.execute(select(Ticket.number).order_by(Ticket.id.desc()).limit(1))
        ).scalar_one()

    def carded() -> bool:
        return any(number in json.dumps(p) and not p.get("thread_ts") for p in fake.posts())

    await wait_until(carded, what=f"the card of {number}")
    return await ticket(app, number)


async def ticket(app: AppHarness, number: str) -> Ticket:
    async def posted() -> Ticket | None:
        async with app.services.sessions() as session:
            found = (
                await session.execute(select(Ticket).where(Ticket.number == number))
            ).scalar_one()
        return found if found.source_thread else None

    found: list[Ticket] = []

    async def has_thread() -> bool:
        row = await posted()
        if row is not None:
            found.append(row)
        return row is not None

    await wait_until(has_thread, what=f"{number}'s thread")
    return found[-1]


def said(fake: FakeSlack, words: str, *, number: str) -> list[dict[str, Any]]:
    """Posts that contain `words` and name the ticket."""
    return [p for p in fake.posts() if words in json.dumps(p) and number in json.dumps(p)]


def in_thread(fake: FakeSlack, row: Ticket, words: str) -> list[dict[str, Any]]:
    return [
        p
        for p in said(fake, words, number=row.number)
        if p.get("channel") == row.source_channel and p.get("thread_ts") == row.source_thread
    ]


def in_channel(fake: FakeSlack, row: Ticket, words: str) -> list[dict[str, Any]]:
    return [
        p
        for p in said(fake, words, number=row.number)
        if p.get("channel") == row.source_channel and not p.get("thread_ts")
    ]


async def arrives(check: Any, what: str) -> float:
    """Wait (at most 5 s) for `check`; returns how long it took after the clock moved."""
    moved = time.monotonic()
    await wait_until(check, timeout=5, what=what)
    return time.monotonic() - moved


async def show(app: AppHarness, number: str) -> str:
    body = await (await app.slash(f"show {number}")).json()
    return json.dumps(body)


async def sla_rows(app: AppHarness, number: str) -> list[OutboxMessage]:
    async with app.services.sessions() as session:
        rows = (await session.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars()
        return [r for r in rows if is_sla_alarm(r) and r.payload.get("ticket") == number]


# -- warnings, breaches, once -------------------------------------------------------------------


async def test_untouched_p2_is_warned_once_then_breached_once_in_thread_and_channel(
    make_app, slack_api: FakeSlack
):
    clock, t0 = sla_clock()
    app = await start(make_app, slack_api, clock)
    row = await open_ticket(app, slack_api)
    assert near(row.created_at, t0)
    opened = t0
    assert (row.respond_by - row.created_at, row.resolve_by - row.created_at) == (
        timedelta(hours=2),
        timedelta(days=1),
    )
    assert "Respond: pending (due 11:00 UTC)" in await show(app, row.number)

    # Until respond-by minus warn_before nothing is said; at it, one warning in the thread.
    clock.set(opened + timedelta(hours=1, minutes=44, seconds=50))
    await asyncio.sleep(QUIET)
    assert not said(slack_api, "SLA", number=row.number)
    clock.set(opened + timedelta(hours=1, minutes=45))
    took = await arrives(lambda: in_thread(slack_api, row, "SLA warning"), "the respond warning")
    assert took < 5
    [warning] = in_thread(slack_api, row, "SLA warning")
    assert "first response by 11:00 UTC (15m left)" in json.dumps(warning)
    clock.set(opened + timedelta(hours=1, minutes=59, seconds=50))
    await asyncio.sleep(QUIET)
    assert len(said(slack_api, "SLA", number=row.number)) == 1  # once, however long it waits

    # At respond-by: the breach, in the thread and as a new message in the channel.
    clock.set(opened + timedelta(hours=2))
    await arrives(
        lambda: (
            in_thread(slack_api, row, "SLA breach") and in_channel(slack_api, row, "SLA breach")
        ),
        "the respond breach in the thread and the channel",
    )
    await asyncio.sleep(QUIET)
    [thread_post] = in_thread(slack_api, row, "SLA breach")
    [channel_post] = in_channel(slack_api, row, "SLA breach")
    assert "missed its respond target (due 11:00 UTC)" in json.dumps(thread_post)
    assert "respond target missed" in json.dumps(channel_post)
    assert "Printer jams on floor 3" in json.dumps(channel_post)
    stored = await ticket(app, row.number)
    assert (stored.respond_met, stored.resolve_met) == (False, None)
    shown = await show(app, row.number)
    assert "Respond: missed (due 11:00 UTC)" in shown
    assert f"Resolve: pending (due {(opened + timedelta(1)):%Y-%m-%d} 09:00 UTC)" in shown
    # The card in the channel says so too.
    await wait_until(
        lambda: any(
            "Respond: missed" in json.dumps(u) for u in slack_api.method_calls("chat.update")
        ),
        what="the refreshed card",
    )

    # A restart of the clock's reader changes nothing: everything was said once.
    await asyncio.sleep(QUIET)
    assert len(said(slack_api, "SLA", number=row.number)) == 3
    rows = await sla_rows(app, row.number)
    sent = [r for r in rows if r.payload["sla"]["target"] == "respond"]
    assert sorted((r.payload["sla"]["stage"], r.status, r.attempts) for r in sent) == [
        ("breach", "delivered", 1),
        ("breach", "delivered", 1),
        ("warning", "delivered", 1),
    ]


async def test_a_first_response_at_any_earlier_moment_cancels_the_respond_warning(
    make_app, slack_api: FakeSlack
):
    clock, t0 = sla_clock()
    app = await start(make_app, slack_api, clock)
    opened = t0
    rows = [await open_ticket(app, slack_api, category="network") for _ in range(4)]
    # HD-1 at once with `time`; HD-2 an hour in with the card's Close button; HD-3 a second
    # before its warning with `escalate`; HD-4 is left alone.
    clock.set(opened + timedelta(seconds=1))
    await app.slash(f"time {rows[0].number} 10m checked the queue")
    clock.set(opened + timedelta(hours=1))
    card = next(p for p in slack_api.posts() if rows[1].number in json.dumps(p) and "blocks" in p)
    click = block_actions(
        slack_button(card, "Close"),
        user="UTECH",
        channel="C0HELP",
        n=1,
        response_url=slack_api.response_url_for("close"),
        message_ts=str(rows[1].source_thread),
    )
    assert (await app.interactive(click)).status == 200
    clock.set(opened + timedelta(hours=1, minutes=44, seconds=50))
    await app.slash(f"escalate {rows[2].number}")

    async def responded() -> bool:
        return all([(await ticket(app, r.number)).first_response_at for r in rows[:3]])

    await wait_until(responded, what="three first responses")
    for row, at, by in zip(
        rows[:3],
        (timedelta(seconds=1), timedelta(hours=1), timedelta(hours=1, minutes=44, seconds=50)),
        ("time", "close", "escalate"),
        strict=True,
    ):
        stored = await ticket(app, row.number)
        assert near(stored.first_response_at, opened + at)
        assert (stored.first_response_by, stored.first_response_channel) == (
            "UTECH",
            "slack:C0HELP",
        )
        assert stored.first_response_seconds is not None
        assert abs(stored.first_response_seconds - at.total_seconds()) <= 3
        assert stored.respond_met is True
        async with app.services.sessions() as session:
            events = (
                (
                    await session.execute(
                        select(TicketEvent).where(
                            TicketEvent.ticket_id == stored.id,
                            TicketEvent.kind == "sla.first_response",
                        )
                    )
                )
                .scalars()
                .all()
            )
        assert [e.data["action"] for e in events] == [by]  # recorded once

    # Past the warning and past respond-by: only the ticket nobody touched hears about it.
    clock.set(opened + timedelta(hours=2, minutes=1))
    untouched = rows[3]
    await arrives(
        lambda: (
            in_thread(slack_api, untouched, "SLA breach")
            and in_channel(slack_api, untouched, "SLA breach")
        ),
        "the untouched ticket's breach",
    )
    await asyncio.sleep(QUIET)
    for row in rows[:3]:
        assert not said(slack_api, "SLA", number=row.number), row.number
        assert "Respond: met (due 11:00 UTC)" in await show(app, row.number)
        statuses = {(r.payload["sla"]["target"], r.status) for r in await sla_rows(app, row.number)}
        assert ("respond", "cancelled") in statuses and ("respond", "delivered") not in statuses
    # Its warning came due with the breach: too late to warn, the breach says it instead.
    assert not in_thread(slack_api, untouched, "SLA warning")
    assert "Respond: missed" in await show(app, untouched.number)


async def test_a_breach_at_resolve_by_is_said_once_in_the_thread_and_once_in_the_channel(
    make_app, slack_api: FakeSlack
):
    clock, t0 = sla_clock()
    app = await start(make_app, slack_api, clock)
    opened = t0
    row = await open_ticket(app, slack_api, priority="P2")
    await app.slash(f"time {row.number} 20m")  # responded: only the resolve clock runs
    clock.set(opened + timedelta(hours=23, minutes=45))
    await arrives(lambda: in_thread(slack_api, row, "SLA warning"), "resolve warning")
    [warning] = in_thread(slack_api, row, "SLA warning")
    assert "be resolved by 09:00 UTC (15m left)" in json.dumps(warning)
    clock.set(opened + timedelta(days=1))
    took = await arrives(
        lambda: (
            in_thread(slack_api, row, "SLA breach") and in_channel(slack_api, row, "SLA breach")
        ),
        "the resolve breach",
    )
    assert took < 5
    clock.set(opened + timedelta(days=2))
    await asyncio.sleep(QUIET)
    [thread_post] = in_thread(slack_api, row, "SLA breach")
    [channel_post] = in_channel(slack_api, row, "SLA breach")
    assert "missed its resolve target" in json.dumps(thread_post)
    assert f"SLA breach on {row.number} (P2): resolve target missed" in json.dumps(channel_post)
    assert len(said(slack_api, "SLA", number=row.number)) == 3
    stored = await ticket(app, row.number)
    assert (stored.respond_met, stored.resolve_met) == (True, False)
    # Closing later keeps the miss; it stops nothing that is left (nothing is).
    assert "Resolve: missed" in await show(app, row.number)


# -- who hears it: the technician is mentioned in the thread ------------------------------------


async def test_slack_the_warning_and_breach_in_the_thread_mention_the_technician(
    make_app, slack_api: FakeSlack
):
    """A thread reply notifies only the people following the thread, and Tom, who opened the
    ticket with `/ticket`, is not following the bot's card: without a mention of him the
    warning and the breach in its thread reached nobody. They start with `<@UTECH>` (Slack
    shows his name and notifies him), words unchanged; the breach's new message in the
    channel names him as before (the one in the thread notified him)."""
    clock, t0 = sla_clock()
    app = await start(make_app, slack_api, clock)
    row = await open_ticket(app, slack_api)
    clock.set(t0 + timedelta(hours=1, minutes=45))
    await arrives(lambda: in_thread(slack_api, row, "SLA warning"), "the respond warning")
    [warning] = in_thread(slack_api, row, "SLA warning")
    words = f"SLA warning: {row.number} (P2) is due to get its first response by 11:00 UTC"
    assert warning["text"].startswith(f"<@UTECH> {words}"), warning["text"]
    first, said_block = warning["blocks"][:2]
    assert first["text"]["text"] == "<@UTECH>" and first["text"]["type"] == "mrkdwn"
    assert said_block["text"]["text"].startswith(words)

    clock.set(t0 + timedelta(hours=2))
    await arrives(
        lambda: (
            in_thread(slack_api, row, "SLA breach") and in_channel(slack_api, row, "SLA breach")
        ),
        "the respond breach",
    )
    [thread_post] = in_thread(slack_api, row, "SLA breach")
    assert thread_post["text"].startswith(f"<@UTECH> SLA breach: {row.number} (P2) missed")
    [channel_post] = in_channel(slack_api, row, "SLA breach")
    assert channel_post["text"].startswith(f"SLA breach on {row.number} (P2)")
    assert "<@" not in json.dumps(channel_post)


async def test_slack_a_ticket_whose_thread_is_the_technicians_dm_mentions_nobody(
    make_app, slack_api: FakeSlack
):
    """A card the channel refused is DMed to Tom, and the DM is the ticket's thread: a DM
    notifies him anyway, so the warning there carries no mention."""
    clock, t0 = sla_clock()
    app = await start(make_app, slack_api, clock)
    slack_api.refusing["C0HELP"] = "restricted_action"
    row = await open_ticket(app, slack_api)
    assert row.source_channel == "DUTECH"
    clock.set(t0 + timedelta(hours=1, minutes=45))
    await arrives(lambda: in_thread(slack_api, row, "SLA warning"), "the respond warning")
    [warning] = in_thread(slack_api, row, "SLA warning")
    assert warning["text"].startswith(f"SLA warning: {row.number} (P2)"), warning["text"]
    assert "<@" not in json.dumps(warning)


async def test_closing_stops_both_clocks(make_app, slack_api: FakeSlack):
    clock, t0 = sla_clock()
    app = await start(make_app, slack_api, clock)
    opened = t0
    row = await open_ticket(app, slack_api, priority="P3")
    clock.set(opened + timedelta(hours=1))
    opened_views = len(slack_api.views_opened())
    await app.slash(f"close {row.number}")
    await slack_api.wait_for_method("views.open", count=opened_views + 1)
    view = slack_api.views_opened()[-1]["view"]
    values = {
        "resolution_note": _text("Cleared the jam on PRN-0042 and replaced the pickup roller"),
        "resolution_category": _choice("Incident"),
        "time_spent": _text("30m"),
        "kb_article": _text(""),
    }
    await app.interactive(view_submission(view, values, view_id="VCLOSE"))

    async def closed() -> bool:
        return (await ticket(app, row.number)).status == "closed"

    await wait_until(closed, what="the closure")
    stored = await ticket(app, row.number)
    assert (stored.respond_met, stored.resolve_met) == (True, True)
    # Opening the closure form was the first response, submitting it the resolution.
    assert abs((stored.first_response_seconds or 0) - (stored.resolution_seconds or 0)) <= 2
    assert abs((stored.first_response_seconds or 0) - 3600) <= 3
    assert stored.time_minutes == 30
    clock.set(opened + timedelta(days=4))
    await asyncio.sleep(QUIET)
    assert not said(slack_api, "SLA", number=row.number)
    assert {r.status for r in await sla_rows(app, row.number)} == {"cancelled"}


async def test_sla_clients_match_the_typed_client_ignoring_case_and_surrounding_spaces(
    make_app, slack_api: FakeSlack
):
    """`sla.clients` names a client as typed, give or take case and surrounding spaces, on
    either side: a key written with a space around it ("Acme Corp ", quoted in YAML) gave the
    card 'standard tier, from sla.clients' and the standard targets."""
    clock, _ = sla_clock()
    config = {**CONFIG, "sla": {"warn_before": "15m", "clients": {" Acme Corp ": "gold"}}}
    app = await make_app(slack=slack_api, config=config, people=PEOPLE, clock=clock)
    row = await open_ticket(app, slack_api, priority="P2", client="  ACME corp")
    assert (row.tier, row.tier_source) == ("gold", "config")
    assert (row.respond_by - row.created_at, row.resolve_by - row.created_at) == (
        timedelta(hours=1),
        timedelta(hours=8),
    )
    shown = await show(app, row.number)
    assert "gold tier, from sla.clients" in shown and "Respond: pending (due 10:00 UTC)" in shown
    other = await open_ticket(app, slack_api, priority="P2", client="Acme Corporation")
    assert (other.tier, other.respond_by - other.created_at) == ("standard", timedelta(hours=2))


async def test_sla_clients_and_report_match_a_client_in_any_case_of_every_letter(
    make_app, slack_api: FakeSlack
):
    """Case-insensitive is Unicode's caseless match (str.casefold), not lower(): German has
    no capital ß, so `Straße AG` in capitals is `STRASSE AG`, which lower() leaves as
    `strasse ag` and never equal to `straße ag`. A client typed in capitals got the default
    tier (and the PSA was asked instead), and `report straße ag` did not count the ticket."""
    from tests.http.test_report import slack_facts

    clock, _ = sla_clock()
    config = {**CONFIG, "sla": {"warn_before": "15m", "clients": {"Straße AG": "gold"}}}
    app = await make_app(slack=slack_api, config=config, people=PEOPLE, clock=clock)
    row = await open_ticket(app, slack_api, priority="P2", client="STRASSE AG")
    assert (row.tier, row.tier_source) == ("gold", "config")
    assert row.respond_by - row.created_at == timedelta(hours=1)
    assert "gold tier, from sla.clients" in await show(app, row.number)
    for typed in ("straße ag", "STRASSE AG"):
        facts = slack_facts(await (await app.slash(f"report {typed}")).json())
        assert facts["Opened"] == "1", (typed, facts)


# -- raising to P1 ------------------------------------------------------------------------------


async def test_raising_to_p1_moves_both_targets_and_their_warnings(make_app, slack_api: FakeSlack):
    clock, t0 = sla_clock()
    app = await start(make_app, slack_api, clock)
    opened = t0
    row = await open_ticket(app, slack_api, priority="P3")
    assert (minute(row.respond_by), minute(row.resolve_by)) == (
        opened + timedelta(hours=8),
        opened + timedelta(days=3),
    )
    before = {
        (r.payload["sla"]["target"], minute(r.due_at)) for r in await sla_rows(app, row.number)
    }
    assert before == {
        ("respond", opened + timedelta(hours=7, minutes=45)),
        ("resolve", opened + timedelta(days=3) - timedelta(minutes=15)),
    }

    clock.set(opened + timedelta(minutes=10))
    raised = json.dumps(await (await app.slash(f"p1 {row.number}")).json())
    assert f"{row.number} is now P1" in raised
    stored = await ticket(app, row.number)
    # The P1 targets of the standard tier, counted from creation (not from the raise).
    assert (stored.respond_by - stored.created_at, stored.resolve_by - stored.created_at) == (
        timedelta(minutes=30),
        timedelta(hours=4),
    )
    assert stored.respond_met is True  # `p1` was its first response, 10 minutes in
    rows = await sla_rows(app, row.number)
    assert {(r.payload["sla"]["target"], minute(r.due_at), r.status) for r in rows} == {
        ("respond", opened + timedelta(hours=7, minutes=45), "cancelled"),
        ("resolve", opened + timedelta(days=3) - timedelta(minutes=15), "cancelled"),
        ("resolve", opened + timedelta(hours=3, minutes=45), "pending"),
    }
    clock.set(opened + timedelta(hours=3, minutes=45))
    await arrives(lambda: in_thread(slack_api, row, "SLA warning"), "moved warning")
    assert "be resolved by 13:00 UTC (15m left)" in json.dumps(
        in_thread(slack_api, row, "SLA warning")
    )
    clock.set(opened + timedelta(hours=4))
    await arrives(lambda: in_channel(slack_api, row, "SLA breach"), "moved breach")
    clock.set(opened + timedelta(days=3))
    await asyncio.sleep(QUIET)
    assert len(said(slack_api, "SLA warning", number=row.number)) == 1
    assert len(said(slack_api, "SLA breach", number=row.number)) == 2


async def test_a_late_raise_counts_from_creation_and_breaches_at_once(
    make_app, slack_api: FakeSlack
):
    clock, t0 = sla_clock()
    app = await start(make_app, slack_api, clock)
    opened = t0
    row = await open_ticket(app, slack_api, priority="P4")
    clock.set(opened + timedelta(hours=5))
    await app.slash(f"p1 {row.number}")
    # Both P1 targets (30m, 4h from creation) are already behind it: missed, said at once.
    await arrives(
        lambda: (
            len(in_thread(slack_api, row, "SLA breach")) == 1
            and len(in_channel(slack_api, row, "SLA breach")) == 1
        ),
        "the resolve breach",
    )
    await asyncio.sleep(QUIET)
    assert not said(slack_api, "SLA warning", number=row.number)
    stored = await ticket(app, row.number)
    assert (stored.respond_met, stored.resolve_met) == (False, False)
    shown = await show(app, row.number)
    assert "Respond: missed (due 09:30 UTC)" in shown and "Resolve: missed (due 13:00 UTC)" in shown


# -- Teams: the thread is the card's reply chain -----------------------------------------------


async def test_teams_warning_replies_to_the_card_and_the_breach_is_a_new_message(
    make_app, connector: FakeConnector
):
    clock, t0 = sla_clock()
    config = {**CONFIG, "sla": {"warn_before": "10m"}}
    app: AppHarness = await make_app(config=config, people=TEAMS_PEOPLE, clock=clock)
    opened = t0
    url = connector.service_url
    form = card_of(
        (await say(app, connector, teams_message(url, "ticket new", conversation=CHANNEL)))[-1]
    )
    data = {**submit_action(form)["fallback"]["data"], **form_values(client="", priority="P1")}
    await say(app, connector, teams_message(url, "", conversation=CHANNEL, value=data))

    async def carded() -> Ticket | None:
        async with app.services.sessions() as session:
            found = (await session.execute(select(Ticket))).scalar_one_or_none()
        return found if found is not None and found.card_message else None

    await wait_until(carded, what="the ticket card in the channel")
    row = await carded()
    assert row is not None and row.respond_by - row.created_at == timedelta(minutes=30)
    clock.set(opened + timedelta(minutes=20))

    def posted(words: str) -> list[dict[str, Any]]:
        return [
            a
            for a in connector.activities(CHANNEL)
            if words in json.dumps(a) and row.number in json.dumps(a)
        ]

    await arrives(lambda: posted("SLA warning"), "the warning")
    [warning] = posted("SLA warning")
    assert warning["_reply_to_id"] == row.card_message
    clock.set(opened + timedelta(minutes=30))
    await arrives(lambda: len(posted("SLA breach")) == 2, "the breach")
    await asyncio.sleep(QUIET)
    thread_post, channel_post = sorted(
        posted("SLA breach"), key=lambda a: a["_reply_to_id"] is None
    )
    assert thread_post["_reply_to_id"] == row.card_message
    assert channel_post["_reply_to_id"] is None and "respond target missed" in json.dumps(
        channel_post
    )
    assert len(posted("SLA")) == 3


async def test_teams_a_breach_is_a_new_post_in_the_channel_not_in_the_cards_reply_chain(
    make_app, connector: FakeConnector
):
    """Teams sends a channel post to the bot with its reply chain in the conversation id
    (`19:…;messageid=<root>`), and the ticket card answers in that chain. The breach's
    message in the ticket channel is a new post in the channel, which Teams makes of a send
    to the channel's own id: sent to the chain's id it was one more reply in the chain."""
    clock, t0 = sla_clock()
    config = {**CONFIG, "sla": {"warn_before": "10m"}}
    app: AppHarness = await make_app(config=config, people=TEAMS_PEOPLE, clock=clock)
    url = connector.service_url
    root = "1700000000777"
    chain = f"{CHANNEL};messageid={root}"
    asked = teams_message(url, "<at>Helpdesk</at> ticket new", conversation=chain, activity_id=root)
    form = card_of((await say(app, connector, asked))[-1])
    data = {**submit_action(form)["fallback"]["data"], **form_values(client="", priority="P1")}
    await say(app, connector, teams_message(url, "", conversation=chain, value=data))
    await wait_until(lambda: _carded(app), what="the ticket card in the chain")
    async with app.services.sessions() as session:
        row = (await session.execute(select(Ticket))).scalar_one()
    assert row.card_channel == chain

    def posted(words: str) -> list[dict[str, Any]]:
        return [
            a
            for a in connector.activities()
            if words in json.dumps(a) and row.number in json.dumps(a)
        ]

    clock.set(t0 + timedelta(minutes=20))
    await arrives(lambda: posted("SLA warning"), "the warning")
    clock.set(t0 + timedelta(minutes=30))
    await arrives(lambda: len(posted("SLA breach")) == 2, "the breach")
    await asyncio.sleep(QUIET)
    [warning] = posted("SLA warning")
    assert (warning["_conversation_id"], warning["_reply_to_id"]) == (chain, row.card_message)
    thread_post, channel_post = sorted(
        posted("SLA breach"), key=lambda a: a["_reply_to_id"] is None
    )
    assert (thread_post["_conversation_id"], thread_post["_reply_to_id"]) == (
        chain,
        row.card_message,
    )
    assert (channel_post["_conversation_id"], channel_post["_reply_to_id"]) == (CHANNEL, None)
    assert "respond target missed" in json.dumps(channel_post)


async def test_teams_a_technicians_reply_in_the_cards_chain_is_the_first_response(
    make_app, connector: FakeConnector
):
    clock, t0 = sla_clock()
    app: AppHarness = await make_app(config=CONFIG, people=TEAMS_PEOPLE, clock=clock)
    url = connector.service_url
    form = card_of(
        (await say(app, connector, teams_message(url, "ticket new", conversation=CHANNEL)))[-1]
    )
    data = {**submit_action(form)["fallback"]["data"], **form_values(client="", priority="P2")}
    await say(app, connector, teams_message(url, "", conversation=CHANNEL, value=data))

    async def ticket() -> Ticket:
        async with app.services.sessions() as session:
            return (await session.execute(select(Ticket))).scalar_one()

    await wait_until(lambda: _carded(app), what="the ticket card in the channel")
    row = await ticket()
    chain = f"{CHANNEL};messageid={row.card_message}"
    mention = "<at>Helpdesk</at> "
    # The requester's reply, and a technician's message elsewhere naming it: not a response.
    clock.set(t0 + timedelta(minutes=5))
    [hint] = await say(app, connector, teams_message(url, mention + "any news?",
                                                     conversation=chain, user=ANA_ID))  # fmt: skip
    assert "ticket help" in hint["text"]
    await say(app, connector, teams_message(url, f"{row.number} on it"))  # the 1:1 chat
    assert (await ticket()).first_response_at is None
    # The technician's reply in the card's chain.
    clock.set(t0 + timedelta(minutes=7))
    [noted] = await say(app, connector, teams_message(url, mention + "Looking at it now",
                                                      conversation=chain))  # fmt: skip
    assert noted["text"] == f"Noted: your first response to {row.number}."
    answered = await ticket()
    assert near(answered.first_response_at, t0 + timedelta(minutes=7))
    assert answered.first_response_by == TECH_ID and answered.respond_met is True
    assert answered.first_response_channel == f"teams:{chain}"
    # Once: a second reply changes nothing and is not noted again.
    clock.set(t0 + timedelta(minutes=9))
    [again] = await say(app, connector, teams_message(url, mention + "Still on it",
                                                      conversation=chain))  # fmt: skip
    assert "ticket help" in again["text"]
    assert (await ticket()).first_response_at == answered.first_response_at


async def test_slack_a_technicians_reply_in_the_cards_thread_is_the_first_response(
    make_app, slack_api: FakeSlack
):
    clock, t0 = sla_clock()
    app = await start(make_app, slack_api, clock)
    row = await open_ticket(app, slack_api)
    flow = SlackFlow(app, slack_api)
    front = app.services.slack
    assert front is not None

    async def reply(user: str, text: str, **where: Any) -> None:
        where.setdefault("thread", row.source_thread)
        body = flow.event(user=user, text=text, **where)
        assert (await app.slack(body, content_type="application/json")).status == 200
        await front.drain()

    # The requester's reply in the thread; the technician's in a thread of another channel
    # naming the ticket, and at the top of the ticket's channel: none is a first response.
    clock.set(t0 + timedelta(minutes=5))
    await reply("UANA", "any news?")
    await reply("UTECH", f"{row.number} is next", thread="1600000000.000100", channel="C0OTHER")
    await reply("UTECH", "Back in five", thread=None)
    assert (await ticket(app, row.number)).first_response_at is None
    assert "First response" not in await show(app, row.number)
    # The technician's plain reply in the card's thread.
    clock.set(t0 + timedelta(minutes=7))
    await reply("UTECH", "Looking at it now")
    answered = await ticket(app, row.number)
    assert near(answered.first_response_at, t0 + timedelta(minutes=7))
    assert (answered.first_response_by, answered.first_response_channel) == (
        "UTECH",
        "slack:C0HELP",
    )
    assert answered.respond_met is True
    shown = await show(app, row.number)
    assert "Respond: met (due 11:00 UTC)" in shown
    assert "First response: " in shown and "via slack (C0HELP)" in shown
    # Once: a second reply changes nothing.
    clock.set(t0 + timedelta(minutes=9))
    await reply("UTECH", "Still on it")
    assert (await ticket(app, row.number)).first_response_at == answered.first_response_at
    async with app.services.sessions() as session:
        events = (
            await session.execute(
                select(TicketEvent).where(
                    TicketEvent.ticket_id == row.id, TicketEvent.kind == "sla.first_response"
                )
            )
        ).scalars()
        assert [(e.actor_id, e.channel, e.data["action"]) for e in events] == [
            ("UTECH", "C0HELP", "message")
        ]
    # The respond warning went with it: nothing is said at 10:45.
    clock.set(t0 + timedelta(hours=1, minutes=46))
    await asyncio.sleep(QUIET)
    assert not said(slack_api, "SLA", number=row.number)


async def test_slack_the_requesters_own_reply_is_no_first_response_when_all_are_technicians(
    make_app, slack_api: FakeSlack
):
    """With no technician listed in the directory everyone counts as one (SPEC), the
    requester too: her 'any news?' in the card's thread is still no response to her ticket.
    Anyone else's is."""
    clock, t0 = sla_clock()
    nobody = [{**p, "technician": False} for p in PEOPLE]
    app = await make_app(slack=slack_api, config=CONFIG, people=nobody, clock=clock)
    row = await open_ticket(app, slack_api)  # Ana's ticket, opened by Tom
    flow = SlackFlow(app, slack_api)
    front = app.services.slack
    assert front is not None

    async def reply(user: str, text: str) -> None:
        body = flow.event(user=user, text=text, thread=row.source_thread)
        assert (await app.slack(body, content_type="application/json")).status == 200
        await front.drain()

    clock.set(t0 + timedelta(minutes=5))
    await reply("UANA", "any news?")
    assert (await ticket(app, row.number)).first_response_at is None
    assert "Respond: pending" in await show(app, row.number)
    clock.set(t0 + timedelta(minutes=7))
    await reply("UBOB", "On it")
    answered = await ticket(app, row.number)
    assert near(answered.first_response_at, t0 + timedelta(minutes=7))
    assert answered.first_response_by == "UBOB"


async def _carded(app: AppHarness) -> bool:
    async with app.services.sessions() as session:
        found = (await session.execute(select(Ticket))).scalar_one_or_none()
    return found is not None and bool(found.card_message)


async def say(
    app: AppHarness, connector: FakeConnector, activity: dict[str, Any]
) -> list[dict[str, Any]]:
    before = len(connector.activities())
    response = await app.teams(activity)
    assert response.status < 300
    await wait_until(lambda: len(connector.activities()) > before, what="the bot's answer")
    return connector.activities()[before:]


async def test_a_restart_neither_loses_nor_repeats_a_warning_or_breach(
    make_app, slack_api: FakeSlack
):
    clock, t0 = sla_clock()
    first = await start(make_app, slack_api, clock)
    row = await open_ticket(first, slack_api)
    clock.set(t0 + timedelta(hours=1, minutes=45))
    await arrives(lambda: in_thread(slack_api, row, "SLA warning"), "the warning")
    await first.stop()  # down over respond-by: the breach is due meanwhile
    clock.set(t0 + timedelta(hours=2, minutes=30))
    second = await start(make_app, slack_api, clock)  # the same database
    await arrives(
        lambda: (
            in_thread(slack_api, row, "SLA breach") and in_channel(slack_api, row, "SLA breach")
        ),
        "the breach, after the restart",
    )
    await asyncio.sleep(QUIET)
    assert len(said(slack_api, "SLA warning", number=row.number)) == 1
    assert len(said(slack_api, "SLA breach", number=row.number)) == 2
    assert "Respond: missed" in await show(second, row.number)


async def test_a_warning_due_at_opening_waits_for_the_card_and_goes_in_its_thread(
    make_app, slack_api: FakeSlack
):
    # warn_before as long as the P2 respond target: its warning is due as the ticket opens.
    clock, _ = sla_clock()
    config = {**CONFIG, "sla": {"warn_before": "2h"}}
    app = await make_app(slack=slack_api, config=config, people=PEOPLE, clock=clock)
    row = await open_ticket(app, slack_api, priority="P2")
    await arrives(lambda: said(slack_api, "SLA warning", number=row.number), "the warning")
    await asyncio.sleep(QUIET)
    [warning] = said(slack_api, "SLA warning", number=row.number)
    assert warning.get("thread_ts") == row.source_thread, warning


async def test_a_warning_longer_than_the_target_goes_as_the_ticket_opens(
    make_app, slack_api: FakeSlack
):
    """warn_before longer than a target (1h before a P1's 30-minute respond target): the
    warning's time is before the ticket existed, so it goes as the ticket opens, as it does
    when warn_before is exactly the target; it was never sent, only the breach."""
    clock, t0 = sla_clock()
    config = {**CONFIG, "sla": {"warn_before": "1h"}}
    app = await make_app(slack=slack_api, config=config, people=PEOPLE, clock=clock)
    row = await open_ticket(app, slack_api, priority="P1")
    await arrives(lambda: in_thread(slack_api, row, "SLA warning"), "the respond warning")
    await asyncio.sleep(QUIET)
    [warning] = in_thread(slack_api, row, "SLA warning")
    assert "first response by 09:30 UTC (30m left)" in json.dumps(warning)
    # The resolve target (4h) is warned of at its time, 3h in; the respond breach at 30m.
    clock.set(t0 + timedelta(minutes=30))
    await arrives(lambda: in_channel(slack_api, row, "SLA breach"), "the respond breach")
    clock.set(t0 + timedelta(hours=3))
    await arrives(lambda: len(in_thread(slack_api, row, "SLA warning")) == 2, "the resolve warning")
    assert "be resolved by 13:00 UTC (1h left)" in json.dumps(
        in_thread(slack_api, row, "SLA warning")[-1]
    )


async def test_teams_a_warning_due_at_opening_replies_to_the_card(
    make_app, connector: FakeConnector
):
    clock, _ = sla_clock()
    config = {**CONFIG, "sla": {"warn_before": "30m"}}  # the P1 respond target: due at once
    app: AppHarness = await make_app(config=config, people=TEAMS_PEOPLE, clock=clock)
    url = connector.service_url
    form = card_of(
        (await say(app, connector, teams_message(url, "ticket new", conversation=CHANNEL)))[-1]
    )
    data = {**submit_action(form)["fallback"]["data"], **form_values(client="", priority="P1")}
    await say(app, connector, teams_message(url, "", conversation=CHANNEL, value=data))

    def posted() -> list[dict[str, Any]]:
        return [a for a in connector.activities(CHANNEL) if "SLA warning" in json.dumps(a)]

    await arrives(posted, "the warning")
    async with app.services.sessions() as session:
        row = (await session.execute(select(Ticket))).scalar_one()
    [warning] = posted()
    assert row.card_message and warning["_reply_to_id"] == row.card_message


async def test_slack_a_first_response_by_another_technician_shows_them_as_a_mention(
    make_app, slack_api: FakeSlack
):
    """Bob answers in the card's thread of Tom's ticket: the card names him (a mention, which
    Slack shows as his name), not his raw id."""
    clock, t0 = sla_clock()
    app = await start(make_app, slack_api, clock)
    row = await open_ticket(app, slack_api)
    flow = SlackFlow(app, slack_api)
    front = app.services.slack
    assert front is not None
    clock.set(t0 + timedelta(minutes=3))
    body = flow.event(user="UBOB", text="On it", thread=row.source_thread)
    assert (await app.slack(body, content_type="application/json")).status == 200
    await front.drain()
    assert (await ticket(app, row.number)).first_response_by == "UBOB"
    shown = await show(app, row.number)
    assert "by <@UBOB> via slack (C0HELP)" in shown, shown


async def test_show_labels_each_delivery_in_plain_words(make_app, slack_api: FakeSlack):
    """`show`'s Deliveries said "ticket card / notice (sla-warning)" for both warnings, with
    nothing saying which target, and "message update (ticket-card)" for a refreshed card."""
    clock, t0 = sla_clock()
    app = await start(make_app, slack_api, clock)
    row = await open_ticket(app, slack_api)
    shown = await show(app, row.number)
    for label in ("Ticket card", "SLA warning (respond by)", "SLA warning (resolve by)"):
        assert f"*{label}:*" in shown, label

    clock.set(t0 + timedelta(hours=2))  # the respond breach, and the card refreshed for it
    await arrives(lambda: in_channel(slack_api, row, "SLA breach"), "the respond breach")
    await wait_until(
        lambda: any(
            "Respond: missed" in json.dumps(u) for u in slack_api.method_calls("chat.update")
        ),
        what="the refreshed card",
    )
    shown = await show(app, row.number)
    for label in (
        "Ticket card refreshed",
        "SLA breach (respond by)",
        "SLA breach (respond by, in the channel)",
    ):
        assert f"*{label}:*" in shown, label
    for internal in ("ticket card / notice", "(sla-", "message update", "ticket-card"):
        assert internal not in shown, internal
