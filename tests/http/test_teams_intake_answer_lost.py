"""A Teams intake whose process died before keeping its answer: the redelivery posts the card.

Found by the chaos soak's Teams mode (bench/chaos_teams.py; seeds 31, 51 and 61 on
PostgreSQL): the process that saved an intake was SIGKILLed between the commit and keeping its
answer with the delivery's claim; Bot Framework delivered the activity again and the bot
answered "This was done: an earlier delivery of this request was saved, but its answer was
lost" (handlers.replay.LOST). The ticket card never reached Teams: nothing to refresh, and the
ticket's notes waited two minutes for a card that never came. Now the change notes the ticket
it opened with its claim, in its own transaction, and such a redelivery posts that ticket's
card, remembered as its card.

That window is a few milliseconds with no outbound call in it to hold, so here process A
(real `serve --no-scheduler`, MicrosoftAppId set, a real JWT) is SIGKILLed with its card held
on its way to the connector (never posted), and its kept answer is then taken out of the claim:
the claim is left as A's commit wrote it. Process B gets the redelivered activity (same id).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiohttp
from aiohttp import web
from sqlalchemy import select, text

from storage import db
from storage.models import Ticket
from tests.fakes.base import Recorded
from tests.fakes.botframework import FakeBotAuth, FakeConnector
from tests.http import processes
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

APP_ID = "00000000-1111-2222-3333-444444444444"
PASSWORD = "s3cret-password"
HOLD = 30.0


class Holding(FakeConnector):
    """Holds the next POST to the technician's chat (`hold`) before posting it; dropped (its
    sender died), it is never posted."""

    def __init__(self) -> None:
        super().__init__(threaded=False)
        self.armed = False
        self.held = asyncio.Event()
        self.released = asyncio.Event()

    async def handle(self, rec: Recorded, request: web.Request) -> web.StreamResponse:
        to_chat = f"/v3/conversations/{PERSONAL}/activities"
        if self.armed and rec.method == "POST" and unquote(rec.raw_path).startswith(to_chat):
            self.armed = False
            self.held.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.released.wait(), HOLD)
            return self._error(503, "ServiceUnavailable", "the sender went away")
        return await super().handle(rec, request)


async def forget_kept_answer(url: str) -> None:
    """The intake's claim as its commit left it: the answer kept after it taken out."""
    engine = db.create_engine(url)
    try:
        async with engine.begin() as conn:
            rows = await conn.execute(
                text("SELECT key, answer FROM inbound_deliveries WHERE key LIKE 'teams:form:%'")
            )
            [(key, answer)] = rows.all()
            data = json.loads(answer)
            assert data["reply"]["ticket_card_of"], data  # A kept it before sending
            data["reply"] = None
            await conn.execute(
                text("UPDATE inbound_deliveries SET answer = :answer WHERE key = :key"),
                {"answer": json.dumps(data), "key": key},
            )
    finally:
        await engine.dispose()


async def the_ticket(url: str) -> Ticket:
    engine = db.create_engine(url)
    try:
        async with db.session_factory(engine)() as session:
            return (await session.execute(select(Ticket))).scalars().one()
    finally:
        await engine.dispose()


async def test_an_intake_whose_answer_was_not_kept_gets_its_card_on_redelivery(
    database: str, tmp_path: Path, spawn: processes.Spawn
) -> None:
    connector = Holding()
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
    url = connector.service_url
    try:
        async with aiohttp.ClientSession() as http:

            async def deliver(to: str, body: dict[str, Any]) -> int:
                headers = {"Authorization": f"Bearer {auth.make_token(APP_ID, url)}"}
                async with http.post(to, json=body, headers=headers) as response:
                    await response.read()
                    return response.status

            assert await deliver(to_a, message(url, "ticket new VPN down")) == 201
            [form] = connector.activities(PERSONAL)
            values = {**submit_action(card_of(form))["fallback"]["data"], **form_values()}
            submit = activity(url, value=values, replyToId=form["_id"])

            # A saves the ticket and dies with its card on the way (never posted).
            connector.armed = True
            first = asyncio.ensure_future(deliver(to_a, submit))
            await asyncio.wait_for(connector.held.wait(), 30)
            await a.stop(signal.SIGKILL)
            connector.released.set()
            with contextlib.suppress(aiohttp.ClientError):
                await first
            assert len(connector.activities(PERSONAL)) == 1
            await forget_kept_answer(database)

            # Redelivered to B: answered, once A's claim has run out, with the ticket's card.
            assert await deliver(to_b, submit) == 201
            [_, answer] = connector.activities(PERSONAL)
            assert "answer was lost" not in json.dumps(answer), answer.get("text")
            ticket = await the_ticket(database)
            card = card_of(answer)
            assert card["fallbackText"].startswith(f"{ticket.number} (P2)"), card
            assert "Close" in [a["title"] for a in card["actions"]]
            assert (ticket.card_channel, ticket.card_message) == (PERSONAL, answer["_id"])
            assert ticket.source_thread == answer["_id"]

            # And not again.
            assert await deliver(to_b, submit) == 201
            await asyncio.sleep(0.5)
            assert len(connector.activities(PERSONAL)) == 2
            assert not [line for line in b.lines if "Traceback" in line], b.lines
    finally:
        connector.released.set()
        await connector.stop()
        await auth.stop()
