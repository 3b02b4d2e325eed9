"""A `serve` killed between claiming a Teams answer and sending it: the redelivery answers, once.

Two real `python -m bot serve` processes on one database (a SQLite file, or PostgreSQL), and a
connector that can hold an answer's POST before it posts anything. Process A claims the answer
to `ticket show HD-7`, its POST is held, and A is SIGKILLed: the message was never posted, and
A's claim is left with no record of an answer. The activity redelivered to process B (Bot
Framework sends it again: A's turn never ended) is answered, once the dead claim's lease has
run out, and a further redelivery is not. Before that, while A was alive and its answer held, a
redelivery to B waited for it and answered nothing.
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
from botbuilder.schema import Activity
from sqlalchemy import select

from bot.teams.activity_handler import _answer_id
from storage import db, inbound
from storage.models import InboundDelivery
from tests.fakes.base import Recorded
from tests.fakes.botframework import FakeConnector
from tests.http import processes
from tests.http.conftest_teams import PEOPLE, PERSONAL, TENANT, card_of, message

HOLD = 30.0


class HoldingConnector(FakeConnector):
    """A connector that holds the next POST to the technician's chat (`hold_next`) before
    posting it: released, it is posted; released with `drop`, nothing is (its sender died)."""

    def __init__(self) -> None:
        super().__init__(threaded=False)
        self.hold_next = False
        self.drop = False
        self.held: list[Any] = []
        self.released = asyncio.Event()

    async def handle(self, rec: Recorded, request: web.Request) -> web.StreamResponse:
        to_chat = f"/v3/conversations/{PERSONAL}/activities"
        if self.hold_next and rec.method == "POST" and unquote(rec.raw_path).startswith(to_chat):
            self.hold_next = False
            self.held.append(rec.json)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.released.wait(), HOLD)
            if self.drop:
                return self._error(503, "ServiceUnavailable", "the sender went away")
        return await super().handle(rec, request)

    def hold(self) -> None:
        self.hold_next, self.drop = True, False
        self.released = asyncio.Event()


async def claims(url: str, body: dict[str, Any]) -> list[str]:
    """The rows of the activity's answer: its claim, and the record that it was given."""
    answer_id = _answer_id(Activity().deserialize(body))
    assert answer_id is not None
    key = inbound.key_for(answer_id)
    engine = db.create_engine(url)
    try:
        async with db.session_factory(engine)() as session:
            wanted = InboundDelivery.key.in_([key, inbound.ANSWERED + key])
            found = await session.scalars(select(InboundDelivery.key).where(wanted))
            return sorted("answered" if k.startswith(inbound.ANSWERED) else "claim" for k in found)
    finally:
        await engine.dispose()


async def test_a_serve_killed_after_claiming_an_answer_leaves_it_to_the_redelivery(
    database: str, tmp_path: Path, spawn: processes.Spawn
) -> None:
    connector = HoldingConnector()
    await connector.start()
    env = processes.teams_env(tmp_path, database=database, service_url=connector.service_url,
                              tenant=TENANT, people=PEOPLE)  # fmt: skip

    async def serve(name: str) -> tuple[processes.Proc, str]:
        return await processes.serve_teams(spawn, env, name)

    a, to_a = await serve("A")
    b, to_b = await serve("B")
    url = connector.service_url
    try:
        async with aiohttp.ClientSession() as http:

            async def deliver(to: str, body: dict[str, Any]) -> int:
                async with http.post(to, json=body) as response:
                    await response.read()
                    return response.status

            # -- A alive, its answer held: the redelivery to B waits for it, answers nothing.
            shown = message(url, "ticket help")
            connector.hold()
            first = asyncio.ensure_future(deliver(to_a, shown))
            await processes.eventually(lambda: connector.held, timeout=20, what="A's answer")
            second = asyncio.ensure_future(deliver(to_b, shown))
            await b.wait_for_line("another delivery of it is answering", timeout=20)
            connector.released.set()
            assert await first == 201 and await second == 201
            [helped] = connector.activities(PERSONAL)
            assert card_of(helped)
            assert await claims(database, shown) == ["answered", "claim"]

            # -- A killed after its claim, before its answer was posted.
            shown = message(url, "ticket show HD-7")
            connector.hold()
            first = asyncio.ensure_future(deliver(to_a, shown))
            await processes.eventually(lambda: connector.held[1:], timeout=20, what="A's answer")
            await a.stop(signal.SIGKILL)
            connector.drop = True
            connector.released.set()
            with contextlib.suppress(aiohttp.ClientError):
                await first
            assert len(connector.activities(PERSONAL)) == 1  # nothing posted
            assert await claims(database, shown) == ["claim"]  # claimed, never answered

            # Redelivered to B: answered once the dead claim's lease has run out; and not again.
            assert await deliver(to_b, shown) == 201
            [_, answer] = connector.activities(PERSONAL)
            assert "HD-7" in answer["text"], answer
            assert await deliver(to_b, shown) == 201
            assert len(connector.activities(PERSONAL)) == 2
            assert await claims(database, shown) == ["answered", "claim"]
            assert any("answered now" in line for line in b.lines), b.lines[-20:]
    finally:
        connector.released.set()
        await connector.stop()
    for proc in (a, b):
        assert not [line for line in proc.lines if "Traceback" in line], (proc.name, proc.lines)
