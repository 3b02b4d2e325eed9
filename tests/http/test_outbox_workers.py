"""Real processes (`python -m bot worker|serve`) on one database: crashes, replicas, leases."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Any

import aiohttp
from sqlalchemy import select

from storage import db, outbox
from storage.models import OutboxMessage
from tests.fakes.pagers import FakePagerDuty
from tests.fakes.slack_api import FakeSlack
from tests.harness import BOT_TOKEN, SIGNING_SECRET, AppHarness
from tests.http.p1_support import (
    SLACK_PEOPLE,
    eventually,
    fake_pagerduty,
    pager_env,
    slack_posts,
    slack_ticket,
)
from tests.http.processes import Spawn, free_port, healthy

LEASE = "2"


async def p1_rows_written(make_app: Any, slack: FakeSlack, pd: FakePagerDuty) -> AppHarness:
    """An app without a scheduler takes a P1 and stops: the page is only a row."""
    app: AppHarness = await make_app(slack=slack, people=SLACK_PEOPLE, scheduler=False,
                                     env=pager_env(pd, None))  # fmt: skip
    await slack_ticket(app, slack)
    async with app.services.sessions() as session:
        kinds = (await session.execute(select(OutboxMessage.kind))).scalars().all()
    assert "page.pagerduty" in kinds
    await app.stop()
    return app


async def page_row(url: str) -> OutboxMessage:
    engine = db.create_engine(url)
    try:
        async with db.session_factory(engine)() as session:
            query = select(OutboxMessage).where(OutboxMessage.kind == "page.pagerduty")
            return (await session.execute(query)).scalar_one()
    finally:
        await engine.dispose()


async def test_killed_before_delivery_then_restarted_pages_exactly_once(
    make_app, db_url: str, slack_api: FakeSlack, spawn: Spawn, blackhole: Any
):
    hanging_url, received = blackhole
    async with fake_pagerduty() as pd:
        app = await p1_rows_written(make_app, slack_api, pd)
        env = {**app.env, "OUTBOX_LEASE_SECONDS": LEASE}
        first = await spawn("worker", env={**env, "PAGERDUTY_EVENTS_URL": hanging_url})
        await eventually(lambda: received, timeout=45, what="the page request to hang")
        await first.stop(signal.SIGKILL)
        row = await page_row(db_url)
        assert (row.status, row.attempts) == ("pending", 1)  # claimed, never marked

        second = await spawn("worker", env=env)
        await second.wait_for_line("outbox worker running")
        await eventually(lambda: pd.events("trigger"), timeout=10, what="the page")
        await asyncio.sleep(1.0)
        assert len(pd.events("trigger")) == 1 and pd.open_dedup_keys() == ["HD-1"]
        row = await page_row(db_url)
        assert (row.status, row.attempts) == ("delivered", 2)


async def test_killed_between_send_and_mark_does_not_open_a_second_incident(
    make_app, db_url: str, slack_api: FakeSlack, spawn: Spawn
):
    async with fake_pagerduty() as pd:
        app = await p1_rows_written(make_app, slack_api, pd)
        env = {**app.env, "OUTBOX_LEASE_SECONDS": LEASE}
        pd.set_delay("/v2/enqueue", 1.0)  # PagerDuty takes the event; the answer is slow
        first = await spawn("worker", env=env)
        await eventually(lambda: pd.calls("/v2/enqueue"), timeout=45, what="the page request")
        await first.stop(signal.SIGKILL)  # sent, never marked
        pd.set_delay("/v2/enqueue", 0)

        second = await spawn("worker", env=env)
        await second.wait_for_line("outbox worker running")
        await eventually(lambda: (r := [c for c in pd.calls("/v2/enqueue")]) and len(r) >= 2
                         and r[-1].status == 202, timeout=30, what="the resend")  # fmt: skip
        await asyncio.sleep(1.0)
        # Whether or not the first send counted, one alert is open: the dedup key held.
        triggers = pd.events("trigger")
        assert 1 <= len(triggers) <= 2 and {t["dedup_key"] for t in triggers} == {"HD-1"}
        assert pd.open_dedup_keys() == ["HD-1"]
        assert (await page_row(db_url)).status == "delivered"


async def test_serve_killed_while_its_handed_off_page_hangs_pages_once(
    make_app, db_url: str, slack_api: FakeSlack, spawn: Spawn, blackhole: Any, tmp_path: Any
):
    """`serve` delivers the rows its own requests queue straight from their commit (each is
    claimed in its INSERT, no claim round trip). Killed while that page hangs, the row stays
    claimed (attempt 1) and is never marked; a worker takes it over once the lease runs out
    (in doubt) and pages once. The ticket card, recorded before the kill, is not sent again."""
    hanging_url, received = blackhole
    async with fake_pagerduty() as pd:
        app = await make_app(slack=slack_api, people=SLACK_PEOPLE, scheduler=False,
                             env=pager_env(pd, None))  # fmt: skip
        await app.stop()  # only its database and configuration are used
        port = free_port()
        env = {**app.env, "OUTBOX_LEASE_SECONDS": LEASE, "PORT": str(port)}
        server = await spawn("serve", env={**env, "PAGERDUTY_EVENTS_URL": hanging_url})
        await server.wait_for_line("listening on")
        client = AppHarness(tmp_path, env, None, None)
        client.url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as client.http:
            await eventually(lambda: healthy(client.http, port), timeout=10, what="/healthz")
            await slack_ticket(client, slack_api)  # HD-1: card and page queued by `serve`
            await eventually(lambda: received, timeout=5, what="the page to hang")
        await eventually(lambda: slack_posts(slack_api, "C0HELP"), timeout=5, what="the card")
        await server.stop(signal.SIGKILL)  # the page is still waiting for PagerDuty
        row = await page_row(db_url)
        assert (row.status, row.attempts, row.in_doubt) == ("pending", 1, False)
        assert row.claimed_by and row.claimed_by.startswith(f"{server.process.pid}-")

        worker = await spawn("worker", env=env)
        await worker.wait_for_line("outbox worker running")
        await eventually(lambda: pd.events("trigger"), timeout=15, what="the page")
        await asyncio.sleep(1.0)
        assert len(pd.events("trigger")) == 1 and pd.open_dedup_keys() == ["HD-1"]
        row = await page_row(db_url)
        assert (row.status, row.attempts) == ("delivered", 2)
        cards = slack_posts(slack_api, "C0HELP")
        assert [c["text"].split(" ")[0] for c in cards] == ["HD-1"]  # not sent again


async def test_web_only_replica_never_delivers_and_the_worker_does(
    make_app, db_url: str, slack_api: FakeSlack, spawn: Spawn
):
    async with fake_pagerduty() as pd:
        app = await p1_rows_written(make_app, slack_api, pd)
        port = free_port()
        web = await spawn("serve", "--no-scheduler", env={**app.env, "PORT": str(port)})
        await web.wait_for_line("listening on")
        async with aiohttp.ClientSession() as http:
            await eventually(lambda: healthy(http, port), timeout=10, what="/healthz")
        await asyncio.sleep(1.5)
        assert pd.calls() == [] and slack_api.posts() == []
        worker = await spawn("worker", env=app.env)
        await worker.wait_for_line("outbox worker running")
        await eventually(lambda: pd.events("trigger"), timeout=10, what="the page")
        assert not any("listening on" in line for line in worker.lines)


async def test_two_workers_on_postgresql_deliver_200_notices_exactly_once(
    pg_url: str, slack_api: FakeSlack, spawn: Spawn
):
    env = {
        "DATABASE_URL": pg_url,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": f"{slack_api.url}/api/",
    }
    workers = [await spawn("worker", env=env, name=f"worker {i}") for i in range(2)]
    for worker in workers:
        await worker.wait_for_line("outbox worker running")
    slack_api.set_delay("/api/chat.postMessage", 0.01)
    engine = db.create_engine(pg_url)
    sessions = db.session_factory(engine)
    async with sessions() as session, session.begin():
        for i in range(200):
            # Spread over 100 channels: posts to one channel are paced to about one a second.
            channel = f"C{i % 100:04d}"
            await outbox.enqueue(session, kind="message", dedup_key=f"notice-{i}", payload={
                "platform": "slack", "channel": channel, "text": f"notice {i}"})  # fmt: skip
    queued = time.monotonic()
    await slack_api.wait_for_method("chat.postMessage", count=200, timeout=15)
    elapsed = time.monotonic() - queued
    await asyncio.sleep(0.5)
    texts = [p["text"] for p in slack_api.posts()]
    assert len(texts) == 200 and sorted(texts) == sorted(f"notice {i}" for i in range(200))
    async with sessions() as session:
        found = (await session.execute(select(OutboxMessage))).scalars().all()
    await engine.dispose()
    assert {r.status for r in found} == {"delivered"} and {r.attempts for r in found} == {1}
    by_worker = {w: sum(r.claimed_by == w for r in found) for w in {r.claimed_by for r in found}}
    # Both took a share (each claims 20 at a time); the split is logged for the record.
    assert sum(by_worker.values()) == 200 and len(by_worker) == 2, by_worker
    logging.getLogger(__name__).info("200 notices in %.2fs, split %s", elapsed, by_worker)
