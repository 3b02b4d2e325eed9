"""The chaos soak over Slack Socket Mode (`python -m bench.chaos --transport socket`).

The same workload, kills and invariants as bench/chaos.py, but Slack's requests arrive only
over WebSockets: the bot processes get SLACK_APP_TOKEN and no signing secret, and
`apps.connections.open` on the Slack fake answers the URL of a loopback Socket Mode server
(tests/fakes/socket_mode.py) where every `serve` process (`serve`, `web`) holds a connection.
The server hands each envelope to one of the open connections, as Slack spreads an app's
envelopes among its connections; one not acknowledged (its process killed before the ack, or
no ack within 3 s) is delivered again with the same `envelope_id`, `retry_attempt` one more
and `retry_reason`, on another connection or the next to open, up to 3 times. Now and then
the server also asks a connection to go (`disconnect`, `refresh_requested`), as Slack rotates
them. A person's request is one envelope; its answer is what the ack carries (a slash
command's reply, a form's `response_action`), whichever attempt's ack came first.

On top of chaos.py's invariants (which say that a redelivered envelope made nothing twice:
one ticket per intake, every post once, no time entry twice), this checks that every
envelope was acknowledged on every connection that stayed open (within 10 s; later than 3 s
is counted), and reports how many were delivered again and how many were lost to kills
(every attempt's connection closed before its ack, retries used up).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import signal
import time
from collections import Counter
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import aiohttp

from tests.fakes.slack_api import FakeSlack
from tests.fakes.socket_mode import FakeSocketMode

if TYPE_CHECKING:
    from bench.chaos import BotProc, Driver, Report, Workload

APP_TOKEN = "xapp-1-A0CHAOS-socket-soak-token"
ACK_WITHIN = 3.0  # Slack's wait for an ack before it delivers the envelope again
RETRIES = 3
UNACKED = 10.0  # an attempt on a connection still open this long without an ack: a violation
WAIT_ANSWER = 25.0  # a person waits this long for an answer (all attempts) before trying again
DISCONNECT_EVERY = (5.0, 20.0)
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
        self.rng = random.Random(f"{seed}-disconnect")
        self.slack = slack
        self.disconnects = 0
        self.stalls = 0
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
        return driver  # type: ignore[no-any-return]

    def unsettle(self, until: float, slots: list[BotProc]) -> None:
        """Until `until`: every 5-20 s one open connection is asked to go (`disconnect`), and
        every 3-8 s one `serve` process is stalled (SIGSTOP) for 3.5-6 s and let go on
        (SIGCONT), as a process starved of CPU or paused by its host is: the envelopes it
        holds go unacknowledged past 3 s, Slack delivers them again to another connection
        while the stalled process still has them, and it answers them too once it resumes."""
        self._tasks += [asyncio.ensure_future(self._rotate(until)),
                        asyncio.ensure_future(self._stall(until, slots))]  # fmt: skip

    async def _rotate(self, until: float) -> None:
        while time.monotonic() < until:
            await asyncio.sleep(self.rng.uniform(*DISCONNECT_EVERY))
            links = sorted(self.server.links)
            if not links or time.monotonic() >= until:
                continue
            ws = self.server.links.get(self.rng.choice(links))
            if ws is None or ws.closed:
                continue
            with contextlib.suppress(Exception):
                await ws.send_json({"type": "disconnect", "reason": "refresh_requested"})
                self.disconnects += 1

    async def _stall(self, until: float, slots: list[BotProc]) -> None:
        while time.monotonic() < until:
            await asyncio.sleep(self.rng.uniform(*STALL_EVERY))
            pick, pause = self.rng.random(), self.rng.uniform(*STALL_FOR)
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

    def check(self, report: Report, work: Workload) -> None:
        bad = report.violations.append
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
            if a.acked_at is None
        )
        acked_again = sum(1 for d in deliveries if len(d.acks) > 1)
        report.lines.append(
            f"  Socket Mode: {len(deliveries)} envelopes on {self.server.connections} "
            f"connections ({self.disconnects} disconnects asked, {self.stalls} stalls); "
            f"delivered again {len(redelivered)} ({dict(reasons)}), acknowledged more than once "
            f"{acked_again}; lost to kills (every attempt's connection closed first) "
            f"{len(lost)}; acks later than {ACK_WITHIN:g}s {late}, slowest {worst:.2f}s"
        )
        for delivery in lost:
            if not all(a.closed_at is not None for a in delivery.attempts):
                continue  # a violation above
            report.notes.append(
                f"envelope {delivery.envelope_id} ({delivery.envelope['type']}) lost: "
                f"{len(delivery.attempts)} attempts, each on a connection that closed first"
            )
