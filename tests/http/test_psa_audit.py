"""SPEC "System of record (PSA / ITSM)": the statements the other PSA tests leave open."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from storage.models import PsaState
from tests.fakes.botframework import FakeConnector
from tests.fakes.psa_autotask import FakeAutotask
from tests.fakes.psa_common import PsaFake
from tests.fakes.psa_connectwise import FakeConnectWise
from tests.fakes.psa_servicenow import FakeServiceNow
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, block_actions, wait_until
from tests.harness import slack_button as button
from tests.http.conftest_teams import TECH_ID, form_values, submit_action
from tests.http.psa_support import (
    CONTRACT,
    FAKES,
    NAMES,
    PEOPLE,
    SYSTEMS,
    all_synced,
    app_config,
    close,
    escalate,
    open_ticket,
    posts_to,
    remember_secrets,
    seed,
    show,
    start_app,
    ticket,
)
from tests.http.test_closure_teams import card_text, say

CONTRACT_SYSTEMS = ["servicenow", "connectwise", "autotask"]  # Freshservice has no contracts


@pytest.fixture(params=SYSTEMS)
async def psa_fake(request: pytest.FixtureRequest) -> AsyncIterator[PsaFake]:
    fake = FAKES[request.param]()
    seed(fake)
    async with fake:
        yield fake


def _silver_default() -> dict[str, Any]:
    """Two tiers, neither called standard: the default is `silver`."""
    silver = {
        p: {"respond": r, "resolve": s}
        for p, r, s in (
            ("P1", "1h", "6h"),
            ("P2", "3h", "1d"),
            ("P3", "6h", "4d"),
            ("P4", "2d", "7d"),
        )
    }
    gold = {
        p: {"respond": r, "resolve": s}
        for p, r, s in (
            ("P1", "15m", "2h"),
            ("P2", "1h", "8h"),
            ("P3", "4h", "2d"),
            ("P4", "8h", "3d"),
        )
    }
    return {"default_tier": "silver", "tiers": {"silver": silver, "gold": gold}}


@pytest.mark.parametrize("system", CONTRACT_SYSTEMS)
async def test_a_lapsed_contract_named_in_psa_tiers_gives_no_tier_the_default_does(
    make_app, slack_api: FakeSlack, system: str
):
    # Acme's lapsed contract (ConnectWise agreement cancelled, Autotask status 0, ServiceNow
    # expired) is the one psa.tiers names: only an active contract counts, so the ticket
    # gets sla.default_tier (here silver, not standard), and the card and `show` say so.
    fake = FAKES[system]()
    seed(fake)
    async with fake:
        app = await start_app(
            make_app,
            slack_api,
            fake,
            psa=fake.config(tiers={"Bronze (lapsed)": "gold"}),
            sla=_silver_default(),
        )
        await open_ticket(app, slack_api, client="acme", priority="P3")
        await wait_until(lambda: all_synced(app), what="the ticket in the PSA")
        stored = await ticket(app)
        assert (stored.tier, stored.tier_source) == ("silver", "psa-none"), (
            stored.tier,
            stored.tier_source,
            stored.tier_contract,
        )
        assert stored.respond_by - stored.created_at == timedelta(hours=6)  # silver P3
        assert stored.resolve_by - stored.created_at == timedelta(days=4)
        name = NAMES[system]
        assert "silver tier, the default" in await show(app)

        await wait_until(lambda: _card_posted(app), what="the card's message stored")
        card = (await ticket(app)).card_message

        def card_says_default() -> bool:  # the card, refreshed in place, says so too
            return any(
                u["ts"] == card and "silver tier, the default" in json.dumps(u)
                for u in slack_api.method_calls("chat.update")
            )

        await wait_until(card_says_default, what="the card refreshed with the default tier")
        assert name in (await show(app)).split("silver tier, the default", 1)[1][:80]


@pytest.mark.parametrize("system", SYSTEMS)
async def test_time_entries_of_a_technician_the_psa_does_not_know_go_as_the_integration_user(
    make_app, slack_api: FakeSlack, system: str
):
    # Tom is not a user / agent / member / resource of the PSA: his `time` still reaches the
    # ticket, logged as the integration user (Autotask: the API user's own resource).
    fake = FAKES[system]()
    company = fake.add_company("Acme", [(CONTRACT, True)])
    if isinstance(fake, FakeServiceNow):
        fake.add_person("ana@example.com")
    elif isinstance(fake, FakeAutotask):
        fake.add_contact(company, "ana@example.com")
    async with fake:
        await _time_as_the_integration_user(make_app, slack_api, fake)


async def _time_as_the_integration_user(make_app, slack_api: FakeSlack, psa_fake: PsaFake) -> None:
    app = await start_app(make_app, slack_api, psa_fake)
    await open_ticket(app, slack_api)
    logged = await (await app.slash("time HD-1 25m checked the tunnel logs")).json()
    assert "Logged 25m" in json.dumps(logged)
    await wait_until(lambda: all_synced(app), timeout=10, what="the time entry delivered")
    done = psa_fake.only()
    assert done.time_minutes == [25]
    assert done.time_by != ["tom@example.com"]
    if isinstance(psa_fake, FakeAutotask):
        assert done.time_by == [psa_fake.env()["PSA_USERNAME"]]
    else:
        assert done.time_by == [""]  # no user named: the PSA books it to the API's own user
    assert f"{NAMES[psa_fake.SYSTEM]}: pending" not in await show(app)


async def test_an_identity_denied_by_the_manager_is_a_note_in_the_psa(
    make_app, slack_api: FakeSlack, psa_fake: PsaFake
):
    app = await start_app(make_app, slack_api, psa_fake)
    await open_ticket(app, slack_api)
    answer = await (await app.slash("verify HD-1")).json()
    assert "Bo Boss" in json.dumps(answer), answer
    await wait_until(lambda: posts_to(slack_api, "DU0BO"), what="the manager's DM")
    dm = posts_to(slack_api, "DU0BO")[-1]
    payload = block_actions(
        button(dm, "Deny"),
        user="U0BO",
        channel="DU0BO",
        n=71,
        response_url=slack_api.response_url_for("deny71"),
        message_ts=dm.get("ts", "1.1"),
    )
    assert (await app.interactive(payload)).status == 200
    await slack_api.wait_for("/response/deny71")
    await wait_until(lambda: all_synced(app), timeout=10, what="the identity note delivered")
    await wait_until(
        lambda: any("Identity DENIED" in n for n in psa_fake.only().notes), what="the note"
    )
    note = next(n for n in psa_fake.only().notes if "Identity DENIED" in n)
    assert "Bo Boss" in note and "over Slack" in note and "impersonation" in note, note


async def test_a_503_with_retry_after_as_an_http_date_holds_every_call_until_then(
    make_app, slack_api: FakeSlack
):
    # SPEC: after a 429 or 503 with Retry-After (seconds or an HTTP date) no call goes to
    # that PSA before it has passed. A plain 503 (no Retry-After) is retried within 5 s.
    fake = FakeConnectWise()
    seed(fake)
    tickets = "/v2025_1/apis/3.0/service/tickets"
    async with fake:
        fake.fail(tickets, 503, times=1)
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api)
        await wait_until(lambda: len(fake.calls(tickets)) >= 2, timeout=6, what="the retry")
        first, second = fake.calls(tickets)[:2]
        assert first.status == 503 and second.at - first.at <= 5.0
        # PSA_CLIENT_ID travels as the clientId header (SPEC: ConnectWise clientId).
        assert {c.headers.get("clientId") for c in fake.calls(tickets)} == {
            fake.env()["PSA_CLIENT_ID"]
        }
        await wait_until(lambda: all_synced(app), what="HD-1 in ConnectWise")

        # An HTTP date 3-4 s ahead (whole seconds), as a monotonic time the fake records in.
        until = math.ceil(time.time()) + 3
        date = format_datetime(datetime.fromtimestamp(until, UTC), usegmt=True)
        due = time.monotonic() + (until - time.time())
        fake.fail(tickets, 503, headers={"Retry-After": date})
        await app.slash("time HD-1 10m first look")  # not a ticket call: goes before
        await open_ticket(app, slack_api, summary="Printer offline")
        await wait_until(
            lambda: any(c.status == 503 for c in fake.calls(tickets)[2:]), what="the 503"
        )
        answered = next(c for c in fake.calls(tickets)[2:] if c.status == 503).at
        # The pause every process keeps to is the date the PSA named (to the second).
        await wait_until(lambda: _paused_until(app), what="the pause recorded")
        paused = await _paused_until(app)
        assert paused is not None and abs(paused.timestamp() - until) < 1.0, (paused, until)
        await open_ticket(app, slack_api, summary="Mail slow")
        await wait_until(lambda: len(fake.records()) == 3, timeout=15, what="all three tickets")
        later = [c for c in fake.recorded if c.at > answered]
        assert later and min(c.at for c in later) >= due - 0.05, min(c.at for c in later) - due
        assert min(c.at for c in later) - due <= 3.0  # and right after it


async def _card_posted(app: AppHarness) -> bool:
    return (await ticket(app)).card_message is not None


async def _paused_until(app: AppHarness) -> datetime | None:
    async with app.services.sessions() as session:
        found = await session.get(PsaState, "connectwise")
    if found is None or found.blocked_until is None:
        return None
    stamp = found.blocked_until
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


async def test_teams_intake_goes_on_in_a_psa_outage_and_ticket_show_says_pending_then_the_id(
    make_app, connector: FakeConnector
):
    # The outage and `show` statements on Teams: the ticket opens in chat while ConnectWise
    # answers 503, `ticket show` names the PSA with `pending`; once synced, the id and no
    # pending line.
    fake = FakeConnectWise()
    seed(fake)
    tickets = "/v2025_1/apis/3.0/service/tickets"
    async with fake:
        fake.fail(tickets, 503, times=2)
        remember_secrets(fake)
        people = [
            *PEOPLE,
            {
                "email": "tech@example.com",
                "name": "Tom Tech",
                "teams_id": TECH_ID,
                "technician": True,
            },
        ]
        people[1] = {**people[1], "teams_id": "29:1ana"}
        config = app_config(fake, teams={"service_url": connector.service_url})
        app: AppHarness = await make_app(config=config, people=people, env=fake.env())
        form = await say(app, connector, text="ticket new VPN")
        values = form_values(client="acme", category="network")
        answer = await say(
            app, connector, value={**submit_action(form)["fallback"]["data"], **values}
        )
        assert "HD-1" in card_text(answer)
        shown = card_text(await say(app, connector, text="ticket show HD-1"))
        assert "ConnectWise: pending" in shown, shown
        await wait_until(lambda: fake.records(), timeout=15, what="the ConnectWise ticket")
        await wait_until(lambda: all_synced(app), what="the create recorded")
        number = fake.only().number
        shown = card_text(await say(app, connector, text="ticket show HD-1"))
        assert number in shown and "ConnectWise: pending" not in shown, shown


async def test_a_403_is_refused_credentials_told_once_per_outage_and_again_in_the_next(
    make_app, slack_api: FakeSlack
):
    # SPEC: a PSA answering 401 or 403 is not retried in a loop; the technician is told once
    # per outage, the writes stay pending, intake goes on. A later outage is a new one.
    fake = FakeConnectWise()
    seed(fake)
    tickets = "/v2025_1/apis/3.0/service/tickets"

    def told() -> list[dict[str, Any]]:
        return [
            p
            for p in posts_to(slack_api, "C0HELP")
            if "refuses the bot's credentials" in json.dumps(p)
        ]

    async with fake:
        fake.fail(tickets, 403, times=1)
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api)
        await wait_until(told, what="the technician told")
        await open_ticket(app, slack_api, summary="Printer offline")
        await asyncio.sleep(1.5)  # a loop would have called again by now
        assert [c.status for c in fake.calls(tickets)] == [403]
        assert len(told()) == 1
        assert "ConnectWise: pending" in await show(app, "HD-2")

        await app.stop()  # fixed and restarted: the kept writes go, once
        again = await start_app(make_app, slack_api, fake)
        await wait_until(lambda: len(fake.records()) == 2, timeout=10, what="both tickets")
        await wait_until(lambda: all_synced(again), what="both creates recorded")
        assert len(told()) == 1

        fake.fail(tickets, 403, times=1)  # the next outage
        await open_ticket(again, slack_api, summary="Mail slow")
        await wait_until(lambda: len(told()) == 2, what="the technician told of the new outage")
        assert "HD-3" in json.dumps(told()[-1])
        assert "ConnectWise: pending" in await show(again, "HD-3")


async def test_a_ticket_opened_at_p1_is_made_at_the_psas_top_priority(
    make_app, slack_api: FakeSlack, psa_fake: PsaFake
):
    # Not only a later `p1`: a ticket opened as P1 is at the top priority in the PSA at once
    # (ServiceNow 1, Freshservice 4 Urgent, ConnectWise the first priority, Autotask Critical).
    app = await start_app(make_app, slack_api, psa_fake)
    await open_ticket(app, slack_api, priority="P1", summary="Whole office offline")
    await wait_until(lambda: all_synced(app), timeout=10, what="the P1 ticket in the PSA")
    assert psa_fake.only().top_priority, psa_fake.only().raw
    await open_ticket(app, slack_api, priority="P2", summary="Mail slow")
    await wait_until(lambda: len(psa_fake.records()) == 2, what="the P2 ticket")
    await wait_until(lambda: all_synced(app), what="both delivered")
    by_title = {t.title: t for t in psa_fake.records()}
    assert not by_title["Mail slow"].top_priority


async def test_servicenow_requester_who_is_no_user_there_is_named_in_the_description(
    make_app, slack_api: FakeSlack
):
    # By e-mail, else named in the description: Ana has no sys_user in this instance.
    fake = FakeServiceNow()
    fake.add_company("Acme", [(CONTRACT, True)])
    fake.add_person("tom@example.com")
    async with fake:
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api)
        await wait_until(lambda: all_synced(app), what="the incident")
        created = fake.only()
        assert created.contact == "" and "caller_id" not in json.dumps(created.raw)
        assert "Requester: Ana Lopez <ana@example.com>" in created.description
        assert "ServiceNow: pending" not in await show(app)


TIME_PATHS = {
    "servicenow": "/api/now/table/task_time_worked",
    "freshservice": "/api/v2/tickets/*/time_entries",
    "connectwise": "/v2025_1/apis/3.0/time/entries",
    "autotask": "/zone5/atservicesrest/v1.0/TimeEntries",
}


async def test_a_write_retried_after_503s_is_not_overtaken_by_the_ones_after_it(
    make_app, slack_api: FakeSlack, psa_fake: PsaFake
):
    # "In order per ticket": the time entry meets two 503s; the escalation note and the
    # closure done meanwhile in chat wait for it, and reach the PSA after it.
    app = await start_app(make_app, slack_api, psa_fake)
    await open_ticket(app, slack_api)
    await wait_until(lambda: all_synced(app), what="the ticket in the PSA")
    psa_fake.fail(TIME_PATHS[psa_fake.SYSTEM], 503, times=2)
    logged = await (await app.slash("time HD-1 40m replaced the switch port")).json()
    assert "Logged 40m" in json.dumps(logged)
    await escalate(app, slack_api, "HD-1")
    await close(app, slack_api, "HD-1", spent="")
    await wait_until(lambda: all_synced(app), timeout=20, what="every write delivered")
    assert [c.status for c in psa_fake.calls(TIME_PATHS[psa_fake.SYSTEM])][:2] == [503, 503]
    whats = [w for _, w, _ in psa_fake.writes]
    assert whats[0] == "create" and whats[-1] == "close", whats
    assert whats.index("time") < whats.index("note"), whats
    assert psa_fake.only().time_minutes == [40]


PASTED_ERROR = (
    "Unhandled exception: System.UnauthorizedAccessException <0x80070005>\n"
    "    at Vpn.Tunnel.Open(String host)  in C:\\src\\Tunnel.cs:line 42\n"
    '        inner: "Access is denied" & 50% retries left\tcode=809'
)


async def test_the_exact_error_text_pasted_with_its_indentation_reads_the_same_in_the_psa(
    make_app, slack_api: FakeSlack, psa_fake: PsaFake
):
    # "the exact error text in its description": a pasted stack trace keeps its lines, its
    # indentation and doubled spaces, its markup-like characters, as the PSA shows it
    # (Freshservice shows HTML, where runs of spaces collapse unless written to stay).
    app = await start_app(make_app, slack_api, psa_fake)
    await open_ticket(app, slack_api, error_text=PASTED_ERROR)
    await wait_until(lambda: all_synced(app), what="the ticket in the PSA")
    assert PASTED_ERROR.replace("\t", "    ") in psa_fake.only().description.replace(
        "\t", "    "
    ), psa_fake.only().description
