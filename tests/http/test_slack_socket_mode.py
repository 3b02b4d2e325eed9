"""Socket Mode: with SLACK_APP_TOKEN the bot connects out over a WebSocket and acks there."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from tests.fakes.slack_api import FakeSlack
from tests.harness import BOT_TOKEN


class FakeSocketMode:
    """A loopback WebSocket endpoint speaking Slack's Socket Mode envelope protocol."""

    def __init__(self) -> None:
        self.url = ""
        self.acks: list[dict[str, Any]] = []
        self.connected = asyncio.Event()
        self._ws: web.WebSocketResponse | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/link", self._link)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"ws://127.0.0.1:{port}/link"

    async def stop(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _link(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._ws = ws
        await ws.send_json({"type": "hello", "num_connections": 1})
        self.connected.set()
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                self.acks.append(json.loads(message.data))
        return ws

    async def send(self, envelope: dict[str, Any]) -> None:
        assert self._ws is not None
        await self._ws.send_json(envelope)


@pytest.fixture
async def socket_server() -> AsyncIterator[FakeSocketMode]:
    server = FakeSocketMode()
    await server.start()
    yield server
    await server.stop()


async def test_slash_command_over_socket_mode(
    make_app, slack_api: FakeSlack, socket_server: FakeSocketMode
):
    slack_api.set_response("apps.connections.open", {"ok": True, "url": socket_server.url})
    await make_app(
        env={
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_APP_TOKEN": "xapp-1-test-token",
            "SLACK_API_URL": f"{slack_api.url}/api/",
        }
    )
    await asyncio.wait_for(socket_server.connected.wait(), timeout=10)
    await socket_server.send(
        {
            "envelope_id": "env-1",
            "type": "slash_commands",
            "accepts_response_payload": True,
            "payload": {
                "command": "/ticket",
                "text": "help",
                "user_id": "UTECH",
                "user_name": "tech",
                "channel_id": "C0HELP",
                "team_id": "T0TEAM",
                "trigger_id": "t-1",
                "response_url": "http://127.0.0.1:9/x",
            },
        }
    )
    for _ in range(200):
        if socket_server.acks:
            break
        await asyncio.sleep(0.02)
    ack = socket_server.acks[0]
    assert ack["envelope_id"] == "env-1"
    assert "ticket show" in json.dumps(ack["payload"])
    opened = slack_api.method_calls("apps.connections.open")
    assert len(opened) == 1
