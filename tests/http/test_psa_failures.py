"""When the PSA says no: 503s and a 429 with Retry-After, refused credentials, contracts."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import aiohttp
import pytest

from tests.fakes.botframework import FakeConnector
from tests.fakes.psa_autotask import FakeAutotask
from tests.fakes.psa_connectwise import FakeConnectWise
from tests.fakes.psa_freshservice import FakeFreshservice
from tests.fakes.psa_servicenow import FakeServiceNow
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, wait_until
from tests.http.conftest_teams import (
    PERSONAL,
    TECH_ID,
    activity,
    card_of,
    form_values,
    message,
    submit_action,
)
from tests.http.psa_support import (
    GOOD_NOTE,
    PEOPLE,
    all_synced,
    app_config,
    close,
    escalate,
    open_ticket,
    posts_to,
    psa_rows,
    remember_secrets,
    seed,
    show,
    start_app,
    ticket,
)
from tests.http.test_sla_clock import (
    QUIET,
    arrives,
    in_channel,
    in_thread,
    minute,
    said,
    sla_clock,
    sla_rows,
)
from tests.http.test_sla_clock import ticket as threaded

RETRY_AFTER = 3.0
INCIDENTS = "/api/now/table/incident"
TIME_WORKED = "/api/now/table/task_time_worked"


async def test_503s_then_429_then_created_once_on_time_and_pending_meanwhile(
    make_app, slack_api: FakeSlack
):
    fake = FakeServiceNow()
    seed(fake)
    async with fake:
        fake.fail(INCIDENTS, 503, times=3)
        fake.fail(INCIDENTS, 429, headers={"Retry-After": str(int(RETRY_AFTER))})
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api)

        def throttled() -> list[Any]:
            return [c for c in fake.calls(INCIDENTS) if c.status == 429]

        await wait_until(throttled, timeout=15, what="the 429")
        answered_429 = throttled()[0].at
        assert [c.status for c in fake.calls(INCIDENTS)] == [503, 503, 503, 429]

        async def pause_shown() -> bool:
            # The fake answered the 429; the worker records it a moment later.
            shown = await show(app)
            return "asked to wait until" in shown or "HTTP 429" in shown

        await wait_until(pause_shown, timeout=5, what="show to tell of the pause")
        shown = await show(app)
        assert "ServiceNow: pending (1 not sent yet: ticket)" in shown
        card = json.dumps(posts_to(slack_api, "C0HELP")[0]["blocks"])
        assert "ServiceNow" in card and "pending" in card
        # A ticket opened during the pause waits for it too: nothing reaches the PSA early.
        await open_ticket(app, slack_api, summary="Printer offline")
        await wait_until(lambda: len(fake.records()) == 2, timeout=15, what="both tickets")
        later = [c for c in fake.recorded if c.at > answered_429]
        assert later and min(c.at for c in later) - answered_429 >= RETRY_AFTER - 0.05
        # On time: the first call after the pause comes right after it.
        assert min(c.at for c in later) - answered_429 <= RETRY_AFTER + 3.0
        await wait_until(lambda: all_synced(app), timeout=10)
        creates = [c for c in fake.calls(INCIDENTS) if c.method == "POST"]
        assert [c.status for c in creates] == [503, 503, 503, 429, 201, 201]
        first, second = await ticket(app, "HD-1"), await ticket(app, "HD-2")
        numbers = {t.number for t in fake.records()}
        assert {first.psa_number, second.psa_number} == numbers and len(numbers) == 2
        assert len({t.ref for t in fake.records()}) == 2
        shown = await show(app)
        assert "ServiceNow: pending" not in shown and str(first.psa_number) in shown
        rows = await psa_rows(app)
        assert rows[0].attempts == 5  # 503, 503, 503, 429, 201: no search was needed


async def test_refused_credentials_are_reported_once_and_writes_kept(
    make_app, slack_api: FakeSlack
):
    fake = FakeFreshservice()
    seed(fake)
    async with fake:
        fake.refuse_credentials = True
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api)
        await wait_until(lambda: fake.recorded, what="the first call")

        def told() -> list[dict[str, Any]]:
            return [
                p
                for p in posts_to(slack_api, "C0HELP")
                if "refuses the bot's credentials" in json.dumps(p)
            ]

        await wait_until(told, what="the technician told")
        await open_ticket(app, slack_api, summary="Printer offline")  # intake goes on
        await wait_until(lambda: _attempted(app, 2), what="the second ticket's create claimed")
        await wait_until(lambda: _deferred(app), what="both creates waiting")
        calls = len(fake.recorded)
        assert calls == 1 and fake.recorded[0].status == 401
        assert len(told()) == 1 and "HD-1" in json.dumps(told()[0])
        assert "HTTP 401" in json.dumps(told()[0])
        shown = await show(app, "HD-2")
        assert "Freshservice: pending (1 not sent yet: ticket)" in shown
        assert "refuses the bot's credentials since" in shown
        rows = await psa_rows(app)
        assert [(r.status, r.attempts) for r in rows] == [("pending", 1), ("pending", 0)]

        # The credentials are fixed and the bot restarted: everything kept goes out, once.
        await app.stop()
        fake.refuse_credentials = False
        again = await start_app(make_app, slack_api, fake)
        await wait_until(lambda: all_synced(again), timeout=10, what="the kept writes")
        assert len(fake.records()) == 2
        assert {(await ticket(again, n)).psa_number for n in ("HD-1", "HD-2")} == {
            t.number for t in fake.records()
        }
        assert len(told()) == 1


async def _attempted(app: AppHarness, count: int) -> bool:
    return len(await psa_rows(app)) >= count


async def _deferred(app: AppHarness) -> bool:
    rows = await psa_rows(app)
    return len(rows) == 2 and all(r.claimed_until is None for r in rows)


async def test_tier_from_the_psa_agreement_sets_the_sla_times(make_app, slack_api: FakeSlack):
    fake = FakeConnectWise()
    seed(fake)
    async with fake:
        app = await start_app(make_app, slack_api, fake, sla={"clients": {"globex": "gold"}})
        await open_ticket(app, slack_api, client="ACME", priority="P2")
        await open_ticket(app, slack_api, client="Globex", priority="P2", summary="Mail slow")
        await open_ticket(app, slack_api, client="Initech", priority="P2", summary="No wifi")
        await wait_until(lambda: all_synced(app), what="three tickets in ConnectWise")

        acme = await ticket(app, "HD-1")
        assert (acme.tier, acme.tier_source, acme.tier_contract) == ("gold", "psa", "Gold Support")
        assert acme.respond_by - acme.created_at == timedelta(hours=1)  # gold P2
        assert acme.resolve_by - acme.created_at == timedelta(hours=8)
        await wait_until(lambda: _card_says(slack_api, acme.card_message, "1h"), what="refresh")
        globex = await ticket(app, "HD-2")
        assert (globex.tier, globex.tier_source) == ("gold", "config")
        initech = await ticket(app, "HD-3")
        assert (initech.tier, initech.tier_source) == ("standard", "psa-none")
        assert initech.respond_by - initech.created_at == timedelta(hours=2)  # standard P2
        shown = await show(app, "HD-3")
        assert "standard tier, the default: no active ConnectWise agreement is in psa.tiers" in (
            shown
        )
        assert "gold tier, from sla.clients" in await show(app, "HD-2")
        assert "gold tier, from the ConnectWise agreement Gold Support" in await show(app)
        # Unknown client: ConnectWise's catch-all company, the client named in the description.
        by_title = {t.title: t for t in fake.records()}
        assert by_title["No wifi"].raw["company"]["identifier"] == "Catchall"
        assert "Client: Initech" in by_title["No wifi"].description
        # The agreement was only asked about where the tier was still open.
        agreements = fake.calls("/v2025_1/apis/3.0/finance/agreements")
        assert len(agreements) == 1


async def test_sla_alarms_come_at_the_psa_tiers_times_once_each(make_app, slack_api: FakeSlack):
    # Opened at the default tier (standard P2: respond 2h, resolve 1d), its alarms queued for
    # those times; the ConnectWise agreement then makes it gold (P2: respond 1h, resolve 8h).
    clock, t0 = sla_clock()
    fake = FakeConnectWise()
    seed(fake)
    async with fake:
        app = await start_app(make_app, slack_api, fake, clock=clock)
        await open_ticket(app, slack_api, client="ACME", priority="P2")
        await wait_until(lambda: all_synced(app), what="the ticket in ConnectWise")
        row = await threaded(app, "HD-1")
        assert (row.tier, row.tier_source) == ("gold", "psa")
        assert (minute(row.respond_by), minute(row.resolve_by)) == (
            t0 + timedelta(hours=1),
            t0 + timedelta(hours=8),
        )
        assert {
            (r.payload["sla"]["target"], minute(r.due_at), r.status)
            for r in await sla_rows(app, row.number)
        } == {
            ("respond", t0 + timedelta(hours=1, minutes=45), "cancelled"),
            ("resolve", t0 + timedelta(hours=23, minutes=45), "cancelled"),
            ("respond", t0 + timedelta(minutes=45), "pending"),
            ("resolve", t0 + timedelta(hours=7, minutes=45), "pending"),
        }
        assert "Respond: pending (due 10:00 UTC)" in await show(app, row.number)

        clock.set(t0 + timedelta(minutes=45))
        await arrives(lambda: in_thread(slack_api, row, "SLA warning"), "the respond warning")
        assert "first response by 10:00 UTC (15m left)" in json.dumps(
            in_thread(slack_api, row, "SLA warning")
        )
        clock.set(t0 + timedelta(hours=1))
        await arrives(
            lambda: (
                in_thread(slack_api, row, "SLA breach") and in_channel(slack_api, row, "SLA breach")
            ),
            "the respond breach",
        )
        await asyncio.sleep(QUIET)
        assert (await threaded(app, row.number)).respond_met is False
        clock.set(t0 + timedelta(hours=7, minutes=45))
        await arrives(
            lambda: len(in_thread(slack_api, row, "SLA warning")) == 2, "the resolve warning"
        )
        assert "be resolved by 17:00 UTC (15m left)" in json.dumps(
            in_thread(slack_api, row, "SLA warning")[-1]
        )
        clock.set(t0 + timedelta(hours=8))
        await arrives(
            lambda: (
                len(in_thread(slack_api, row, "SLA breach")) == 2
                and len(in_channel(slack_api, row, "SLA breach")) == 2
            ),
            "the resolve breach",
        )
        # Past the standard tier's times too: nothing more, nothing twice.
        clock.set(t0 + timedelta(days=1, minutes=1))
        await asyncio.sleep(QUIET)
        assert len(said(slack_api, "SLA warning", number=row.number)) == 2
        assert len(in_thread(slack_api, row, "SLA breach")) == 2
        assert len(in_channel(slack_api, row, "SLA breach")) == 2
        assert "missed its resolve target (due 17:00 UTC)" in json.dumps(
            in_thread(slack_api, row, "SLA breach")
        )
        stored = await threaded(app, row.number)
        assert (stored.respond_met, stored.resolve_met) == (False, False)


def _card_says(slack: FakeSlack, ts: str | None, _: str) -> bool:
    return any(
        "gold tier, from the ConnectWise agreement Gold Support" in json.dumps(u["blocks"])
        for u in slack.method_calls("chat.update")
        if u["ts"] == ts
    )


async def test_codebase_moves_and_is_read_again(make_app, slack_api: FakeSlack):
    fake = FakeConnectWise()
    seed(fake)
    async with fake:
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api)
        await wait_until(lambda: all_synced(app))
        fake.move_codebase("v2026_1/")
        await app.slash("time HD-1 20m after the upgrade")
        await wait_until(lambda: all_synced(app))
        assert fake.only().time_minutes == [20]
        assert len(fake.calls("/login/companyinfo/acmemsp")) == 2


async def test_teams_card_shows_the_psa_number(make_app, connector: FakeConnector):
    fake = FakeServiceNow()
    seed(fake)
    async with fake:
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
        assert (await app.teams(message(connector.service_url, "ticket new VPN"))).status == 201
        await wait_until(lambda: connector.activities(PERSONAL))
        form = card_of(connector.activities(PERSONAL)[-1])
        values = form_values(client="acme", category="network")
        sent = activity(
            connector.service_url, value={**submit_action(form)["fallback"]["data"], **values}
        )
        assert (await app.teams(sent)).status == 201
        await wait_until(lambda: fake.records(), what="the ServiceNow incident")
        number = fake.only().number

        def refreshed() -> list[dict[str, Any]]:
            return [u for u in connector.updates() if number in json.dumps(u)]

        await wait_until(refreshed, what="the Teams card updated with the PSA number")
        card = card_of(refreshed()[-1])
        assert "ServiceNow" in json.dumps(card) and "gold tier" in json.dumps(card)


async def test_autotask_zone_url_given_directly_works_the_same(make_app, slack_api: FakeSlack):
    fake = FakeAutotask()
    seed(fake)
    async with fake:
        zone = f"{fake.url}/zone5/ATServicesRest/"
        app = await start_app(make_app, slack_api, fake, psa={**fake.config(url=zone)})
        await open_ticket(app, slack_api)
        await wait_until(lambda: all_synced(app), what="the Autotask ticket")
        assert fake.only().company == "Acme"
        asked = [c.path for c in fake.recorded if c.path.endswith("zoneInformation")]
        assert asked == ["/zone5/atservicesrest/v1.0/zoneInformation"]


async def test_autotask_number_unread_after_the_create_is_found_not_made_again(
    make_app, slack_api: FakeSlack
):
    fake = FakeAutotask()
    seed(fake)
    async with fake:
        # Autotask answers a create with its itemId only; reading the ticketNumber then gets a
        # 429: the ticket exists, so the row's retry looks it up by externalID.
        fake.fail("/zone5/atservicesrest/v1.0/Tickets/[0-9]*", 429, headers={"Retry-After": "1"})
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api)
        await wait_until(lambda: all_synced(app), timeout=15, what="the Autotask ticket")
        made = fake.only()
        stored = await ticket(app)
        assert (stored.psa_id, stored.psa_number) == (made.id, made.number)
        assert [r.attempts for r in await psa_rows(app)] == [2]
        lookups = [
            c
            for c in fake.calls("/zone5/atservicesrest/v1.0/Tickets/query")
            if any(f.get("field") == "externalID" for f in (c.json or {}).get("filter", []))
        ]
        assert len(lookups) == 1


async def test_closure_retried_after_the_status_change_failed_posts_the_note_once(
    make_app, slack_api: FakeSlack
):
    fake = FakeFreshservice()
    seed(fake)
    async with fake:
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api)
        await wait_until(lambda: all_synced(app), what="the Freshservice ticket")
        # Closing is the resolution note, then status 4: the status change gets a 503.
        fake.fail(f"/api/v2/tickets/{fake.only().id}", 503)
        await close(app, slack_api, "HD-1", spent="30m")
        await wait_until(lambda: all_synced(app), timeout=15, what="the closure delivered")
        done = fake.only()
        assert done.closed and done.time_minutes == [30]
        assert len([n for n in done.notes if GOOD_NOTE in n]) == 1, done.notes
        closing = [r for r in await psa_rows(app) if r.kind == "psa.close"]
        assert [(r.attempts, r.payload.get("resolution_note_posted")) for r in closing] == [
            (2, True)
        ]


def _answers_lost(monkeypatch: pytest.MonkeyPatch, fake: Any) -> None:
    """From now on the PSA takes each write but its answer comes after the bot gave up."""
    import bot.psa.http as psa_http

    monkeypatch.setattr(psa_http, "TIMEOUT", aiohttp.ClientTimeout(total=0.5))
    fake.hold_answers(1.0)


async def test_time_entry_whose_answer_was_lost_is_logged_once(
    make_app, slack_api: FakeSlack, monkeypatch: pytest.MonkeyPatch
):
    fake = FakeServiceNow()
    seed(fake)
    async with fake:
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api)
        await wait_until(lambda: all_synced(app), what="the ServiceNow incident")
        _answers_lost(monkeypatch, fake)
        await app.slash("time HD-1 30m checked the tunnel logs")
        # ServiceNow has the entry; the bot's call timed out before the answer came.
        await wait_until(lambda: fake.only().time_minutes, what="the time entry made")
        fake.hold_answers(0)
        await wait_until(lambda: all_synced(app), timeout=15, what="the time row delivered")
        assert fake.only().time_minutes == [30]
        posted = [c for c in fake.calls(TIME_WORKED) if c.method == "POST"]
        assert len(posted) == 1
        # The retry looked the entry up by its own reference, written at the end of its note.
        [entry] = fake.tables["task_time_worked"]
        [row] = [r for r in await psa_rows(app) if r.kind == "psa.time"]
        marker = row.payload["marker"]
        assert entry["comments"] == f"checked the tunnel logs\n\n[{marker}]"
        asked = [c.query.get("sysparm_query") for c in fake.calls(TIME_WORKED) if c.method == "GET"]
        assert asked == [f"task={fake.only().id}^commentsLIKE{marker}"]
        assert row.attempts == 2 and row.result.get("found_in_psa") is True


async def test_freshservice_note_whose_answer_was_lost_is_found_not_given_up(
    make_app, slack_api: FakeSlack, monkeypatch: pytest.MonkeyPatch
):
    # Freshservice lists a ticket's notes (GET /api/v2/tickets/<id>/conversations): a note
    # whose answer was lost is looked up there, not given up "in doubt" for the technician
    # to check and type in by hand.
    fake = FakeFreshservice()
    seed(fake)
    async with fake:
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api)
        await wait_until(lambda: all_synced(app), what="the Freshservice ticket")
        _answers_lost(monkeypatch, fake)
        await escalate(app, slack_api, "HD-1")
        await wait_until(lambda: fake.only().notes, what="the note made")
        fake.hold_answers(0)
        await close(app, slack_api, "HD-1", spent="30m")
        await wait_until(lambda: all_synced(app), timeout=15, what="every write delivered")
        done = fake.only()
        assert done.closed and done.time_minutes == [30]
        escalations = [n for n in done.notes if "Escalated to the networking queue" in n]
        assert len(escalations) == 1, done.notes
        assert len(fake.calls(f"/api/v2/tickets/{done.id}/notes")) == 2  # escalation, resolution
        [note] = [r for r in await psa_rows(app) if r.kind == "psa.note"]
        assert note.attempts == 2 and note.result.get("found_in_psa") is True
        assert not _told(slack_api, "may or may not have reached Freshservice")
        shown = await show(app)
        assert "Freshservice: not sent" not in shown, shown


def _told(slack: FakeSlack, words: str) -> list[dict[str, Any]]:
    return [p for p in posts_to(slack, "C0HELP") if words in json.dumps(p)]


async def test_autotask_note_refused_by_a_business_rule_is_told_and_the_closure_goes_on(
    make_app, slack_api: FakeSlack
):
    # Autotask answers a write its business rules refuse with HTTP 500 and its `errors`
    # list, not a 4xx (apigrate/autotask-restapi#19, KelvinTegelaar/AutotaskAPI#26,
    # WYRE-AI/msp-claude-plugins#32): the same note is refused however often it is sent.
    fake = FakeAutotask()
    seed(fake)
    async with fake:
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api)
        await wait_until(lambda: all_synced(app), what="the Autotask ticket")
        notes = f"/zone5/atservicesrest/v1.0/Tickets/{fake.only().id}/Notes"
        refusal = {"errors": ["Invalid picklist value for noteType."]}
        fake.fail(notes, 500, times=100, body=refusal)
        await escalate(app, slack_api, "HD-1")
        await close(app, slack_api, "HD-1", spent="30m")

        words = "Autotask refused the note for HD-1 and it will not be retried"
        await wait_until(lambda: _told(slack_api, words), timeout=15, what="the technician told")
        assert "Invalid picklist value for noteType" in json.dumps(_told(slack_api, words)[0])
        # The writes after it are not held behind a note that can never go.
        await wait_until(lambda: fake.only().closed, timeout=15, what="the ticket completed")
        done = fake.only()
        assert done.time_minutes == [30] and GOOD_NOTE in done.resolution
        [note] = [r for r in await psa_rows(app) if r.kind == "psa.note"]
        assert (note.status, note.attempts) == ("dead", 1)
        assert len(fake.calls(notes)) == 1
        shown = await show(app)
        assert "Autotask: not sent: note" in shown and "noteType" in shown


async def test_autotask_500_saying_the_fault_is_its_own_is_an_outage_not_a_refusal(
    make_app, slack_api: FakeSlack
):
    # Autotask answers a fault on its side with 500 and an `errors` list too ("An unexpected
    # error has occurred"): that is not a business rule refusing the ticket. It is retried
    # like a bare 500 (looked up by its externalID first), made once, and the technician is
    # never told Autotask refused it.
    fake = FakeAutotask()
    seed(fake)
    async with fake:
        tickets = "/zone5/atservicesrest/v1.0/Tickets"
        fault = {"errors": ["An unexpected error has occurred. Please try again later."]}
        fake.fail(tickets, 500, times=2, body=fault)
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api)
        await wait_until(lambda: all_synced(app), timeout=20, what="the Autotask ticket")
        creates = [c.status for c in fake.calls(tickets) if c.method == "POST"]
        assert creates == [500, 500, 200]
        assert len(fake.records()) == 1
        [row] = await psa_rows(app)
        assert (row.status, row.attempts) == ("delivered", 3)
        assert not _told(slack_api, "refused")
        assert fake.only().number in await show(app)


async def test_connectwise_company_lookup_answering_404_is_retried_not_a_refusal(
    make_app, slack_api: FakeSlack
):
    # A collection query answers `[]` when nothing matches: a 404 on company/companies that
    # re-reading the codebase does not cure (a cloud release under way) says nothing about
    # the ticket. It was taken for ConnectWise refusing the ticket: dead at once, "enter it
    # by hand". Now it is retried, and the ticket is made once, in its company.
    fake = FakeConnectWise()
    seed(fake)
    async with fake:
        companies = f"/{fake.codebase}apis/3.0/company/companies"
        missing = {"code": "NotFound", "message": "The requested resource was not found"}
        fake.fail(companies, 404, times=2, body=missing)
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api)
        await wait_until(lambda: all_synced(app), timeout=20, what="the ConnectWise ticket")
        assert [c.status for c in fake.calls(companies)] == [404, 404, 200]
        assert len(fake.records()) == 1 and fake.only().company == "Acme"
        [row] = await psa_rows(app)
        assert (row.status, row.attempts) == ("delivered", 3)
        assert not _told(slack_api, "refused")


async def test_autotask_user_name_it_does_not_know_is_told_as_refused_credentials(
    make_app, slack_api: FakeSlack
):
    # zoneInformation answers an unknown API user with 500 "Zone information could not be
    # determined" (psa-kb-facts §4): the credentials are wrong, the writes are kept.
    fake = FakeAutotask()
    seed(fake)
    async with fake:
        remember_secrets(fake)
        app = await make_app(
            slack=slack_api,
            config=app_config(fake),
            people=PEOPLE,
            env={**fake.env(), "PSA_USERNAME": "api.helpdsk@acme.example"},
        )
        await open_ticket(app, slack_api)
        words = "Autotask refuses the bot's credentials"
        await wait_until(lambda: _told(slack_api, words), timeout=15, what="the technician told")
        told = json.dumps(_told(slack_api, words)[0])
        assert "api.helpdsk@acme.example" in told and "PSA_USERNAME" in told
        [row] = await psa_rows(app)
        assert row.status == "pending"
        assert "refuses the bot's credentials since" in await show(app)


async def test_contracts_the_integration_user_may_not_read_leave_the_default_tier(
    make_app, slack_api: FakeSlack
):
    # An integration user that authenticates but may not read a table gets 403 there
    # (ServiceNow KB2971488: table-level ACL, "User Not Authorized"); ast_contract is often
    # outside an itil user's reach. Only the tier look-up is refused, not the credentials.
    fake = FakeServiceNow()
    seed(fake)
    async with fake:
        acl = {
            "error": {"message": "User Not Authorized", "detail": "Failed ACL Validation"},
            "status": "failure",
        }
        fake.fail("/api/now/table/ast_contract", 403, times=100, body=acl)
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api)
        await open_ticket(app, slack_api, summary="Printer offline")
        await wait_until(lambda: all_synced(app), timeout=15, what="both incidents created")
        assert len(fake.records()) == 2
        stored = await ticket(app)
        assert (stored.tier, stored.tier_source) == ("standard", "psa-error")
        assert "User Not Authorized" in (stored.tier_contract or "")
        shown = await show(app)
        assert "standard tier, the default: the ServiceNow contract could not be read" in shown
        assert "refuses the bot's credentials" not in shown
        assert not _told(slack_api, "refuses the bot's credentials")


async def test_servicenow_closure_a_data_policy_refuses_is_told_not_taken_for_credentials(
    make_app, slack_api: FakeSlack
):
    # ServiceNow answers a write its data policies or business rules refuse with 403
    # "Operation Failed" (its REST API: 403 covers "ACL failures, or business rule or data
    # policy constraints"); the credentials were accepted. An instance that makes a field
    # mandatory on resolving (here a cause code) refuses the closure, however often it is sent.
    fake = FakeServiceNow()
    seed(fake)
    async with fake:
        fake.mandatory_on_resolve = {"u_cause_code": "Cause code"}
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api)
        await wait_until(lambda: all_synced(app), what="the incident")
        await close(app, slack_api, "HD-1", spent="30m")

        words = "ServiceNow refused the closure for HD-1 and it will not be retried"
        await wait_until(lambda: _told(slack_api, words), timeout=15, what="the technician told")
        told = json.dumps(_told(slack_api, words)[0])
        assert "Data Policy Exception" in told and "Cause code" in told
        assert not _told(slack_api, "refuses the bot's credentials")
        # Other tickets keep reaching ServiceNow: nothing is held as if the password were wrong.
        await open_ticket(app, slack_api, summary="Printer offline")
        await wait_until(lambda: len(fake.records()) == 2, timeout=10, what="the second incident")
        [closure] = [r for r in await psa_rows(app) if r.kind == "psa.close"]
        assert (closure.status, closure.attempts) == ("dead", 1)
        assert fake.by_ref(fake.records()[0].ref).time_minutes == [30]
        shown = await show(app)
        assert "ServiceNow: not sent: closure" in shown and "Cause code" in shown
        assert "refuses the bot's credentials" not in shown


async def test_autotask_contact_is_taken_from_the_tickets_own_company(
    make_app, slack_api: FakeSlack
):
    # Autotask refuses a ticket whose contactID is a contact of another company (500 "Value
    # does not reference an existing entity for contactID.", n8n-nodes-autotask#15). The same
    # address can be a contact at several clients (a contractor, a shared mailbox) or only at
    # another one: the contact must be the ticket's company's, else the ticket goes without.
    fake = FakeAutotask()
    seed(fake)  # Ana is a contact of Acme
    async with fake:
        initech = fake.add_company("Initech", [])
        theirs = fake.add_contact(initech, "ana@example.com")
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api, client="Initech")
        await open_ticket(app, slack_api, client="Globex", summary="Printer offline")
        await wait_until(lambda: all_synced(app), timeout=15, what="both tickets in Autotask")
        by_company = {t.company: t for t in fake.records()}
        assert by_company["Initech"].raw["contactID"] == theirs
        assert "contactID" not in by_company["Globex"].raw
        assert "Requester: Ana Lopez <ana@example.com>" in by_company["Globex"].description
        assert not _told(slack_api, "refused the ticket")


@pytest.mark.parametrize("system", ["connectwise", "autotask"])
async def test_a_long_summary_with_emoji_fits_the_psas_title(
    make_app, slack_api: FakeSlack, system: str
):
    # ConnectWise (summary, 100) and Autotask (title, 255) count lengths as .NET and SQL
    # Server's nvarchar do: in UTF-16 code units, where an emoji is two. A summary cut to 100
    # (255) characters can still be too long there, and the ticket was refused for good.
    fake = FakeConnectWise() if system == "connectwise" else FakeAutotask()
    seed(fake)
    summary = "🔥" * 130 + " Outlook crashes on start"
    async with fake:
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api, summary=summary)
        await wait_until(lambda: all_synced(app), timeout=15, what="the PSA ticket")
        title = fake.only().title
        limit = 100 if system == "connectwise" else 255
        assert len(title.encode("utf-16-le")) // 2 <= limit
        assert title == "🔥" * (limit // 2)  # cut between characters, never inside one
        assert f"Summary:\n{summary}" in fake.only().description  # the whole of it


async def test_a_web_page_instead_of_json_is_an_outage_not_a_refusal(
    make_app, slack_api: FakeSlack
):
    # A ServiceNow developer instance asleep answers the Table API with its "hibernating" web
    # page (so does a proxy's or a login page in front of a PSA): no JSON, no incident. That
    # is the PSA not reachable yet, not ServiceNow refusing the ticket for good.
    fake = FakeServiceNow()
    seed(fake)
    async with fake:
        fake.hibernating = True
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api)
        await wait_until(lambda: len(fake.recorded) >= 2, timeout=15, what="two attempts")

        async def pending_with_why() -> bool:
            shown = await show(app)
            return "ServiceNow: pending" in shown and "not JSON" in shown

        await wait_until(pending_with_why, timeout=10, what="show to say why it is pending")
        assert not _told(slack_api, "refused the ticket")
        rows = await psa_rows(app)
        assert rows[0].status == "pending"
        fake.hibernating = False  # woken up
        await wait_until(lambda: all_synced(app), timeout=20, what="the incident")
        assert len(fake.records()) == 1
        assert (await ticket(app)).psa_number == fake.only().number
