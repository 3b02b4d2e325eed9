"""A loopback Socket Mode server: `apps.connections.open` hands out its ws:// URL (set on the
Slack fake by the test), it sends envelopes and records the acks, and it can drop or stall
connections the way Slack's edge does (a `disconnect` message, or silence with no close frame).

`send` puts an envelope on the newest connection, as it is. `deliver` does what Slack does
with an app's envelopes: it sends each on one of the app's open connections (several
processes each hold one; the envelopes are spread among them), and one that is not
acknowledged (its connection closed first, or no ack within `ack_within`) is delivered again
with the same `envelope_id`, `retry_attempt` one more and a `retry_reason`, on another open
connection (or the next one to open), up to `retries` times.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web


@dataclass
class Attempt:
    """One sending of a delivered envelope: on which connection, when, and what came of it."""

    link: int  # the connection's number (1, 2, ... in the order they opened)
    retry_attempt: int
    sent_at: float
    acked_at: float | None = None
    closed_at: float | None = None  # its connection closed before the ack
    timed_out: bool = False  # no ack within ack_within: delivered again elsewhere


@dataclass
class Delivery:
    """An envelope as `deliver` hands it out, attempt by attempt, until one is acknowledged
    (`acked`) or `retries` ran out (`given_up`)."""

    envelope_id: str
    envelope: dict[str, Any]
    attempts: list[Attempt] = field(default_factory=list)
    acks: list[dict[str, Any]] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    given_up: bool = False

    @property
    def acked(self) -> bool:
        return bool(self.acks)

    @property
    def answer(self) -> dict[str, Any] | None:
        return self.acks[0] if self.acks else None


class FakeSocketMode:
    def __init__(self, rng: random.Random | None = None) -> None:
        self.url = ""
        # A URL whose WebSocket handshake is refused (HTTP 403), as a used or expired ticket's.
        self.refused_url = ""
        self.refused: list[str] = []
        # A URL whose handshake is never answered (the TCP connection is taken, then silence).
        self.hanging_url = ""
        self.hanging: list[str] = []
        self.acks: list[dict[str, Any]] = []
        # The query string of each connection to /link (Slack's ticket and app id).
        self.queries: list[str] = []
        self.connections = 0
        # Connections open now (a client that leaves an old one open holds Slack's slots).
        self.open_now = 0
        self.connected_at: list[float] = []
        # While True, new and current connections get no pongs and no messages (a dead link).
        self.silent = False
        self._ws: web.WebSocketResponse | None = None
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Condition()
        # Open connections by number, for `deliver` (which spreads envelopes among them).
        self.links: dict[int, web.WebSocketResponse] = {}
        self.deliveries: dict[str, Delivery] = {}
        self._rng = rng or random.Random()
        self._link_closed: dict[int, asyncio.Event] = {}
        self._delivering: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/link", self._link)
        app.router.add_get("/refused", self._refuse)
        app.router.add_get("/hang", self._hang)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"ws://127.0.0.1:{port}/link"
        self.refused_url = f"ws://127.0.0.1:{port}/refused"
        self.hanging_url = f"ws://127.0.0.1:{port}/hang"

    async def stop(self) -> None:
        for task in list(self._delivering):
            task.cancel()
        for ws in [*self.links.values(), self._ws]:
            if ws is not None and not ws.closed:
                with contextlib.suppress(Exception):
                    await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _refuse(self, request: web.Request) -> web.Response:
        self.refused.append(request.query_string)
        return web.json_response({"ok": False, "error": "invalid_ticket"}, status=403)

    async def _hang(self, request: web.Request) -> web.Response:
        self.hanging.append(request.query_string)
        await asyncio.Event().wait()  # until the server stops
        raise AssertionError("unreachable")

    async def _link(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        self._ws = ws
        self.queries.append(request.rel_url.raw_query_string)
        self.connections += 1
        link = self.connections
        self.open_now += 1
        self.connected_at.append(time.monotonic())
        closed = self._link_closed[link] = asyncio.Event()
        try:
            await ws.send_json({"type": "hello", "num_connections": len(self.links) + 1})
            self.links[link] = ws
            await self._notify()
            async for message in ws:
                if self.silent:
                    continue  # swallow everything: no pong, no ack recorded
                if message.type == WSMsgType.PING:
                    await ws.pong(message.data)
                elif message.type == WSMsgType.TEXT:
                    ack = json.loads(message.data)
                    self.acks.append(ack)
                    self._acked(link, ack)
                    await self._notify()
        finally:
            self.open_now -= 1
            self.links.pop(link, None)
            closed.set()
            await self._notify()
        return ws

    def _acked(self, link: int, ack: Any) -> None:
        envelope_id = ack.get("envelope_id") if isinstance(ack, dict) else None
        delivery = self.deliveries.get(envelope_id) if isinstance(envelope_id, str) else None
        if delivery is None:
            return
        delivery.acks.append(ack)
        for attempt in delivery.attempts:
            if attempt.link == link and attempt.acked_at is None:
                attempt.acked_at = time.monotonic()
                break
        delivery.done.set()

    def deliver(
        self,
        envelope: dict[str, Any],
        *,
        retries: int = 3,
        ack_within: float = 3.0,
        reason: str = "timeout",
    ) -> Delivery:
        """Hand `envelope` out as Slack does (see the module docstring); its Delivery is
        `done` once an attempt is acknowledged or the last one went unacknowledged."""
        envelope_id = str(envelope["envelope_id"])
        delivery = self.deliveries[envelope_id] = Delivery(envelope_id, envelope)
        task = asyncio.ensure_future(self._deliver(delivery, retries, ack_within, reason))
        self._delivering.add(task)
        task.add_done_callback(self._delivering.discard)
        return delivery

    async def _deliver(
        self, delivery: Delivery, retries: int, ack_within: float, reason: str
    ) -> None:
        try:
            for attempt_no in range(retries + 1):
                if attempt_no:
                    envelope = {**delivery.envelope, "retry_attempt": attempt_no,
                                "retry_reason": reason}  # fmt: skip
                else:
                    envelope = {**delivery.envelope, "retry_attempt": 0, "retry_reason": ""}
                link, ws = await self._a_link(avoid={a.link for a in delivery.attempts[-1:]})
                attempt = Attempt(link, attempt_no, time.monotonic())
                delivery.attempts.append(attempt)
                try:
                    await ws.send_json(envelope)
                except (ConnectionError, RuntimeError):
                    attempt.closed_at = time.monotonic()
                    continue
                closed = asyncio.ensure_future(self._link_closed[link].wait())
                acked = asyncio.ensure_future(delivery.done.wait())
                try:
                    await asyncio.wait({closed, acked}, timeout=ack_within,
                                       return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
                finally:
                    closed.cancel()
                    acked.cancel()
                if delivery.done.is_set():
                    return
                if self._link_closed[link].is_set():
                    attempt.closed_at = time.monotonic()
                else:
                    attempt.timed_out = True
            delivery.given_up = True
            delivery.done.set()
        except asyncio.CancelledError:
            delivery.done.set()
            raise

    async def _a_link(self, avoid: set[int]) -> tuple[int, web.WebSocketResponse]:
        """An open connection chosen at random, another than `avoid` when there is one;
        waits for one to open when none is."""
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self.links))
            choices = sorted(n for n in self.links if n not in avoid) or sorted(self.links)
            link = self._rng.choice(choices)
            return link, self.links[link]

    async def wait_connections(self, count: int, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: self.connections >= count), timeout
            )

    async def send(self, envelope: dict[str, Any]) -> None:
        assert self._ws is not None and not self._ws.closed, "no open Socket Mode connection"
        await self._ws.send_json(envelope)

    async def ack_for(self, envelope_id: str, count: int = 1, timeout: float = 10.0) -> dict:  # noqa: ASYNC109
        """The `count`-th ack of `envelope_id` (waits for it)."""

        def found() -> list[dict[str, Any]]:
            return [a for a in self.acks if a.get("envelope_id") == envelope_id]

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(found()) >= count), timeout)
        return found()[count - 1]

    def drop(self) -> None:
        """The current connection's TCP connection reset: no close frame, no goodbye."""
        assert self._ws is not None
        transport = self._ws._req.transport if self._ws._req is not None else None
        assert transport is not None, "no open Socket Mode connection"
        transport.abort()

    async def disconnect(self) -> None:
        """What Slack sends before it rotates a connection."""
        await self.send({"type": "disconnect", "reason": "refresh_requested"})


def slash_envelope(
    text: str, *, envelope_id: str, user: str = "UTECH", trigger: str | None = None, retry: int = 0
) -> dict[str, Any]:
    return {
        "envelope_id": envelope_id,
        "type": "slash_commands",
        "accepts_response_payload": True,
        "retry_attempt": retry,
        "retry_reason": "timeout" if retry else "",
        "payload": {
            "command": "/ticket",
            "text": text,
            "user_id": user,
            "user_name": user.lower(),
            "channel_id": "C0HELP",
            "team_id": "T0TEAM",
            "api_app_id": "A0APP",
            "trigger_id": trigger or f"trigger-{envelope_id}",
            "response_url": "http://127.0.0.1:9/unused",
        },
    }


def interactive_envelope(payload: dict[str, Any], *, envelope_id: str) -> dict[str, Any]:
    return {
        "envelope_id": envelope_id,
        "type": "interactive",
        "accepts_response_payload": True,
        "payload": payload,
    }


def event_envelope(event: dict[str, Any], *, envelope_id: str, retry: int = 0) -> dict[str, Any]:
    return {
        "envelope_id": envelope_id,
        "type": "events_api",
        "accepts_response_payload": False,
        "retry_attempt": retry,
        "retry_reason": "timeout" if retry else "",
        "payload": {
            "token": "legacy",
            "team_id": "T0TEAM",
            "api_app_id": "A0APP",
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{envelope_id}",
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "team_id": "T0TEAM",
                    "user_id": "UBOT",
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
        },
    }
