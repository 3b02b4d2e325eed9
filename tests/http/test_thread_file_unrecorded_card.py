"""A file shared in a ticket card's Slack thread before the card's message is recorded.

Found by the Socket Mode chaos soak (bench/chaos_socket.py; bench/README.md "Over Slack Socket
Mode", runs 8 and 10): the process posting a ticket card was killed after Slack took the post
and before it recorded the card's message on the ticket. Until another process took the row
over after its lease and found the post by its metadata, the bot did not know the thread was
a ticket's: a file shared there was acknowledged as "files outside a ticket's thread ignored",
and Slack never sends an acknowledged event again, so the file was lost. Here a real worker is
killed while Slack holds its answer to the card's post; the file is shared in the card's
thread before another worker takes the row over, and must be on the ticket exactly once after.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

from aiohttp import web
from sqlalchemy import func, select

from storage.models import Ticket, TicketAttachment
from tests.fakes.base import Recorded
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, wait_until
from tests.http.p1_support import submit_ticket
from tests.http.processes import Spawn
from tests.http.working_support import PEOPLE, RETRY, SlackFlow, card_recorded, events

SHOT = "https://fake-team.slack.com/files/UANA/F0SHOT/screenshot.png"


class HeldCard(FakeSlack):
    """Slack that, once armed, takes the next top-level post in C0HELP (it is in the channel
    at once) and holds its answer: the sender cannot know it arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.held = asyncio.Event()
        self.release = asyncio.Event()

    async def handle(self, rec: Recorded, request: web.Request) -> web.StreamResponse:
        params = rec.json if isinstance(rec.json, dict) else (rec.form or {})
        card = params.get("channel") == "C0HELP" and not params.get("thread_ts")
        if rec.path == "/api/chat.postMessage" and self.armed and card:
            self.armed = False
            answer = await super().handle(rec, request)
            self.held.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.release.wait(), 30)
            return answer
        return await super().handle(rec, request)


async def _attached(app: AppHarness) -> list[tuple[int, str]]:
    async with app.services.sessions() as session:
        found = await session.execute(
            select(TicketAttachment.ticket_id, TicketAttachment.name).order_by(TicketAttachment.id)
        )
        return [(int(r[0]), str(r[1])) for r in found]


async def _ticket(app: AppHarness) -> Ticket:
    async with app.services.sessions() as session:
        return (await session.execute(select(Ticket))).scalar_one()


async def test_a_file_shared_before_the_card_is_recorded_is_attached_once(
    make_app: Any, spawn: Spawn
) -> None:
    slack = HeldCard()
    await slack.start()
    try:
        app: AppHarness = await make_app(slack=slack, people=PEOPLE, scheduler=False)
        s = SlackFlow(app, slack)
        sender = await spawn("worker", env={**app.env, "OUTBOX_LEASE_SECONDS": "3"}, name="A")
        await sender.wait_for_line("outbox worker running")

        # A's post of the card reaches Slack; A is killed before it hears back.
        slack.armed = True
        assert (await submit_ticket(app, slack, priority="P3", users=1)).status == 200
        await asyncio.wait_for(slack.held.wait(), 30)
        await sender.stop(signal.SIGKILL)
        card = next(m for m in slack.channel_messages("C0HELP") if not m.get("thread_ts"))
        ticket = await _ticket(app)
        assert ticket.card_message is None

        # Ana shares a screenshot in the card's thread (Slack delivers it once; a retry of
        # the same event adds nothing).
        shot = {"id": "F0SHOT", "name": "screenshot.png", "title": "screenshot.png",
                "mimetype": "image/png", "size": 48213, "permalink": SHOT}  # fmt: skip
        body = s.event(user="UANA", thread=card["ts"], files=[shot], event_id="Ev0EARLY")
        assert (await app.slack(body, content_type="application/json")).status == 200
        assert (await app.slack(body, content_type="application/json", headers=RETRY)).status == 200
        # Chatter in another thread of the channel is not taken for the ticket's.
        other = s.event(user="UANA", thread="1600000000.000100", files=[{**shot, "id": "F0ELSE"}])
        assert (await app.slack(other, content_type="application/json")).status == 200
        await app.services.slack.drain()  # type: ignore[union-attr]

        # B takes the row over once A's lease has run out and finds the post by its metadata.
        taker = await spawn("worker", env={**app.env, "OUTBOX_LEASE_SECONDS": "3"}, name="B")
        await taker.wait_for_line("outbox worker running")
        await wait_until(lambda: card_recorded(app, ticket.number), timeout=30,
                         what="the card recorded by the takeover")  # fmt: skip
        slack.release.set()
        assert (await _ticket(app)).card_message == card["ts"]
        tops = [m for m in slack.channel_messages("C0HELP") if not m.get("thread_ts")]
        assert len(tops) == 1, "the card was posted again"

        # Acknowledged, the early event is never sent again: the file is on the ticket, once.
        assert await _attached(app) == [(ticket.id, "screenshot.png")]
        assert len(await events(app, "attachment.added")) == 1
        async with app.services.sessions() as session:
            total = await session.scalar(select(func.count()).select_from(TicketAttachment))
        assert total == 1

        # Nothing in doubt now: chatter in other threads costs no Slack call.
        read = len(slack.method_calls("conversations.history"))
        chatter = s.event(user="UANA", thread="1600000000.000200", files=[{**shot, "id": "F0MORE"}])
        assert (await app.slack(chatter, content_type="application/json")).status == 200
        await app.services.slack.drain()  # type: ignore[union-attr]
        assert len(slack.method_calls("conversations.history")) == read
        assert len(await _attached(app)) == 1
    finally:
        slack.release.set()
        await slack.stop()
