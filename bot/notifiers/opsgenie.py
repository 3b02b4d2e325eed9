"""Delivers `page.opsgenie` rows through the Opsgenie Alert API (`GenieKey` auth).

Alerts are keyed by `alias` (the ticket number): Opsgenie de-duplicates a create with an
alias that is already open, so a resend after a crash does not open a second alert.

A create or close is only *accepted* by its 202: Opsgenie processes it afterwards and that can
still fail. The delivery therefore asks `GET /v2/alerts/requests/{requestId}` until Opsgenie
says how it went (it answers 404 "Request not found. It might not be processed, yet." until
then), for at most `confirm_within` seconds:
- processed (`isSuccess: true`): delivered, with the `alertId` and Opsgenie's status text;
- failed (`isSuccess: false`): a failed attempt, retried like any other (nothing was created
  or closed, so it is not in doubt), with Opsgenie's status text as the reason; except a close
  of an alert that does not exist (deleted in Opsgenie): done, as nothing is left to close;
- still unknown at the bound (or a 429 longer than what is left of it): a failed attempt in
  doubt, sent again later (the alias makes a second create harmless), so the worker is not
  held up by a slow Opsgenie;
- the look-up itself refused (401/403: an API key without read access): delivered, recorded
  as not confirmed, with a warning, as nothing the bot can resend would confirm it either;
- the worker stopping meanwhile (`stop`): the wait ends at once, a failed attempt in doubt,
  recorded while the database is still there, rather than holding shutdown up and failing on
  the closed HTTP session.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine
from typing import Any
from urllib.parse import quote

import aiohttp
from pydantic import SecretStr

from bot.notifiers import DeliveryError, retry_after_seconds
from bot.notifiers.webhook import post_json, read_text
from storage.models import OutboxMessage

log = logging.getLogger(__name__)

SOURCE = "helpdesk-bot"
LIMITS = {"message": 130, "alias": 512, "description": 15000, "note": 25000}
# How long a delivery waits for Opsgenie to process its request (polls back off from
# FIRST_POLL to LAST_POLL): short, as sends to Opsgenie go one at a time.
CONFIRM_WITHIN = 5.0
FIRST_POLL = 0.25
LAST_POLL = 2.0
NAMES = {"create": "alert", "close": "close"}
# Opsgenie's status for an action on an alert it does not have (its docs' sample).
GONE = "Alert does not exist"


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


def _status_text(data: dict[str, Any]) -> str:
    return " ".join(str(data.get("status") or "no status given").split())[:200]


class OpsgenieNotifier:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        *,
        url: str,
        api_key: SecretStr,
        confirm_within: float = CONFIRM_WITHIN,
        first_poll: float = FIRST_POLL,
    ) -> None:
        self.http = http
        self.base = url.rstrip("/")
        self._api_key = api_key
        self.confirm_within = confirm_within
        self.first_poll = first_poll
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """The worker is closing: a confirmation being waited for ends now (in doubt)."""
        self._stopping.set()

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
        request_id = str(answer.get("requestId") or "")
        result: dict[str, Any] = {
            "op": op,
            "alias": str(payload["alias"]),
            "request_id": request_id,
        }
        if not request_id:
            log.warning("opsgenie: the %s was accepted without a requestId: not confirmed", op)
            return {**result, "confirmed": False, "status": "accepted, no requestId to confirm"}
        data = await self._until_stopped(
            self._processed(request_id, headers, what=NAMES[op], op=op), what=NAMES[op]
        )
        if data is None:
            return {**result, "confirmed": False, "status": "accepted, status not readable"}
        return {
            **result,
            "confirmed": True,
            "alert_id": str(data.get("alertId") or ""),
            "status": _status_text(data),
        }

    async def _until_stopped(
        self, polling: Coroutine[Any, Any, dict[str, Any] | None], *, what: str
    ) -> dict[str, Any] | None:
        """`polling`'s answer, unless the worker stops first: then the request (accepted, maybe
        processed) is in doubt and sent again by whichever worker claims it next."""
        poll = asyncio.ensure_future(polling)
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({poll, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (poll, stop):
                task.cancel()
            await asyncio.gather(poll, stop, return_exceptions=True)
        if poll.done() and not poll.cancelled():
            return poll.result()
        raise DeliveryError(
            f"opsgenie: Opsgenie accepted the {what}, but the bot stopped before Opsgenie had "
            "processed it; it is sent again",
            uncertain=True,
        )

    async def _processed(
        self, request_id: str, headers: dict[str, str], *, what: str, op: str
    ) -> dict[str, Any] | None:
        """Opsgenie's `data` for a request it processed successfully; None when it refuses to
        say (401/403). DeliveryError when processing failed or is not known within the bound."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.confirm_within
        url = f"{self.base}/v2/alerts/requests/{quote(request_id, safe='')}"
        wait, last = self.first_poll, ""
        while True:
            left = deadline - loop.time()
            if left <= 0:
                break
            await asyncio.sleep(min(wait, left))
            wait = min(wait * 2, LAST_POLL)
            left = deadline - loop.time()
            try:
                timeout = aiohttp.ClientTimeout(total=max(left, 0.5))
                async with self.http.get(
                    url, headers=headers, timeout=timeout, allow_redirects=False
                ) as response:
                    status, text = response.status, await read_text(response)
                    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                last = type(exc).__name__
                continue
            if status == 200:
                data = _data(text)
                if data is None or not isinstance(data.get("isSuccess"), bool):
                    last = "an answer without isSuccess"
                    continue
                if data["isSuccess"]:
                    return data
                if op == "close" and _status_text(data) == GONE:
                    # Deleted in Opsgenie (the create was confirmed before any close is sent):
                    # nothing is open under the alias, and no retry could change that.
                    log.info("opsgenie: the alert to close no longer exists; nothing to close")
                    return data
                # Nothing was created or closed: a clean failure, retried (not in doubt).
                raise DeliveryError(f"opsgenie: Opsgenie failed to process the {what}: "
                                    f"{_status_text(data)}")  # fmt: skip
            if status == 404:  # "Request not found. It might not be processed, yet."
                last = ""
                continue
            if status == 429:
                if retry_after is not None and retry_after > deadline - loop.time():
                    raise DeliveryError(
                        f"opsgenie: Opsgenie accepted the {what} but rate limits its status "
                        "check (HTTP 429); it is sent again after the wait",
                        uncertain=True,
                        retry_after=retry_after,
                        place="opsgenie",
                    )
                wait = max(wait, retry_after or 0.0)
                last = "HTTP 429"
                continue
            if status in (401, 403):
                log.warning(
                    "opsgenie: the %s was accepted, but its status cannot be read (HTTP %s): "
                    "not confirmed; give the API integration read access",
                    what,
                    status,
                )
                return None
            last = f"HTTP {status}"
        checked = f", status check: {last}" if last else ""
        raise DeliveryError(
            f"opsgenie: Opsgenie accepted the {what} but had not processed it after "
            f"{self.confirm_within:g} s{checked}; it is sent again",
            uncertain=True,
        )


def _data(text: str) -> dict[str, Any] | None:
    try:
        body = json.loads(text)
    except ValueError:
        return None
    data = body.get("data") if isinstance(body, dict) else None
    return data if isinstance(data, dict) else None
