"""P1 over Slack HTTP: incident notice, PagerDuty and Opsgenie, retries, closing resolves."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from storage.models import OutboxMessage, Ticket, TicketEvent, utcnow
from tests.fakes.pagers import FakeOpsgenie, FakePagerDuty
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, only_ticket
from tests.http.p1_support import (
    BRIDGE,
    GENIE_KEY,
    INCIDENT_CHANNEL,
    ROUTING_KEY,
    SLACK_PEOPLE,
    assert_secrets_not_stored,
    eventually,
    outbox_rows,
    pager_env,
    slack_close,
    slack_posts,
    slack_ticket,
    submit_ticket,
)

REPORT = "delivery-report"
CONFIG = {"slack": {"incident_channel": INCIDENT_CHANNEL}, "incident": {"bridge_url": BRIDGE}}


async def start(make_app: Any, slack: FakeSlack, pd: FakePagerDuty | None,
                og: FakeOpsgenie | None = None) -> AppHarness:  # fmt: skip
    app: AppHarness = await make_app(slack=slack, config=CONFIG, people=SLACK_PEOPLE,
                                     env=pager_env(pd, og))  # fmt: skip
    return app


def told(slack: FakeSlack, words: str) -> list[dict[str, Any]]:
    """Posts in the help channel (the ticket's thread) that contain `words`."""
    return [p for p in slack_posts(slack, "C0HELP") if words in json.dumps(p)]


async def test_p1_intake_posts_one_notice_and_pages_both_once(
    make_app, slack_api: FakeSlack, pagerduty: FakePagerDuty, opsgenie: FakeOpsgenie
):
    app = await start(make_app, slack_api, pagerduty, opsgenie)
    answered = await slack_ticket(app, slack_api)
    await eventually(lambda: slack_posts(slack_api, INCIDENT_CHANNEL), what="incident notice")
    await pagerduty.wait_for("/v2/enqueue")
    await opsgenie.wait_for("/v2/alerts")
    latency = pagerduty.calls("/v2/enqueue")[0].at - answered
    assert latency < 1.5, f"page sent {latency:.2f}s after the submission was answered"
    await asyncio.sleep(0.6)

    [notice] = slack_posts(slack_api, INCIDENT_CHANNEL)
    shown = json.dumps(notice)
    for part in ("HD-1", BRIDGE, "VPN down for the whole Lisbon office", "Users affected", "40",
                 "<@UANA> (ana@example.com)", "<@UTECH> (tom@example.com)"):  # fmt: skip
        assert part in shown, part

    [event] = pagerduty.events()
    assert event["routing_key"] == ROUTING_KEY
    assert (event["event_action"], event["dedup_key"]) == ("trigger", "HD-1")
    payload = event["payload"]
    assert (payload["severity"], payload["source"]) == ("critical", "helpdesk-bot")
    assert "HD-1" in payload["summary"] and len(payload["summary"]) <= 1024
    assert {"href": BRIDGE, "text": "P1 bridge"} in event["links"]

    [alert] = opsgenie.alerts()
    [request] = opsgenie.calls("/v2/alerts")
    assert request.headers["Authorization"] == f"GenieKey {GENIE_KEY}"
    assert (alert["alias"], alert["priority"]) == ("HD-1", "P1")
    assert "HD-1" in alert["message"] and len(alert["message"]) <= 130
    await assert_secrets_not_stored(app)


async def test_only_technicians_open_a_ticket_at_p1(
    make_app, slack_api: FakeSlack, pagerduty: FakePagerDuty, opsgenie: FakeOpsgenie
):
    """Opening at P1 pages the on-call: like raising to P1 (SPEC), technicians only. Bob's
    form stays open with the reason on Priority; nothing is saved, noticed or paged. At P2 his
    ticket opens; a technician's P1 pages."""
    app = await start(make_app, slack_api, pagerduty, opsgenie)
    response = await submit_ticket(app, slack_api, priority="P1", user="UBOB")
    assert response.status == 200
    body = await response.json()
    assert body["response_action"] == "errors"
    assert "Only technicians can open a ticket at P1" in body["errors"]["priority"]
    async with app.services.sessions() as session:
        assert (await session.execute(select(Ticket))).scalars().all() == []
    await submit_ticket(app, slack_api, priority="P2", user="UBOB")
    await eventually(lambda: slack_posts(slack_api, "C0HELP"), what="Bob's P2 ticket card")
    await asyncio.sleep(0.6)
    assert pagerduty.events() == [] and opsgenie.alerts() == []
    assert slack_posts(slack_api, INCIDENT_CHANNEL) == []
    await slack_ticket(app, slack_api, priority="P1")  # Tom, a technician
    await pagerduty.wait_for("/v2/enqueue")
    async with app.services.sessions() as session:
        opened = (await session.execute(select(Ticket.number, Ticket.priority))).all()
    assert sorted(opened) == [("HD-1", "P2"), ("HD-2", "P1")]


async def test_raise_to_p1_twice_pages_once_and_only_technicians_may(
    make_app, slack_api: FakeSlack, pagerduty: FakePagerDuty, opsgenie: FakeOpsgenie
):
    app = await start(make_app, slack_api, pagerduty, opsgenie)
    await slack_ticket(app, slack_api, priority="P3", users=1)
    await eventually(lambda: slack_posts(slack_api, "C0HELP"), what="ticket card")

    async def card_message() -> str | None:
        return (await only_ticket(app)).card_message

    await eventually(card_message, what="the card's message recorded")

    refused = json.dumps(await (await app.slash("p1 HD-1", user="UBOB")).json())
    assert "Only technicians can raise a ticket to P1" in refused
    first = json.dumps(await (await app.slash("p1 hd-1")).json())
    assert "HD-1 is now P1" in first and "PagerDuty and Opsgenie" in first
    again = json.dumps(await (await app.slash("p1 HD-1")).json())
    assert "already P1" in again
    await pagerduty.wait_for("/v2/enqueue")
    await opsgenie.wait_for("/v2/alerts")
    await eventually(lambda: slack_posts(slack_api, INCIDENT_CHANNEL), what="incident notice")
    await asyncio.sleep(0.6)
    assert len(pagerduty.events("trigger")) == 1
    assert len(opsgenie.alerts()) == 1
    assert len(slack_posts(slack_api, INCIDENT_CHANNEL)) == 1

    async with app.services.sessions() as session:
        ticket = (await session.execute(select(Ticket))).scalar_one()
        kinds = (await session.execute(select(TicketEvent.kind))).scalars().all()
    assert ticket.priority == "P1"
    # The P1 targets now apply (standard tier: respond 30m, resolve 4h), counted from the raise.
    assert ticket.respond_by <= utcnow() + timedelta(minutes=30)
    assert ticket.resolve_by <= utcnow() + timedelta(hours=4)
    assert kinds.count("ticket.priority_raised") == 1 and kinds.count("incident.p1") == 1
    # The ticket card in the channel is updated in place to show P1 (once: raised once).
    [card] = await slack_api.wait_for_method("chat.update")
    assert (card["channel"], card["ts"]) == ("C0HELP", await card_message())
    assert "HD-1 (P1)" in json.dumps(card["blocks"])


async def test_pagerduty_500_twice_then_accepted_pages_once_and_tells_technician(
    make_app, slack_api: FakeSlack, pagerduty: FakePagerDuty
):
    app = await start(make_app, slack_api, pagerduty)
    pagerduty.fail("/v2/enqueue", 500, times=2)
    await slack_ticket(app, slack_api)
    await eventually(lambda: told(slack_api, "has not gone through yet"), timeout=5,
                     what="first failure report")  # fmt: skip
    await eventually(lambda: pagerduty.events("trigger"), timeout=10, what="the page")
    await eventually(lambda: told(slack_api, "has gone through now"), timeout=5,
                     what="went-through report")  # fmt: skip
    await asyncio.sleep(0.5)
    assert [c.status for c in pagerduty.calls("/v2/enqueue")] == [500, 500, 202]
    assert len(pagerduty.events("trigger")) == 1
    [failing] = told(slack_api, "has not gone through yet")
    assert "The PagerDuty page for HD-1 has not gone through yet" in json.dumps(failing)
    [through] = told(slack_api, "has gone through now")
    assert "(attempt 3)" in json.dumps(through)
    # The reports land in the ticket's thread (the ticket card's message).
    async with app.services.sessions() as session:
        thread = (await session.execute(select(Ticket.source_thread))).scalar_one()
    assert thread and through.get("thread_ts") == thread
    assert failing.get("thread_ts") == thread
    shown = json.dumps(await (await app.slash("show HD-1")).json())
    assert "*PagerDuty page:* delivered (attempt 3)" in shown


async def test_page_failing_while_the_card_is_being_posted_is_reported_in_its_thread(
    make_app, slack_api: FakeSlack, pagerduty: FakePagerDuty
):
    """The page fails while Slack has taken the ticket card but not answered yet: the report
    that the page has not gone through follows the card into its thread, as every note for
    the ticket does; it is no second top-level message about the ticket in its channel (only
    a report about the card itself cannot wait for it)."""
    app = await start(make_app, slack_api, pagerduty)
    pagerduty.fail("/v2/enqueue", 500, times=1)
    slack_api.delay_answer("chat.postMessage", 1.5)  # the card is posted, its answer is late
    await slack_ticket(app, slack_api)
    await eventually(lambda: told(slack_api, "HD-1 (P1)"), what="the card posted")
    await eventually(lambda: pagerduty.calls("/v2/enqueue"), what="the page refused")
    await asyncio.sleep(0.3)  # what follows the card (the report) is being sent meanwhile
    slack_api.delay_answer("chat.postMessage", 0)

    async def reported() -> bool:
        reports = [r for r in await outbox_rows(app) if r.payload.get("purpose") == REPORT]
        return len(reports) == 2 and all(r.status == "delivered" for r in reports)

    await eventually(reported, timeout=15, what="both reports delivered")
    async with app.services.sessions() as session:
        thread = (await session.execute(select(Ticket.source_thread))).scalar_one()
    top = [m for m in slack_api.channel_messages("C0HELP") if not m.get("thread_ts")]
    assert len(top) == 1 and top[0]["ts"] == thread, [m.get("text") for m in top]
    said = [m for m in slack_api.channel_messages("C0HELP") if "gone through" in m["text"]]
    assert [(m["text"].split(" has ")[1][:8], m.get("thread_ts")) for m in said] == [
        ("not gone", thread),
        ("gone thr", thread),
    ]  # in the card's thread, and in the order they happened
    assert len(pagerduty.events("trigger")) == 1


async def test_429_retry_after_is_honoured(
    make_app, slack_api: FakeSlack, pagerduty: FakePagerDuty
):
    app = await start(make_app, slack_api, pagerduty)
    pagerduty.fail("/v2/enqueue", 429, times=1, headers={"Retry-After": "2"})
    await slack_ticket(app, slack_api)
    calls = await pagerduty.wait_for("/v2/enqueue", count=2, timeout=8)
    waited = calls[1].at - calls[0].at
    assert 2.0 <= waited < 4.5, waited
    assert len(pagerduty.events("trigger")) == 1


async def test_closing_the_p1_resolves_pages_and_updates_the_notice(
    make_app, slack_api: FakeSlack, pagerduty: FakePagerDuty, opsgenie: FakeOpsgenie
):
    app = await start(make_app, slack_api, pagerduty, opsgenie)
    await slack_ticket(app, slack_api)
    await pagerduty.wait_for("/v2/enqueue")
    await opsgenie.wait_for("/v2/alerts")
    await eventually(lambda: slack_posts(slack_api, INCIDENT_CHANNEL), what="incident notice")
    notice_row = next(r for r in await outbox_rows(app)
                      if r.dedup_key == "p1:HD-1:notice:slack")  # fmt: skip
    await eventually(lambda: slack_api.calls("/api/chat.postMessage"), what="posts")

    await slack_close(app, slack_api, "HD-1")
    await eventually(lambda: pagerduty.events("resolve"), what="PagerDuty resolve")
    await eventually(lambda: opsgenie.closes(), what="Opsgenie close")
    await eventually(
        lambda: [
            u for u in slack_api.method_calls("chat.update") if u.get("channel") == INCIDENT_CHANNEL
        ],
        what="notice update",
    )
    [resolve] = pagerduty.events("resolve")
    assert (resolve["dedup_key"], resolve["routing_key"]) == ("HD-1", ROUTING_KEY)
    assert pagerduty.open_dedup_keys() == []
    assert opsgenie.closes()[0]["identifier"] == "HD-1"
    assert opsgenie.closes()[0]["identifierType"] == "alias"
    assert opsgenie.open_aliases() == []
    [update] = [
        u for u in slack_api.method_calls("chat.update") if u.get("channel") == INCIDENT_CHANNEL
    ]
    async with app.services.sessions() as session:
        notice_row = await session.get(type(notice_row), notice_row.id)
    assert notice_row is not None and update["ts"] == notice_row.result["ts"]
    assert "Resolved" in json.dumps(update) and "HD-1" in json.dumps(update)
    assert len(slack_posts(slack_api, INCIDENT_CHANNEL)) == 1
    shown = json.dumps(await (await app.slash("show HD-1")).json())
    assert "*PagerDuty resolve:*" in shown and "*Incident notice updated:*" in shown


async def test_closing_before_anything_went_out_pages_nobody_and_posts_a_resolved_notice(
    make_app, slack_api: FakeSlack, pagerduty: FakePagerDuty, opsgenie: FakeOpsgenie
):
    # A web-only replica with no worker running: the P1's rows wait in the outbox.
    env = pager_env(pagerduty, opsgenie)
    app: AppHarness = await make_app(
        slack=slack_api, config=CONFIG, people=SLACK_PEOPLE, env=env, scheduler=False
    )
    await slack_ticket(app, slack_api)
    await slack_close(app, slack_api, "HD-1")
    by_key = {r.dedup_key: r for r in await outbox_rows(app) if r.dedup_key}
    for pager in ("pagerduty", "opsgenie"):
        page = by_key[f"p1:HD-1:{pager}"]
        assert (page.status, page.last_error) == ("cancelled", "not paged: closed first")
        assert f"p1:HD-1:{pager}:resolved" not in by_key  # nothing to resolve
    assert by_key["p1:HD-1:notice:slack"].status == "cancelled"
    resolved = by_key["p1:HD-1:notice:slack:resolved"]
    assert resolved.kind == "message" and resolved.status == "pending"
    assert "Resolved: P1 incident HD-1" in json.dumps(resolved.payload["card"])
    shown = json.dumps(await (await app.slash("show HD-1")).json())
    assert "not paged: closed first" in shown


async def test_slack_429_on_a_post_waits_retry_after_and_posts_once(
    make_app, slack_api: FakeSlack, pagerduty: FakePagerDuty
):
    app = await start(make_app, slack_api, pagerduty)
    slack_api.fail("chat.postMessage", 429, times=1, headers={"Retry-After": "1"})
    await slack_ticket(app, slack_api)
    await eventually(lambda: slack_posts(slack_api, INCIDENT_CHANNEL), what="incident notice")
    await eventually(lambda: slack_posts(slack_api, "C0HELP"), what="ticket card")
    calls = slack_api.calls("/api/chat.postMessage")
    [limited] = [c for c in calls if c.scripted]
    channel = (limited.form or limited.json or {}).get("channel")
    retried = [c for c in calls if not c.scripted and c.at > limited.at
               and (c.form or c.json or {}).get("channel") == channel]  # fmt: skip
    assert retried and retried[0].at - limited.at >= 1.0
    await asyncio.sleep(0.3)
    assert len(slack_posts(slack_api, INCIDENT_CHANNEL)) == 1


async def test_a_notice_in_doubt_for_an_incident_channel_given_by_name_is_posted(
    make_app, slack_api: FakeSlack, pagerduty: FakePagerDuty
):
    """`slack.incident_channel: "#incidents"` (SPEC: "channel id (or #name)"). A notice whose
    earlier attempt may have arrived (its worker died mid-send) is looked up before it is
    posted again; conversations.history takes only a channel id, so the name is found with
    conversations.list first. The earlier attempt never arrived: the notice goes out once, not
    retried in a loop forever. (One that did arrive: tests/http/test_takeover.py.)"""
    config = {**CONFIG, "slack": {"incident_channel": "#incidents"}}
    slack_api.add_channel("#incidents")
    env = pager_env(pagerduty, None)
    web: AppHarness = await make_app(slack=slack_api, config=config, people=SLACK_PEOPLE,
                                     env=env, scheduler=False)  # fmt: skip
    await slack_ticket(web, slack_api)
    [notice] = [r for r in await outbox_rows(web) if r.dedup_key == "p1:HD-1:notice:slack"]
    async with web.services.sessions() as session, session.begin():
        await session.execute(
            update(OutboxMessage).where(OutboxMessage.id == notice.id).values(in_doubt=True)
        )
    await web.stop()
    app = await make_app(slack=slack_api, config=config, people=SLACK_PEOPLE, env=env)
    await eventually(lambda: pagerduty.events("trigger"), what="the page")
    incident = slack_api.channel_id("#incidents")
    await eventually(lambda: slack_api.channel_messages(incident), timeout=10,
                     what="the incident notice")  # fmt: skip
    await asyncio.sleep(1.0)
    [posted] = slack_api.channel_messages(incident)
    assert "P1 incident HD-1" in json.dumps(posted)
    assert [c["channel"] for c in slack_api.method_calls("conversations.history")] == [incident]
    [row] = [r for r in await outbox_rows(app) if r.id == notice.id]
    assert row.status == "delivered" and row.result["channel"] == incident


async def test_a_resolve_refused_for_good_says_to_resolve_it_by_hand(
    make_app, slack_api: FakeSlack, pagerduty: FakePagerDuty
):
    """PagerDuty refuses the resolve (400): the technician is told the alert is still open and
    to resolve it in PagerDuty, not to "reach the on-call another way" (they were paged)."""
    app = await start(make_app, slack_api, pagerduty, None)
    await slack_ticket(app, slack_api)
    await pagerduty.wait_for("/v2/enqueue")
    pagerduty.fail("/v2/enqueue", 400, times=1)
    await slack_close(app, slack_api, "HD-1")

    def told_now() -> list[str]:
        return [str(p.get("text")) for p in slack_api.posts() if "will not be retried" in str(p)]

    await eventually(told_now, what="the technician told")
    [text] = told_now()
    assert "Resolve the alert in the pager by hand" in text, text
    assert "Reach the on-call another way" not in text


async def test_the_p1_event_names_where_the_p1_was_opened_or_raised_not_the_incident_channel(
    make_app, slack_api: FakeSlack
):
    """SPEC "Tickets": an event says which channel the change was made in. The notice goes to
    the incident channel; the P1 was opened (intake) or raised (`p1`) in C0HELP."""
    app = await start(make_app, slack_api, None)
    await slack_ticket(app, slack_api)  # HD-1, opened at P1 from C0HELP
    await slack_ticket(app, slack_api, priority="P3")  # HD-2
    assert (await app.slash("p1 HD-2")).status == 200
    await eventually(lambda: len(slack_posts(slack_api, INCIDENT_CHANNEL)) == 2, what="notices")
    async with app.services.sessions() as session:
        query = select(TicketEvent).where(TicketEvent.kind == "incident.p1")
        events = list((await session.execute(query.order_by(TicketEvent.id))).scalars())
    assert [(e.actor_id, e.channel) for e in events] == [("UTECH", "C0HELP")] * 2
