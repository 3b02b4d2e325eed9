"""A worker that dies mid-delivery: its rows are taken over and nothing goes out twice.

Real processes (`python -m bot worker`) on one database; the Slack fake keeps what it was
sent per channel, and can take a `chat.postMessage` and then hold its answer, so a worker can
be killed after Slack accepted a message and before the worker recorded it. A worker that
stays alive renews its leases, so a send slower than the lease is never taken over.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from typing import Any

from sqlalchemy import select

from storage import db
from storage.models import OutboxMessage
from tests.fakes.pagers import FakePagerDuty
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, is_due_later
from tests.http.p1_support import (
    INCIDENT_CHANNEL,
    SLACK_PEOPLE,
    eventually,
    fake_pagerduty,
    pager_env,
    slack_ticket,
)
from tests.http.processes import Spawn

CONFIG = {"slack": {"incident_channel": INCIDENT_CHANNEL}}
LEASE = "3"
# A send slower than the lease, by a worker that stays alive.
RENEWED_LEASE = "4"
SLOW_SLACK = 12.0
SLOW_PAGER = 8.0


async def p1_queued(make_app: Any, slack: FakeSlack, pd: FakePagerDuty) -> AppHarness:
    """A web process without a worker takes a P1: card, notice and page are only rows."""
    app: AppHarness = await make_app(slack=slack, config=CONFIG, people=SLACK_PEOPLE,
                                     scheduler=False, env=pager_env(pd, None))  # fmt: skip
    await slack_ticket(app, slack)
    await app.stop()
    return app


async def outbox_rows(url: str) -> list[OutboxMessage]:
    """The rows due now (not the ticket's SLA warnings or tier nudge, due later)."""
    engine = db.create_engine(url)
    try:
        async with db.session_factory(engine)() as session:
            query = select(OutboxMessage).order_by(OutboxMessage.id)
            return [r for r in (await session.execute(query)).scalars() if not is_due_later(r)]
    finally:
        await engine.dispose()


def cards_in(slack: FakeSlack, channel: str) -> list[dict[str, Any]]:
    """Top-level messages in `channel` (ticket cards, notices; not thread replies)."""
    return [m for m in slack.channel_messages(channel) if not m.get("thread_ts")]


def outbox_ids(slack: FakeSlack) -> list[int]:
    """The outbox row of every message Slack holds, from its metadata."""
    return [
        m["metadata"]["event_payload"]["outbox_id"]
        for messages in slack.messages.values()
        for m in messages
    ]


async def test_worker_killed_after_slack_took_the_messages_sends_nothing_twice(
    make_app, db_url: str, slack_api: FakeSlack, spawn: Spawn
):
    async with fake_pagerduty() as pd:
        app = await p1_queued(make_app, slack_api, pd)
        env = {**app.env, "OUTBOX_LEASE_SECONDS": LEASE}
        # Slack takes every post at once and answers only 30 s later; PagerDuty likewise.
        slack_api.delay_answer("chat.postMessage", 30)
        pd.set_delay("/v2/enqueue", 30)
        first = await spawn("worker", env=env, name="worker 1")
        await first.wait_for_line("outbox worker running")  # a start is slow on a loaded box
        await eventually(
            lambda: cards_in(slack_api, "C0HELP") and cards_in(slack_api, INCIDENT_CHANNEL),
            timeout=15,
            what="Slack to have the ticket card and the incident notice",
        )
        await eventually(lambda: pd.calls("/v2/enqueue"), timeout=45, what="the page request")
        rows = await outbox_rows(db_url)
        assert {r.status for r in rows} == {"pending"} and all(r.claimed_by for r in rows)
        await first.stop(signal.SIGKILL)  # after Slack took them, before anything was recorded
        killed = time.monotonic()

        slack_api.delay_answer("chat.postMessage", 0)
        pd.set_delay("/v2/enqueue", 0)
        second = await spawn("worker", env=env, name="worker 2")
        await second.wait_for_line("outbox worker running")

        async def all_delivered() -> bool:
            return {r.status for r in await outbox_rows(db_url)} == {"delivered"}

        await eventually(all_delivered, timeout=20, what="the taken-over rows to be delivered")
        taken_over = time.monotonic() - killed
        assert taken_over < 60, f"taken over after {taken_over:.1f}s"
        await asyncio.sleep(1.0)
        # The ticket card and the notice are in their channels once each.
        assert len(cards_in(slack_api, "C0HELP")) == 1, cards_in(slack_api, "C0HELP")
        assert len(cards_in(slack_api, INCIDENT_CHANNEL)) == 1
        ids = outbox_ids(slack_api)
        assert len(ids) == len(set(ids)), f"a row was posted twice: {sorted(ids)}"
        # The page was sent again, under the same dedup key: one incident.
        triggers = pd.events("trigger")
        assert {t["dedup_key"] for t in triggers} == {"HD-1"} and pd.open_dedup_keys() == ["HD-1"]
        rows = await outbox_rows(db_url)
        card = next(r for r in rows if r.payload.get("ticket_card"))
        assert card.result.get("found") is True and card.attempts == 2
        assert any("was already posted" in line for line in second.lines)


async def test_look_up_does_not_hide_a_message_that_never_arrived(
    make_app, db_url: str, slack_api: FakeSlack, spawn: Spawn
):
    async with fake_pagerduty() as pd:
        app = await p1_queued(make_app, slack_api, pd)
        env = {**app.env, "OUTBOX_LEASE_SECONDS": LEASE}
        # Every post hangs and then fails: nothing reaches the channels.
        slack_api.set_delay("/api/chat.postMessage", 30)
        slack_api.fail("/api/chat.postMessage", 500, times=10)
        first = await spawn("worker", env=env, name="worker 1")
        await first.wait_for_line("outbox worker running")
        await eventually(
            lambda: len(slack_api.calls("/api/chat.postMessage")) >= 2,
            timeout=15,
            what="both posts to be under way",
        )
        await first.stop(signal.SIGKILL)
        slack_api.reset()
        second = await spawn("worker", env=env, name="worker 2")
        await second.wait_for_line("outbox worker running")
        await eventually(
            lambda: cards_in(slack_api, "C0HELP") and cards_in(slack_api, INCIDENT_CHANNEL),
            timeout=20,
            what="the card and the notice, sent after a look-up found nothing",
        )
        lookups = slack_api.method_calls("conversations.history")
        assert {c["channel"] for c in lookups} >= {"C0HELP", INCIDENT_CHANNEL}
        await asyncio.sleep(1.0)
        assert len(cards_in(slack_api, "C0HELP")) == 1
        assert len(cards_in(slack_api, INCIDENT_CHANNEL)) == 1


async def test_a_live_worker_keeps_a_send_slower_than_its_lease(
    make_app, db_url: str, slack_api: FakeSlack, spawn: Spawn
):
    """Two workers side by side, a 4 s lease, Slack answering posts only after 12 s (three
    leases): the worker that claimed a row renews its lease while it waits, so the other never
    takes it over. One attempt each, one message each, no look-up, no second page."""
    async with fake_pagerduty() as pd:
        env_app: AppHarness = await make_app(slack=slack_api, config=CONFIG, people=SLACK_PEOPLE,
                                             scheduler=False, env=pager_env(pd, None))  # fmt: skip
        env = {**env_app.env, "OUTBOX_LEASE_SECONDS": RENEWED_LEASE}
        workers = [await spawn("worker", env=env, name=f"worker {n}") for n in (1, 2)]
        for worker in workers:
            await worker.wait_for_line("outbox worker running")
        # Slack takes every post at once and answers three leases later; PagerDuty answers two
        # leases later (its client gives up after 10 s).
        slack_api.delay_answer("chat.postMessage", SLOW_SLACK)
        pd.set_delay("/v2/enqueue", SLOW_PAGER)
        await slack_ticket(env_app, slack_api)  # the web process queues card, notice and page
        await eventually(
            lambda: cards_in(slack_api, "C0HELP") and cards_in(slack_api, INCIDENT_CHANNEL),
            timeout=10,
            what="Slack to have the ticket card and the incident notice",
        )
        posted = time.monotonic()

        async def all_delivered() -> bool:
            return {r.status for r in await outbox_rows(db_url)} == {"delivered"}

        with contextlib.suppress(AssertionError):  # the rows below say what went wrong
            await eventually(all_delivered, timeout=SLOW_SLACK + 8, what="every row delivered")
        # The answers really came after several leases had run out (unrenewed).
        assert time.monotonic() - posted > 2 * float(RENEWED_LEASE)
        await asyncio.sleep(1.0)  # a few polls of both workers: nothing more may go out

        assert all(w.process.returncode is None for w in workers)
        rows = await outbox_rows(db_url)
        assert {r.kind for r in rows} >= {"message", "page.pagerduty"}
        assert {(r.status, r.attempts, r.in_doubt) for r in rows} == {("delivered", 1, False)}, [
            (r.id, r.kind, r.status, r.attempts, r.in_doubt, r.claimed_by) for r in rows
        ]
        card = next(r for r in rows if r.payload.get("ticket_card"))
        assert "found" not in card.result  # delivered by its own post, not by a look-up
        # Posted once each; nobody had to look for an earlier attempt.
        assert len(slack_api.posts()) == len(cards_in(slack_api, "C0HELP")) + len(
            cards_in(slack_api, INCIDENT_CHANNEL)
        )
        assert len(cards_in(slack_api, "C0HELP")) == 1
        assert len(cards_in(slack_api, INCIDENT_CHANNEL)) == 1
        ids = outbox_ids(slack_api)
        assert len(ids) == len(set(ids)), f"a row was posted twice: {sorted(ids)}"
        assert not slack_api.method_calls("conversations.history")
        assert [t["dedup_key"] for t in pd.events("trigger")] == ["HD-1"]
        for worker in workers:
            assert not any("attempt 2" in line or "Traceback" in line for line in worker.lines)


async def test_a_notice_to_an_incident_channel_given_by_name_is_looked_up_too(
    make_app, db_url: str, slack_api: FakeSlack, spawn: Spawn
):
    """`slack.incident_channel: "#incidents"` (SPEC: "channel id (or #name)"). Worker 1 is
    killed after Slack took the card and the notice: the notice is looked up before it is
    sent again, as the card is. conversations.history takes only a channel id, so the name is
    found with conversations.list first; the notice was posted twice before that."""
    by_name = {"slack": {"incident_channel": "#incidents"}}
    incident = slack_api.add_channel("#incidents")
    async with fake_pagerduty() as pd:
        app: AppHarness = await make_app(slack=slack_api, config=by_name, people=SLACK_PEOPLE,
                                         scheduler=False, env=pager_env(pd, None))  # fmt: skip
        await slack_ticket(app, slack_api)
        await app.stop()
        env = {**app.env, "OUTBOX_LEASE_SECONDS": LEASE}
        slack_api.delay_answer("chat.postMessage", 30)
        first = await spawn("worker", env=env, name="worker 1")
        await first.wait_for_line("outbox worker running")
        await eventually(
            lambda: cards_in(slack_api, "C0HELP") and cards_in(slack_api, incident),
            timeout=15,
            what="Slack to have the ticket card and the incident notice",
        )
        await first.stop(signal.SIGKILL)  # after Slack took them, before anything was recorded
        slack_api.delay_answer("chat.postMessage", 0)
        second = await spawn("worker", env=env, name="worker 2")
        await second.wait_for_line("outbox worker running")

        async def all_delivered() -> bool:
            return {r.status for r in await outbox_rows(db_url)} == {"delivered"}

        await eventually(all_delivered, timeout=20, what="the taken-over rows to be delivered")
        await asyncio.sleep(1.0)
        assert len(cards_in(slack_api, incident)) == 1, cards_in(slack_api, incident)
        assert len(cards_in(slack_api, "C0HELP")) == 1
        listed = slack_api.method_calls("conversations.list")
        looked = {c["channel"] for c in slack_api.method_calls("conversations.history")}
        assert listed and looked >= {"C0HELP", incident}
        notice = next(r for r in await outbox_rows(db_url) if r.dedup_key == "p1:HD-1:notice:slack")
        assert notice.result == {"channel": incident, "ts": notice.result["ts"], "found": True}
