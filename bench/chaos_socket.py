"""The chaos soak over Slack Socket Mode (`python -m bench.chaos --transport socket`).

The same workload, kills and invariants as bench/chaos.py, but Slack's requests arrive only
over WebSockets: the bot processes get SLACK_APP_TOKEN and no signing secret, and
`apps.connections.open` on the Slack fake answers the URL of a loopback Socket Mode server
(tests/fakes/socket_mode.py) where every `serve` process (`serve`, `web`) holds a connection.
The server hands each envelope to one of the open connections, as Slack spreads an app's
envelopes among its connections; one not acknowledged (its process killed before the ack, or
no ack within 3 s) is delivered again with the same `envelope_id`, `retry_attempt` one more
and `retry_reason`, on another connection or the next to open, up to 3 times. Now and then
the server asks a connection to go (`disconnect`, `refresh_requested`), as Slack rotates them,
and a `serve` process is stalled for a few seconds (SIGSTOP, then SIGCONT): its envelopes are
delivered again elsewhere while it still holds them. A person's request is one envelope; its
answer is what the ack carries (a slash command's reply, a form's `response_action`),
whichever attempt's ack came first. Besides chaos.py's workload, the technician shares files
in open tickets' card threads (Events API envelopes) and chats in the channels (messages the
bot ignores).

On top of chaos.py's invariants (which say that a redelivered envelope made nothing twice:
one ticket per intake, every post once, no time entry twice), this checks that every
envelope was acknowledged on every connection that stayed open (within 10 s; later than 3 s
is counted) and that no shared file was recorded twice, and reports how many envelopes were
delivered again, how many were lost to kills (every attempt's connection closed before its
ack, retries used up), and the files not recorded (with why it may be).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import signal
import time
from collections import Counter
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import aiohttp
from sqlalchemy import select

from storage import db
from storage.models import Ticket, TicketAttachment
from tests.fakes.slack_api import FakeSlack
from tests.fakes.socket_mode import Delivery, FakeSocketMode

if TYPE_CHECKING:
    from bench.chaos import BotProc, Driver, Report, Workload

CHANNELS = ("C0CHAOS1", "C0CHAOS2", "C0CHAOS3", "C0CHAOS4")  # chaos.CHANNELS

APP_TOKEN = "xapp-1-A0CHAOS-socket-soak-token"
ACK_WITHIN = 3.0  # Slack's wait for an ack before it delivers the envelope again
RETRIES = 3
UNACKED = 10.0  # an attempt on a connection still open this long without an ack: a violation
WAIT_ANSWER = 25.0  # a person waits this long for an answer (all attempts) before trying again
DISCONNECT_EVERY = (5.0, 20.0)
FILES_EVERY = (0.5, 2.0)  # a file shared in a ticket card's thread (an Events API envelope)
STALL_EVERY = (3.0, 8.0)
STALL_FOR = (3.5, 6.0)


class SocketPost:
    """chaos.Driver's requests as Socket Mode envelopes (the body it built, read back):
    mixed into the Driver class chaos.py passes (`SocketTransport.driver`)."""

    transport: SocketTransport
    work: Workload

    async def post(self, rng: random.Random, body: str) -> str | None:
        """The answer the first ack carried (JSON text, "" for an empty ack), or None when no
        attempt was acknowledged within WAIT_ANSWER."""
        fields = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
        if "payload" in fields:
            kind, payload = "interactive", json.loads(fields["payload"])
        else:
            kind, payload = "slash_commands", fields
        envelope = {
            "envelope_id": f"env-{secrets.token_hex(8)}",
            "type": kind,
            "accepts_response_payload": True,
            "payload": payload,
        }
        delivery = self.transport.server.deliver(envelope, retries=RETRIES,
                                                 ack_within=ACK_WITHIN)  # fmt: skip
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(delivery.done.wait(), WAIT_ANSWER)
        ack = delivery.answer
        if ack is None:
            self.work.unanswered += 1
            return None
        answer = ack.get("payload")
        return json.dumps(answer, ensure_ascii=False) if answer else ""


class SocketTransport:
    """The Socket Mode server, what the bot processes need to use it, and its checks."""

    def __init__(self, seed: int, slack: FakeSlack) -> None:
        self.server = FakeSocketMode(rng=random.Random(f"{seed}-socket"))
        # One generator per kind of unsettling: each one's choices follow from the seed.
        self.rng = {k: random.Random(f"{seed}-{k}") for k in ("disconnect", "stall", "files")}
        self.slack = slack
        self.disconnects = 0
        self.stalls = 0
        # file id -> the event that shared it, the ticket, the card's channel and ts, when
        self.files: dict[str, tuple[Delivery, str, str, str, float]] = {}
        self.chatter = 0  # plain channel messages (ignored by the bot, acknowledged all the same)
        self._driver: Any = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.server.start()
        self.slack.set_response("apps.connections.open", {"ok": True, "url": self.server.url})

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.server.stop()

    def env(self, env: dict[str, str]) -> dict[str, str]:
        """Socket Mode only: the app token, no signing secret (POST /slack/events is 404)."""
        env = {k: v for k, v in env.items() if k != "SLACK_SIGNING_SECRET"}
        return {**env, "SLACK_APP_TOKEN": APP_TOKEN}

    def driver(
        self, base: type[Driver], slots: list[BotProc], http: aiohttp.ClientSession
    ) -> Driver:
        """chaos.py's `base` Driver, sending its requests over the socket."""
        cls = type("SocketDriver", (SocketPost, base), {})
        driver: Any = cls(slots, self.slack, http)
        driver.transport = self
        self._driver = driver
        return driver  # type: ignore[no-any-return]

    def unsettle(self, until: float, slots: list[BotProc]) -> None:
        """Until `until`: every 5-20 s one open connection is asked to go (`disconnect`), and
        every 3-8 s one `serve` process is stalled (SIGSTOP) for 3.5-6 s and let go on
        (SIGCONT), as a process starved of CPU or paused by its host is: the envelopes it
        holds go unacknowledged past 3 s, Slack delivers them again to another connection
        while the stalled process still has them, and it answers them too once it resumes."""
        self._tasks += [asyncio.ensure_future(self._rotate(until)),
                        asyncio.ensure_future(self._stall(until, slots)),
                        asyncio.ensure_future(self._share_files(until))]  # fmt: skip

    async def _share_files(self, until: float) -> None:
        """Every 0.5-2 s the technician shares a file in the thread of an open ticket's card
        (Events API `message`, subtype `file_share`: recorded on the ticket, once per file),
        or says something in a channel (a message the bot acknowledges and ignores)."""
        while time.monotonic() < until:
            await asyncio.sleep(self.rng["files"].uniform(*FILES_EVERY))
            numbers = list(self._driver.work.opened) if self._driver is not None else []
            number = self.rng["files"].choice(numbers) if numbers else ""
            card = self._card(number) if number else None
            token = secrets.token_hex(6)
            event: dict[str, Any] = {
                "type": "message",
                "user": "UTECH",
                "text": f"chaos note {token}",
                "ts": f"{time.time():.6f}",
                "channel_type": "channel",
            }
            if card is None or self.rng["files"].random() < 0.2:
                event["channel"] = self.rng["files"].choice(CHANNELS)
                self.chatter += 1
            else:
                file_id = f"F{token.upper()}"
                event.update(
                    channel=card[0], thread_ts=card[1], subtype="file_share",
                    files=[{"id": file_id, "name": f"{file_id}.png", "mimetype": "image/png",
                            "permalink": f"https://fake-team.slack.com/files/UTECH/"
                                         f"{file_id}/{file_id.lower()}.png",
                            "size": 2048}],
                )  # fmt: skip
            envelope = {
                "envelope_id": f"env-{secrets.token_hex(8)}",
                "type": "events_api",
                "accepts_response_payload": False,
                "payload": {
                    "token": "legacy", "team_id": "T0TEAM", "api_app_id": "A0APP",
                    "event": event, "type": "event_callback", "event_id": f"Ev{token}",
                    "event_time": int(time.time()),
                    "authorizations": [{"team_id": "T0TEAM", "user_id": "UBOT", "is_bot": True,
                                        "is_enterprise_install": False}],
                },
            }  # fmt: skip
            delivery = self.server.deliver(envelope, retries=RETRIES, ack_within=ACK_WITHIN)
            if card is not None and "files" in event:
                self.files[event["files"][0]["id"]] = (delivery, number, *card, time.time())

    def _card(self, number: str) -> tuple[str, str] | None:
        """The channel and ts of `number`'s ticket card, as Slack has it (None: not yet)."""
        named = re.compile(rf"\b{re.escape(number)}\b")
        for channel in CHANNELS:
            for message in self.slack.messages.get(channel, []):
                meta = (message.get("metadata") or {}).get("event_payload") or {}
                if message.get("thread_ts") or not meta.get("outbox_id"):
                    continue
                # Posted a while ago: a person does not answer in a thread within a second
                # of it, and by then the bot has recorded where its card is.
                if named.search(str(message.get("text") or "")):
                    posted = str(message["ts"])
                    return (channel, posted) if time.time() - float(posted) > 3 else None
        return None

    async def _rotate(self, until: float) -> None:
        while time.monotonic() < until:
            await asyncio.sleep(self.rng["disconnect"].uniform(*DISCONNECT_EVERY))
            links = sorted(self.server.links)
            if not links or time.monotonic() >= until:
                continue
            ws = self.server.links.get(self.rng["disconnect"].choice(links))
            if ws is None or ws.closed:
                continue
            with contextlib.suppress(Exception):
                await ws.send_json({"type": "disconnect", "reason": "refresh_requested"})
                self.disconnects += 1

    async def _stall(self, until: float, slots: list[BotProc]) -> None:
        while time.monotonic() < until:
            await asyncio.sleep(self.rng["stall"].uniform(*STALL_EVERY))
            pick, pause = self.rng["stall"].random(), self.rng["stall"].uniform(*STALL_FOR)
            up = [s for s in slots if s.serves and s.ready and s.alive()]
            if not up or time.monotonic() >= until:
                continue
            proc = up[int(pick * len(up))].proc
            assert proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGSTOP)
                self.stalls += 1
                try:
                    await asyncio.sleep(pause)
                finally:
                    # Killed meanwhile, the group is gone; a restart is a new group.
                    if proc.poll() is None:
                        os.killpg(proc.pid, signal.SIGCONT)

    async def check(self, report: Report, work: Workload, url: str) -> None:
        bad = report.violations.append
        recorded: Counter[str] = Counter()
        engine = db.create_engine(url)
        try:
            async with db.session_factory(engine)() as session:
                keys = await session.execute(select(TicketAttachment.file_key))
                recorded.update(str(k) for k in keys.scalars())
                found = await session.execute(select(Ticket))
                tickets = {t.number: t for t in found.scalars()}
        finally:
            await engine.dispose()
        unrecorded: Counter[str] = Counter()
        for file_id, (delivery, number, channel, ts, at) in self.files.items():
            if recorded[file_id] > 1:
                bad(f"file {file_id} recorded {recorded[file_id]} times "
                    f"({len(delivery.attempts)} deliveries of its event)")  # fmt: skip
            elif not recorded[file_id]:
                unrecorded["acknowledged" if delivery.acked else "not acknowledged"] += 1
                ticket = tickets.get(number)
                where = (ticket.card_channel, ticket.card_message) if ticket else None
                report.notes.append(
                    f"file {file_id} shared {at - float(ts):.1f}s after {number}'s card "
                    f"({channel} {ts}) was posted, not recorded; the ticket's card now "
                    f"{where}, status {ticket.status if ticket else '?'}; acks "
                    f"{[a.acked_at is not None for a in delivery.attempts]}"
                )
        now = time.monotonic()
        deliveries = list(self.server.deliveries.values())
        closed_at: dict[int, float] = {}
        for delivery in deliveries:
            for attempt in delivery.attempts:
                if attempt.closed_at is not None:
                    closed_at[attempt.link] = attempt.closed_at
        late = 0
        worst = 0.0
        for delivery in deliveries:
            for attempt in delivery.attempts:
                if attempt.acked_at is not None:
                    took = attempt.acked_at - attempt.sent_at
                    worst = max(worst, took)
                    late += took > ACK_WITHIN
                    continue
                if attempt.closed_at is not None:
                    continue  # its process died (or the connection was rotated) first
                # Not acknowledged on a connection that was still open: for how long?
                open_until = now if attempt.link in self.server.links else None
                if open_until is None:
                    open_until = closed_at.get(attempt.link, now)
                if open_until - attempt.sent_at >= UNACKED:
                    bad(f"envelope {delivery.envelope_id} ({delivery.envelope['type']}, "
                        f"retry_attempt {attempt.retry_attempt}) never acknowledged on "
                        f"connection {attempt.link}, open {open_until - attempt.sent_at:.1f}s "
                        "after it")  # fmt: skip
        redelivered = [d for d in deliveries if len(d.attempts) > 1]
        lost = [d for d in deliveries if not d.acked]
        reasons = Counter(
            "closed" if a.closed_at is not None else "no ack in 3 s"
            for d in deliveries
            for a in d.attempts[:-1]
            if a.closed_at is not None or a.timed_out
        )
        acked_again = sum(1 for d in deliveries if len(d.acks) > 1)
        report.lines.append(
            f"  Socket Mode: {len(deliveries)} envelopes on {self.server.connections} "
            f"connections ({self.disconnects} disconnects asked, {self.stalls} stalls); "
            f"delivered again {len(redelivered)} ({dict(reasons)}), acknowledged more than once "
            f"{acked_again}; lost to kills (every attempt's connection closed first) "
            f"{len(lost)}; acks later than {ACK_WITHIN:g}s {late}, slowest {worst:.2f}s"
        )
        files_again = sum(1 for d, *_ in self.files.values() if len(d.attempts) > 1)
        report.lines.append(
            f"  files shared in card threads: {len(self.files)} ({files_again} delivered again), "
            f"{sum(1 for f in self.files if recorded[f])} recorded; not recorded "
            f"{dict(unrecorded)}; channel chatter {self.chatter}"
        )
        for delivery in lost:
            if not all(a.closed_at is not None for a in delivery.attempts):
                continue  # a violation above
            report.notes.append(
                f"envelope {delivery.envelope_id} ({delivery.envelope['type']}) lost: "
                f"{len(delivery.attempts)} attempts, each on a connection that closed first"
            )
