"""A P1 closed before its page went out (SPEC "P1 incidents"), and waking the worker at once.

Closing a P1 before the worker delivered its page must not wake the on-call for an incident
that is over: no page, "not paged: closed first" on the record, the technician told, and the
incident notice still posted, marked resolved. And a worker in another process is woken by the
commit itself (PostgreSQL NOTIFY, SQLite data_version), so that gap is small.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from sqlalchemy import select

from bot.wakeup import Wakeup
from storage import db, outbox
from storage.models import TicketEvent
from tests.fakes.pagers import FakePagerDuty
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, wait_until
from tests.http.p1_support import (
    INCIDENT_CHANNEL,
    SLACK_PEOPLE,
    pager_env,
    slack_close,
    slack_posts,
    slack_ticket,
)

CONFIG = {"slack": {"incident_channel": INCIDENT_CHANNEL}}


async def test_a_p1_closed_before_its_page_is_not_paged_but_its_notice_says_resolved(
    make_app, slack_api: FakeSlack, pagerduty: FakePagerDuty
):
    env = pager_env(pagerduty, None)
    # A web process with no worker: the P1's notice and page stay queued while it is closed.
    web: AppHarness = await make_app(
        slack=slack_api, config=CONFIG, people=SLACK_PEOPLE, env=env, scheduler=False
    )
    await slack_ticket(web, slack_api)
    await slack_close(web, slack_api, "HD-1")
    await web.stop()
    # Now a worker runs what was queued.
    app: AppHarness = await make_app(slack=slack_api, config=CONFIG, people=SLACK_PEOPLE, env=env)
    await wait_until(lambda: slack_posts(slack_api, INCIDENT_CHANNEL), what="the notice")
    await wait_until(
        lambda: "not paged: closed first" in json.dumps(slack_posts(slack_api, "C0HELP")),
        what="the technician to be told",
    )
    await asyncio.sleep(1.0)
    assert pagerduty.calls("/v2/enqueue") == []  # nobody was woken
    [notice] = slack_posts(slack_api, INCIDENT_CHANNEL)
    shown = json.dumps(notice)
    assert "Resolved: P1 incident HD-1" in shown and "VPN-01" in shown
    async with app.services.sessions() as session:
        kinds = (await session.execute(select(TicketEvent.kind))).scalars().all()
        rows = await outbox.states_for(session, 1)
    assert "incident.not_paged" in kinds
    page = next(r for r in rows if r.kind == "page.pagerduty")
    assert (page.status, page.last_error) == ("cancelled", "not paged: closed first")
    show = await app.slash("show HD-1")
    assert "not paged: closed first" in await show.text()


async def _woken_after_commit(url: str) -> float:
    """Seconds from another engine's commit of an outbox row to the wake-up callback."""
    woken = asyncio.Event()
    watcher = db.create_engine(url)
    writer = db.create_engine(url)  # another process's connection
    wakeup = Wakeup(watcher, url, woken.set)
    try:
        wakeup.start()
        await asyncio.sleep(0.5)  # listening / first look taken
        woken.clear()
        sessions = db.session_factory(writer)
        async with sessions() as session, session.begin():
            await outbox.enqueue(session, kind="message", payload={"text": "wake up"})
        committed = time.monotonic()
        await asyncio.wait_for(woken.wait(), 5)
        return time.monotonic() - committed
    finally:
        await wakeup.stop()
        await watcher.dispose()
        await writer.dispose()


async def test_a_commit_in_another_process_wakes_the_worker_at_once(db_url: str) -> None:
    took = await _woken_after_commit(db_url)
    assert took < 0.3, f"woken {took:.3f} s after the commit"


async def test_split_processes_deliver_a_ticket_card_promptly(
    db_url: str, slack_api: FakeSlack, spawn: Any, tmp_path: Any
) -> None:
    """`serve --no-scheduler` and `worker` on one database: cards arrive well inside the poll."""
    from tests.harness import BOT_TOKEN, SIGNING_SECRET
    from tests.http.processes import free_port, healthy

    port = free_port()
    env = {
        "DATABASE_URL": db_url,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": f"{slack_api.url}/api/",
        "PORT": str(port),
    }
    web = await spawn("serve", "--no-scheduler", env=env, name="web")
    worker = await spawn("worker", env=env, name="worker")
    await web.wait_for_line("listening on")
    await worker.wait_for_line("outbox worker running")
    client = AppHarness(tmp_path, env, None, None)
    client.url = f"http://127.0.0.1:{port}"
    import aiohttp

    async with aiohttp.ClientSession() as client.http:
        await wait_until(lambda: healthy(client.http, port), timeout=15)  # type: ignore[arg-type]
        latencies = []
        for n in range(5):
            # A second apart: posts to one channel are paced to about one a second.
            await asyncio.sleep(1.0)
            answered = await slack_ticket(client, slack_api, priority="P3", users=1)
            await wait_until(lambda n=n: len(slack_posts(slack_api, "C0HELP")) > n, timeout=5)
            latencies.append(slack_api.calls("/api/chat.postMessage")[-1].at - answered)
    # The worker polls every 0.5 s; woken by the commit it does not wait for the poll.
    assert sorted(latencies)[2] < 0.25, latencies  # the poll alone: about 0.45 s
