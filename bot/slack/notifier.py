"""Delivers Slack messages, DMs and message updates from the outbox."""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.notifiers import DeliveryError, retry_after_seconds
from cards import slack as blockkit
from cards.model import Card, Text, Typed
from storage.models import OutboxMessage

log = logging.getLogger(__name__)
# Errors where retrying the same call cannot succeed.
PERMANENT = {
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "token_revoked",
    "invalid_blocks",
    "invalid_arguments",
    "msg_too_long",
    "no_text",
    "user_not_found",
    "cant_update_message",
    "message_not_found",
    "is_archived",
    "missing_scope",
}
# Errors meaning "you cannot post here": fall back to a DM to `fallback_user`.
NOT_HERE = {"not_in_channel", "channel_not_found"}


def _content(payload: dict[str, Any]) -> dict[str, Any]:
    card = Card.from_dict(payload["card"]) if payload.get("card") else None
    if card is None:
        text = str(payload.get("text", ""))
        card = Card(title="", body=[Text(Typed(text))], fallback=text)
    return blockkit.render_message(card)


def _error(exc: SlackApiError) -> DeliveryError:
    error = str(exc.response.get("error", "unknown_error"))
    retry_after = None
    if exc.response.status_code == 429:
        retry_after = retry_after_seconds(exc.response.headers.get("Retry-After")) or 1.0
    return DeliveryError(f"slack: {error}", retry_after=retry_after, permanent=error in PERMANENT)


class SlackNotifier:
    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    async def deliver(self, message: OutboxMessage) -> dict[str, Any]:
        payload = message.payload
        try:
            if message.kind == "update":
                return await self._update(payload)
            if message.kind == "dm":
                return await self._dm(str(payload["user"]), payload)
            return await self._post(payload)
        except SlackApiError as exc:
            raise _error(exc) from exc
        except (OSError, TimeoutError) as exc:
            raise DeliveryError(f"slack: {type(exc).__name__}: {exc}") from exc

    async def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        content = _content(payload)
        try:
            response = await self.client.chat_postMessage(
                channel=payload["channel"], thread_ts=payload.get("thread"), **content
            )
        except SlackApiError as exc:
            fallback = payload.get("fallback_user")
            if exc.response.get("error") in NOT_HERE and fallback:
                log.info("cannot post in %s; sending to the technician instead", payload["channel"])
                return await self._dm(str(fallback), payload)
            raise
        return {"channel": response["channel"], "ts": response["ts"]}

    async def _dm(self, user: str, payload: dict[str, Any]) -> dict[str, Any]:
        opened = await self.client.conversations_open(users=user)
        channel = opened["channel"]["id"]
        response = await self.client.chat_postMessage(channel=channel, **_content(payload))
        return {"channel": response["channel"], "ts": response["ts"], "dm": True}

    async def _update(self, payload: dict[str, Any]) -> dict[str, Any]:
        response = await self.client.chat_update(
            channel=payload["channel"], ts=payload["ts"], **_content(payload)
        )
        return {"channel": response["channel"], "ts": response["ts"]}
