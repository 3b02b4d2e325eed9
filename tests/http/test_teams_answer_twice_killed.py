"""An answer whose senders died twice after sending it is not sent a third time.

Found by the chaos soak's Teams mode (bench/chaos_teams.py; seed 12 on SQLite, seed 21 on
PostgreSQL): a ticket card, and a `time` answer, reached Teams three times. Process A posted
the answer and was SIGKILLed before recording it as given; the activity, redelivered by Bot
Framework (A never answered 2xx), went to B, which took A's claim over once its lease ran out,
posted the answer again and was SIGKILLed before recording it too; the next redelivery took
the claim over again and posted a third copy. SPEC ("A worker that dies mid-delivery"): a Teams
message may repeat once, and only when its process died between the send and its record.

Here real `python -m bot serve --no-scheduler` processes on one database (a SQLite file, or
PostgreSQL) get a Bot Framework activity with a real token (MicrosoftAppId set); the connector
posts the answer and then holds its response while the process that sent it is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiohttp
from aiohttp import web

from tests.fakes.base import Recorded
from tests.fakes.botframework import FakeBotAuth, FakeConnector
from tests.http import processes
from tests.http.conftest_teams import PEOPLE, PERSONAL, TENANT, message

APP_ID = "00000000-1111-2222-3333-444444444444"
PASSWORD = "s3cret-password"
HOLD = 30.0


class PostThenHold(FakeConnector):
    """A connector that, armed (`hold`), posts the next message to the technician's chat and
    then holds its answer until released: the sender may die having sent it."""

    def __init__(self) -> None:
        super().__init__(threaded=False)
        self.armed = False
        self.held = asyncio.Event()
        self.released = asyncio.Event()

    def hold(self) -> None:
        self.armed = True
        self.held, self.released = asyncio.Event(), asyncio.Event()

    async def handle(self, rec: Recorded, request: web.Request) -> web.StreamResponse:
        to_chat = f"/v3/conversations/{PERSONAL}/activities"
        response = await super().handle(rec, request)
        if self.armed and rec.method == "POST" and unquote(rec.raw_path).startswith(to_chat):
            self.armed = False
            self.held.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.released.wait(), HOLD)
        return response


async def test_an_answer_sent_by_two_processes_that_died_is_not_sent_a_third_time(
    database: str, tmp_path: Path, spawn: processes.Spawn
) -> None:
    connector = PostThenHold()
    await connector.start()
    auth = FakeBotAuth()
    await auth.start()
    env = processes.teams_env(tmp_path, database=database, service_url=connector.service_url,
                              tenant=TENANT, people=PEOPLE,
                              auth=auth.env(APP_ID, PASSWORD))  # fmt: skip

    async def serve(name: str) -> tuple[processes.Proc, str]:
        return await processes.serve_teams(spawn, env, name)

    a, to_a = await serve("A")
    b, to_b = await serve("B")
    shown = message(connector.service_url, "ticket show HD-7")
    posted = lambda: connector.activities(PERSONAL)  # noqa: E731
    try:
        async with aiohttp.ClientSession() as http:

            async def deliver(to: str, body: dict[str, Any]) -> int:
                token = auth.make_token(APP_ID, connector.service_url)
                headers = {"Authorization": f"Bearer {token}"}
                async with http.post(to, json=body, headers=headers) as response:
                    await response.read()
                    return response.status

            async def sent_then_killed(proc: processes.Proc, to: str, count: int) -> None:
                """Deliver the activity to `proc`; once its answer is posted, kill it."""
                connector.hold()
                first = asyncio.ensure_future(deliver(to, shown))
                await asyncio.wait_for(connector.held.wait(), 30)
                await proc.stop(signal.SIGKILL)
                connector.released.set()
                with contextlib.suppress(aiohttp.ClientError):
                    await first
                assert len(posted()) == count

            # A posts the answer and dies before recording it; Bot Framework delivers the
            # activity again to B, which answers once A's claim has run out, and dies too.
            await sent_then_killed(a, to_a, 1)
            await sent_then_killed(b, to_b, 2)
            assert "HD-7" in posted()[1]["text"]

            # Delivered again (C): answered 2xx, and no third copy; nor on a further one.
            c, to_c = await serve("C")
            assert await deliver(to_c, shown) == 201
            assert await deliver(to_c, shown) == 201
            await asyncio.sleep(0.5)
            assert len(posted()) == 2, [p.get("text") for p in posted()]
            assert any("not sent a third time" in line for line in c.lines), c.lines[-20:]
            assert not [line for line in c.lines if "Traceback" in line], c.lines
    finally:
        connector.released.set()
        await connector.stop()
        await auth.stop()
