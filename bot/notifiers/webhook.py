"""JSON-over-HTTP delivery shared by the pager notifiers: one POST, its status as a verdict."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from yarl import URL

from bot.capped import MAX_ERROR_BODY, read_capped
from bot.notifiers import DeliveryError, retry_after_seconds

# Retrying the same request cannot succeed (bad payload, bad key, no access, not paid).
PERMANENT = {400, 401, 402, 403, 404, 405, 413, 422}
TIMEOUT = aiohttp.ClientTimeout(total=10)
# A pager's answer is a few hundred bytes (an id, a status, a message). One larger is not the
# pager's API (a URL naming something else, a proxy gone wrong): it is not read further, nor
# parsed on the event loop.
MAX_ANSWER = MAX_ERROR_BODY


async def read_text(response: aiohttp.ClientResponse) -> str:
    """The answer's text, or "" when it is larger than MAX_ANSWER (its status says enough)."""
    raw = await read_capped(response, MAX_ANSWER)
    return "" if raw is None else raw.decode("utf-8", errors="replace")


def _message(text: str) -> str:
    """A short reason from an error body, without echoing anything we sent."""
    try:
        data = json.loads(text)
    except ValueError:
        return text[:200]
    if not isinstance(data, dict):
        return ""
    parts = [str(data.get("message") or data.get("status") or "")]
    errors = data.get("errors")
    if errors:
        parts.append(json.dumps(errors)[:300])
    return " ".join(p for p in parts if p)[:500]


async def post_json(
    http: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    *,
    service: str,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """POST `body`; the parsed answer on 2xx, else DeliveryError (429 keeps Retry-After).

    Error texts name the service and the status only: never the URL's secrets or the headers.
    """
    try:
        # Redirects are not followed: a 307/308 would send the body again (PagerDuty's routing
        # key is in it) to whatever host the answer names.
        async with http.post(
            url, json=body, headers=headers, timeout=TIMEOUT, allow_redirects=False
        ) as response:
            status = response.status
            text = await read_text(response)
            retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            location = response.headers.get("Location", "")
    except (aiohttp.ClientConnectorError, aiohttp.InvalidURL) as exc:
        # Never connected: nothing arrived.
        raise DeliveryError(f"{service}: {type(exc).__name__}") from exc
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        # The request may have arrived before the answer was lost.
        raise DeliveryError(f"{service}: {type(exc).__name__}", uncertain=True) from exc
    if 200 <= status < 300:
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            data = {}
        return data if isinstance(data, dict) else {}
    if 300 <= status < 400:
        # Not the pager's API (a moved or mistyped URL): sending it again cannot help.
        where = URL(location).host if location else None
        raise DeliveryError(
            f"{service}: HTTP {status}, a redirect"
            + (f" to {where}" if where else "")
            + " (not followed): set the pager's URL to where it answers",
            permanent=True,
        )
    reason = f"{service}: HTTP {status} {_message(text)}".strip()
    if status == 429:
        raise DeliveryError(reason, retry_after=retry_after, place=service)
    if status in PERMANENT or (400 <= status < 500 and status != 408):
        raise DeliveryError(reason, permanent=True)
    # 408, 5xx: try again (a 503's Retry-After is honoured too, for the whole service).
    raise DeliveryError(
        reason, retry_after=retry_after, place=service if retry_after is not None else None
    )
