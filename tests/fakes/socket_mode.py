"""A loopback Socket Mode server: `apps.connections.open` hands out its ws:// URL (set on the
Slack fake by the test), it sends envelopes and records the acks, and it can drop or stall
connections the way Slack's edge does (a `disconnect` message, or silence with no close frame).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import WSMsgType, web


class FakeSocketMode:
    def __init__(self) -> None:
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
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
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
        self.open_now += 1
        self.connected_at.append(time.monotonic())
        try:
            await ws.send_json({"type": "hello", "num_connections": 1})
            await self._notify()
            async for message in ws:
                if self.silent:
                    continue  # swallow everything: no pong, no ack recorded
                if message.type == WSMsgType.PING:
                    await ws.pong(message.data)
                elif message.type == WSMsgType.TEXT:
                    self.acks.append(json.loads(message.data))
                    await self._notify()
        finally:
            self.open_now -= 1
        return ws

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
