"""Delivers `page.opsgenie` rows through the Opsgenie Alert API (`GenieKey` auth).

Alerts are keyed by `alias` (the ticket number): Opsgenie de-duplicates a create with an
alias that is already open, so a resend after a crash does not open a second alert.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp
from pydantic import SecretStr

from bot.notifiers import DeliveryError
from bot.notifiers.webhook import post_json
from storage.models import OutboxMessage

SOURCE = "helpdesk-bot"
LIMITS = {"message": 130, "alias": 512, "description": 15000, "note": 25000}


def _details(raw: Any) -> dict[str, str]:
    """Opsgenie `details` is a map of strings."""
    if not isinstance(raw, dict):
        return {}
    return {str(k)[:50]: str(v)[:8000] for k, v in raw.items() if v not in (None, "")}


def create_body(payload: dict[str, Any]) -> dict[str, Any]:
    alias = str(payload["alias"])[: LIMITS["alias"]]
    body: dict[str, Any] = {
        "message": str(payload.get("message") or alias)[: LIMITS["message"]],
        "alias": alias,
        "description": str(payload.get("description") or "")[: LIMITS["description"]],
        "priority": str(payload.get("priority") or "P1"),
        "source": SOURCE,
        "tags": [str(t) for t in payload.get("tags") or []],
        "details": _details(payload.get("details")),
    }
    if payload.get("entity"):
        body["entity"] = str(payload["entity"])[:512]
    return {k: v for k, v in body.items() if v not in ("", [], {})}


class OpsgenieNotifier:
    def __init__(self, http: aiohttp.ClientSession, *, url: str, api_key: SecretStr) -> None:
        self.http = http
        self.base = url.rstrip("/")
        self._api_key = api_key

    def __repr__(self) -> str:
        return f"OpsgenieNotifier(url={self.base!r})"

    def places(self, message: OutboxMessage) -> tuple[str, ...]:
        """Every page goes to one service: its Retry-After holds them all."""
        return ("opsgenie",)

    async def deliver(self, message: OutboxMessage) -> dict[str, Any]:
        payload = message.payload
        if not payload.get("alias"):
            raise DeliveryError("opsgenie: outbox payload without an alias", permanent=True)
        headers = {"Authorization": f"GenieKey {self._api_key.get_secret_value()}"}
        op = payload.get("op", "create")
        if op == "close":
            alias = str(payload["alias"])
            url = f"{self.base}/v2/alerts/{quote(alias, safe='')}/close?identifierType=alias"
            body = {"source": SOURCE, "note": str(payload.get("note") or "")[: LIMITS["note"]]}
        elif op == "create":
            url, body = f"{self.base}/v2/alerts", create_body(payload)
        else:
            raise DeliveryError(f"opsgenie: unknown operation {op!r}", permanent=True)
        answer = await post_json(self.http, url, body, service="opsgenie", headers=headers)
        return {
            "op": op,
            "alias": str(payload["alias"]),
            "request_id": str(answer.get("requestId") or ""),
        }
