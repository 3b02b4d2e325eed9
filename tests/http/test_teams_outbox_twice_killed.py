"""A Teams message whose workers died twice after sending it is not sent a third time.

SPEC ("A worker that dies mid-delivery"): Teams offers no look-up of an earlier send, so a
Teams message may repeat once, and only when its process died between the send and its
record. The inbound answers were held to that (test_teams_answer_twice_killed.py); the outbox
was not: a row taken over from a dead worker is in doubt and, with nothing to look up, was sent
again every time, so a second worker dying the same way made a third copy (an incident notice
in the channel three times, a manager asked three times to approve). Now the resend in doubt
is recorded before it goes; a row found in doubt again after it is recorded as delivered.

Here a web process without a worker takes a P1 over Teams (the incident notice is a row), then
real `python -m bot worker` processes on its database (a SQLite file, or PostgreSQL) deliver
it; the connector posts the notice and then holds its answer while the worker is SIGKILLed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from sqlalchemy import select

from storage import db
from storage.models import OutboxMessage
from tests.fakes.base import Recorded
from tests.fakes.botframework import FakeConnector
from tests.harness import AppHarness
from tests.http.conftest_teams import (
    PEOPLE,
    PERSONAL,
    TENANT,
    activity,
    card_of,
    form_values,
    message,
    submit_action,
)
from tests.http.p1_support import INCIDENT_CONVERSATION, eventually
from tests.http.processes import Spawn

LEASE = "3"
CLOSE = {"resolution_note": "Restarted the VPN concentrator VPN-01 and failed over the tunnel",
         "resolution_category": "Incident", "time_spent": "1h", "kb_article": ""}  # fmt: skip
HOLD = 30.0


class PostThenHold(FakeConnector):
    """A connector that, armed (`hold`), posts the next message to the incident channel and
    then holds its answer until released: the worker may die having sent it. Armed with
    `posted=False`, it holds the request before posting it, and drops it: the worker may die
    with nothing sent."""

    def __init__(self) -> None:
        super().__init__(threaded=False)
        self.armed = False
        self.posts = True
        self.held = asyncio.Event()
        self.released = asyncio.Event()

    def hold(self, *, posted: bool = True) -> None:
        self.armed, self.posts = True, posted
        self.held, self.released = asyncio.Event(), asyncio.Event()

    async def handle(self, rec: Recorded, request: web.Request) -> web.StreamResponse:
        to_incident = rec.method == "POST" and INCIDENT_CONVERSATION in unquote(rec.raw_path)
        if not (self.armed and to_incident):
            return await super().handle(rec, request)
        self.armed = False
        response = await super().handle(rec, request) if self.posts else web.Response(status=500)
        self.held.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.released.wait(), HOLD)
        return response


async def say(app: AppHarness, fake: FakeConnector, text: str = "",
              value: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    posted = len(fake.activities(PERSONAL))
    sent = activity(fake.service_url, value=value) if value else message(fake.service_url, text)
    assert (await app.teams(sent)).status == 201
    await eventually(lambda: len(fake.activities(PERSONAL)) > posted, what="the bot's answer")
    return fake.activities(PERSONAL)[-1]


async def rows(url: str) -> list[OutboxMessage]:
    engine = db.create_engine(url)
    try:
        async with db.session_factory(engine)() as session:
            return list((await session.execute(select(OutboxMessage))).scalars().all())
    finally:
        await engine.dispose()


async def notice_row(url: str) -> OutboxMessage:
    found = [
        r
        for r in await rows(url)
        if r.kind == "message" and r.payload.get("channel") == INCIDENT_CONVERSATION
    ]
    assert len(found) == 1, found
    return found[0]


def web_config(connector: FakeConnector) -> dict[str, Any]:
    return {"teams": {"service_url": connector.service_url, "tenant_id": TENANT,
                      "incident_conversation": INCIDENT_CONVERSATION}}  # fmt: skip


async def p1_queued(make_app: Any, connector: FakeConnector) -> dict[str, str]:
    """A web process without a worker takes a P1 over Teams: the notice is only a row. The
    workers' environment."""
    app: AppHarness = await make_app(config=web_config(connector), people=PEOPLE, scheduler=False)
    form = card_of(await say(app, connector, "ticket new VPN down"))
    values = form_values(priority="P1", users_affected="25", category="network",
                         summary="VPN down for the whole Lisbon office")  # fmt: skip
    await say(app, connector, value={**submit_action(form)["fallback"]["data"], **values})
    await app.stop()
    assert connector.activities(INCIDENT_CONVERSATION) == []  # only a row so far
    return {**app.env, "OUTBOX_LEASE_SECONDS": LEASE}


async def killed_at_send(
    connector: PostThenHold, spawn: Spawn, env: dict[str, str], name: str, *, posted: bool = True
) -> None:
    """A worker sends the notice; once the connector has it (posted, or not), it is killed."""
    connector.hold(posted=posted)
    worker = await spawn("worker", env=env, name=name)
    await asyncio.wait_for(connector.held.wait(), 30)
    await worker.stop(signal.SIGKILL)
    connector.released.set()


async def test_a_teams_notice_sent_by_two_workers_that_died_is_not_sent_a_third_time(
    make_app: Any, db_url: str, spawn: Spawn
) -> None:
    connector = PostThenHold()
    await connector.start()
    try:
        env = await p1_queued(make_app, connector)
        notices = lambda: connector.activities(INCIDENT_CONVERSATION)  # noqa: E731

        async def sent_then_killed(name: str, count: int) -> None:
            await killed_at_send(connector, spawn, env, name)
            assert len(notices()) == count

        # Worker 1 posts it and dies before recording it; worker 2 takes the row over once
        # its lease ran out (in doubt, nothing to look up: sent again, as SPEC allows once)
        # and dies the same way.
        await sent_then_killed("worker 1", 1)
        await sent_then_killed("worker 2", 2)

        # Worker 3 takes it over again: recorded as delivered, not posted a third time.
        third = await spawn("worker", env=env, name="worker 3")

        async def delivered() -> bool:
            return (await notice_row(db_url)).status == "delivered"

        await eventually(delivered, timeout=20, what="the notice's row to be recorded")
        await asyncio.sleep(0.5)
        assert len(notices()) == 2, [n.get("text") for n in notices()]
        row = await notice_row(db_url)
        assert row.attempts == 3 and row.result.get("not_sent_again") is True, row.result
        assert any("not sent a third time" in line for line in third.lines), third.lines[-20:]

        # Closing the P1 updates its notice, where it landed: not known here, so that update
        # is given up (it was retried for ever, a KeyError each time, before).
        app: AppHarness = await make_app(config=web_config(connector), people=PEOPLE,
                                         scheduler=False)  # fmt: skip
        form = card_of(await say(app, connector, "ticket close HD-1"))
        await say(app, connector, value={**submit_action(form)["fallback"]["data"], **CLOSE})

        async def follow_ups() -> list[OutboxMessage]:
            return [r for r in await rows(db_url) if r.payload.get("after") == row.id]

        async def settled() -> bool:
            found = await follow_ups()
            return bool(found) and all(r.status != "pending" for r in found)

        await eventually(settled, timeout=20, what="the notice's update to be settled")
        assert {r.status for r in await follow_ups()} == {"cancelled"}
        assert [
            u for u in connector.updates() if u["_conversation_id"] == INCIDENT_CONVERSATION
        ] == []
        assert not [line for line in third.lines if "Traceback" in line], third.lines
    finally:
        connector.released.set()
        await connector.stop()


async def test_a_resend_refused_cleanly_does_not_use_up_the_one_repeat(
    make_app: Any, db_url: str, spawn: Spawn
) -> None:
    """Worker 1 dies with its send still on the way (it never reached Teams): the row is in
    doubt. Worker 2's resend is throttled (429: refused, certainly not posted); its retry after
    the Retry-After window is still the one repeat, and posts the notice, once."""
    connector = PostThenHold()
    await connector.start()
    try:
        env = await p1_queued(make_app, connector)
        await killed_at_send(connector, spawn, env, "worker 1", posted=False)
        assert connector.activities(INCIDENT_CONVERSATION) == []
        connector.throttle(INCIDENT_CONVERSATION, times=1, retry_after=1.0)
        second = await spawn("worker", env=env, name="worker 2")

        async def delivered() -> bool:
            return (await notice_row(db_url)).status == "delivered"

        await eventually(delivered, timeout=30, what="the notice's row to be recorded")
        assert connector.refusals, "the resend was not throttled"
        assert len(connector.activities(INCIDENT_CONVERSATION)) == 1
        row = await notice_row(db_url)
        assert "not_sent_again" not in row.result and row.result.get("activity_id"), row.result
        assert not any("not sent a third time" in line for line in second.lines)
    finally:
        connector.released.set()
        await connector.stop()


class Dropping(FakeConnector):
    """Cuts the connection of the first `times` sends to the incident channel, unposted."""

    def __init__(self, times: int) -> None:
        super().__init__(threaded=False)
        self.left = times

    async def handle(self, rec: Recorded, request: web.Request) -> web.StreamResponse:
        to_incident = rec.method == "POST" and INCIDENT_CONVERSATION in unquote(rec.raw_path)
        if self.left > 0 and to_incident:
            self.left -= 1
            assert request.transport is not None
            request.transport.close()  # a connection reset: the bot cannot know it was not posted
            return web.Response(status=500)
        return await super().handle(rec, request)


async def test_sends_cut_off_twice_do_not_use_up_the_one_repeat(
    make_app: Any, db_url: str, spawn: Spawn
) -> None:
    """The one repeat is for a sender that died. Two sends cut off in turn (in doubt both:
    they may have arrived) are sent again as before: the notice was recorded as delivered
    unsent, and lost, once the limit counted them (found in review)."""
    connector = Dropping(times=2)
    await connector.start()
    try:
        env = await p1_queued(make_app, connector)
        worker = await spawn("worker", env=env, name="worker")

        async def delivered() -> bool:
            return (await notice_row(db_url)).status == "delivered"

        await eventually(delivered, timeout=40, what="the notice's row to be recorded")
        assert connector.left == 0
        assert len(connector.activities(INCIDENT_CONVERSATION)) == 1
        row = await notice_row(db_url)
        assert row.attempts == 3 and row.result.get("activity_id"), row.result
        assert not any("not sent a third time" in line for line in worker.lines)
    finally:
        await connector.stop()
