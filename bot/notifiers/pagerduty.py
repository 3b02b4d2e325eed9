"""Delivers `page.pagerduty` rows through the PagerDuty Events API v2.

The routing key comes from settings (`PAGERDUTY_ROUTING_KEY`) at send time and is never
stored in the outbox. Every event carries the ticket's dedup key, so a trigger sent again
after a crash (between sending and marking) joins the open alert instead of opening another.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from pydantic import SecretStr

from bot.notifiers import DeliveryError
from bot.notifiers.webhook import post_json
from storage.models import OutboxMessage

ACTIONS = ("trigger", "acknowledge", "resolve")
CLIENT = "helpdesk-bot"


def event_body(payload: dict[str, Any], routing_key: str) -> dict[str, Any]:
    """The Events API v2 body for one outbox payload."""
    action = str(payload.get("event_action", "trigger"))
    dedup_key = str(payload.get("dedup_key") or "")
    if action not in ACTIONS or not dedup_key:
        raise DeliveryError(f"pagerduty: bad outbox payload ({action!r})", permanent=True)
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": dedup_key[:255],
    }
    if action == "trigger":
        event = dict(payload.get("payload") or {})
        event["summary"] = str(event.get("summary") or dedup_key)[:1024]
        event.setdefault("source", CLIENT)
        event.setdefault("severity", "critical")
        body["payload"] = {k: v for k, v in event.items() if v not in (None, "", {}, [])}
        body["client"] = CLIENT
        if payload.get("links"):
            body["links"] = payload["links"]
    return body


class PagerDutyNotifier:
    def __init__(self, http: aiohttp.ClientSession, *, url: str, routing_key: SecretStr) -> None:
        self.http = http
        self.url = url
        self._routing_key = routing_key

    def __repr__(self) -> str:
        return f"PagerDutyNotifier(url={self.url!r})"

    def places(self, message: OutboxMessage) -> tuple[str, ...]:
        """Every page goes to one service: its Retry-After holds them all."""
        return ("pagerduty",)

    async def deliver(self, message: OutboxMessage) -> dict[str, Any]:
        body = event_body(message.payload, self._routing_key.get_secret_value())
        answer = await post_json(self.http, self.url, body, service="pagerduty")
        return {
            "event_action": body["event_action"],
            "dedup_key": str(answer.get("dedup_key") or body["dedup_key"]),
            "status": str(answer.get("status") or "success"),
        }
