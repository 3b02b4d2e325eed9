"""Slack Socket Mode: every envelope is acknowledged, whatever Bolt made of it (SPEC).

Bolt's own handler only acknowledges envelopes its app answered with 200: an event no
listener wants (a plain channel message) is answered 404 "unhandled request" and never
acknowledged, so Slack redelivers it and eventually disables the app's event subscriptions.
Here an envelope is acknowledged with Bolt's answer when there is one, else empty, also when
handling fails. Its payload is checked like an HTTP body first (`shapes.inspect`): a
malformed one, or a kind the bot has no use for, never reaches Bolt. Pings every 5 s: a
connection lost without a close frame is noticed after four missed pongs (20 s) and reopened
with a fresh `apps.connections.open`.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.adapter.socket_mode.async_internals import run_async_bolt_app
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import shapes

log = logging.getLogger(__name__)
PING_INTERVAL = 5.0


def _payload(status: int, content_type: str, body: str) -> dict[str, Any] | None:
    """What goes back with the ack: Bolt's JSON answer (a slash command's reply, a modal's
    `response_action`), or nothing."""
    if status != 200 or not body:
        return None
    if content_type.startswith("application/json"):
        try:
            data = json.loads(body)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None
    return {"text": body}


class SocketModeHandler(AsyncSocketModeHandler):  # type: ignore[misc]
    """Bolt's aiohttp Socket Mode handler, acknowledging every envelope."""

    def __init__(self, app: AsyncApp, app_token: str, *, web_client: AsyncWebClient) -> None:
        super().__init__(app, app_token, web_client=web_client, ping_interval=PING_INTERVAL)
        self.client.message_listeners.append(self._unreadable)

    async def _unreadable(
        self, client: AsyncBaseSocketModeClient, message: dict[str, Any], raw: str | None
    ) -> None:
        """An envelope whose payload slack_sdk cannot even read (not an object): acknowledged
        here, and its payload dropped so that slack_sdk does not fail on it next."""
        envelope_id = message.get("envelope_id")
        payload = message.get("payload", {})
        if not envelope_id or isinstance(payload, dict | str):
            return
        log.warning(
            "slack: malformed socket envelope %s acknowledged, not handled: its payload is %s",
            envelope_id,
            type(payload).__name__,
        )
        del message["payload"]
        await client.send_socket_mode_response(SocketModeResponse(envelope_id=str(envelope_id)))

    async def handle(self, client: AsyncBaseSocketModeClient, req: SocketModeRequest) -> None:
        verdict = shapes.inspect(req.payload)
        if verdict.problem is not None or verdict.ignored is not None:
            if verdict.problem is not None:
                log.warning(
                    "slack: malformed socket envelope %s (%s) acknowledged, not handled: %s",
                    req.envelope_id,
                    verdict.kind,
                    verdict.problem,
                )
            else:
                log.info("slack: socket %s acknowledged: %s", verdict.kind, verdict.ignored)
            await client.send_socket_mode_response(
                SocketModeResponse(envelope_id=req.envelope_id, payload=verdict.answer)
            )
            return
        payload: dict[str, Any] | None = None
        try:
            response = await run_async_bolt_app(self.app, req)
            content_type = response.headers.get("content-type", [""])[0]
            payload = _payload(response.status, content_type, response.body or "")
            if response.status != 200:
                log.info(
                    "slack: socket envelope %s (%s) not handled (%s); acknowledged",
                    req.envelope_id,
                    req.type,
                    response.status,
                )
        except Exception:
            log.exception("slack: socket envelope %s (%s) failed", req.envelope_id, req.type)
        await client.send_socket_mode_response(
            SocketModeResponse(envelope_id=req.envelope_id, payload=payload)
        )
