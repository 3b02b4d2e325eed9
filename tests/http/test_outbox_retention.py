"""The outbox retention over HTTP: a P1 closed long ago, whose notice, page, resolve, survey,
follow-up and card updates were all trimmed by the scheduled job, still shows every delivery
in `show` as before, and its survey, page and notice still cannot go out a second time."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sqlalchemy import select, update

from storage import outbox, outbox_retention
from storage.models import OutboxMessage, Ticket
from tests.fakes.pagers import FakePagerDuty
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness
from tests.http.p1_support import (
    BRIDGE,
    INCIDENT_CHANNEL,
    SLACK_PEOPLE,
    eventually,
    outbox_rows,
    pager_env,
    slack_close,
    slack_posts,
    slack_ticket,
)
from tests.http.test_metrics import scrape

CONFIG = {
    "slack": {"incident_channel": INCIDENT_CHANNEL},
    "incident": {"bridge_url": BRIDGE},
    "csat": {"delay": "0s", "vip_followup_delay": "1s"},
    "escalation": {"nudge_after": "2s"},  # given up once closed, or sent before
}
LONG_AGO = outbox_retention.KEEP * 2


async def all_finished(app: AppHarness) -> bool:
    rows = await outbox_rows(app)
    return bool(rows) and all(r.status != "pending" for r in rows)


async def shown(app: AppHarness) -> str:
    return json.dumps(await (await app.slash("show HD-1")).json())


async def age_everything(app: AppHarness) -> None:
    """As if the ticket had been closed, and its rows finished, LONG_AGO."""
    out = OutboxMessage
    async with app.services.engine.begin() as conn:
        rows = await conn.execute(select(out.id, out.due_at, out.created_at, out.delivered_at))
        for row_id, due, created, delivered in rows.all():
            moved = {"due_at": due - LONG_AGO, "created_at": created - LONG_AGO}
            if delivered is not None:
                moved["delivered_at"] = delivered - LONG_AGO
            await conn.execute(update(out).where(out.id == row_id).values(**moved))
        closed = (await conn.execute(select(Ticket.closed_at))).scalar_one()
        await conn.execute(update(Ticket).values(closed_at=closed - LONG_AGO))


async def test_a_p1_closed_long_ago_shows_the_same_after_the_trim_and_sends_nothing_twice(
    make_app: Any, slack_api: FakeSlack, pagerduty: FakePagerDuty
) -> None:
    app: AppHarness = await make_app(
        slack=slack_api, config=CONFIG, people=SLACK_PEOPLE, env=pager_env(pagerduty, None)
    )
    await slack_ticket(app, slack_api)
    await pagerduty.wait_for("/v2/enqueue")
    await eventually(lambda: slack_posts(slack_api, INCIDENT_CHANNEL), what="incident notice")
    await slack_close(app, slack_api, "HD-1")
    await eventually(lambda: pagerduty.events("resolve"), what="PagerDuty resolve")
    await eventually(lambda: slack_posts(slack_api, "DUANA"), what="the survey")
    await eventually(lambda: all_finished(app), timeout=10, what="every row delivered")
    await asyncio.sleep(0.3)
    rows = await outbox_rows(app)
    keys = sorted(str(r.dedup_key) for r in rows if r.dedup_key)
    for key in ("csat-survey:1", "p1:HD-1:pagerduty", "p1:HD-1:notice:slack", "vip-followup:1"):
        assert key in keys, keys
    posted = {c: len(slack_posts(slack_api, c)) for c in ("DUANA", "DUTECH", INCIDENT_CHANNEL)}
    pages = len(pagerduty.events())

    await age_everything(app)
    before = await shown(app)
    for line in (
        "Deliveries",
        "*PagerDuty page:*",
        "*PagerDuty resolve:*",
        "*CSAT survey to the requester:*",
        "*Incident notice updated:*",
        "delivered (attempt 1)",
    ):
        assert line in before, line

    prune = app.services.outbox_prune
    assert prune is not None and app.services.scheduler is not None
    assert app.services.scheduler.get_job("outbox-prune") is not None
    assert await prune.run() == len(rows)

    trimmed = await outbox_rows(app)
    assert all(r.trimmed_at is not None for r in trimmed)
    assert all(set(r.payload) <= set(outbox_retention.KEPT_PAYLOAD) for r in trimmed)
    assert all(set(r.result) <= set(outbox_retention.KEPT_RESULT) for r in trimmed)
    assert sorted(str(r.dedup_key) for r in trimmed if r.dedup_key) == keys
    # `show` lists the same deliveries, states and errors as before.
    assert await shown(app) == before

    # A second survey, page, notice or follow-up of HD-1 is still refused by its key.
    async with app.services.sessions() as session, session.begin():
        for key in keys:
            assert not await outbox.enqueue(
                session, kind="dm", ticket_id=1, payload={"text": "again"}, dedup_key=key
            ), key
        left = await session.execute(
            select(OutboxMessage.id).where(OutboxMessage.status == "pending")
        )
        assert left.all() == []
    await asyncio.sleep(1.0)
    assert {c: len(slack_posts(slack_api, c)) for c in posted} == posted
    assert len(pagerduty.events()) == pages
    assert f'helpdesk_outbox_pruned_total{{action="trimmed"}} {float(len(rows))}' in (
        await scrape(app)
    )
