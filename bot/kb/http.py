"""One GET to a knowledge base: JSON back, or KbUnavailable saying why (never the key)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from bot.notifiers import retry_after_seconds
from handlers.diagnosis import KB_TIMEOUT, KbUnavailable

TIMEOUT = aiohttp.ClientTimeout(total=KB_TIMEOUT, connect=KB_TIMEOUT)


async def get_json(
    http: aiohttp.ClientSession,
    url: str,
    *,
    params: dict[str, str],
    headers: dict[str, str],
    service: str,
) -> Any:
    """GET `url`; the parsed JSON on 2xx. Error texts name the service and the status only."""
    try:
        async with http.get(url, params=params, headers=headers, timeout=TIMEOUT) as response:
            status = response.status
            body = await response.text()
            retry_after = retry_after_seconds(response.headers.get("Retry-After"))
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise KbUnavailable(f"{service}: {type(exc).__name__}") from exc
    if status == 429:
        wait = f", retry after {retry_after:.0f} s" if retry_after is not None else ""
        raise KbUnavailable(
            f"{service}: HTTP 429 (rate limited{wait})", status=status, retry_after=retry_after
        )
    if status in (401, 403):
        raise KbUnavailable(
            f"{service}: HTTP {status}: check KB_API_KEY (and KB_USERNAME)", status=status
        )
    if not 200 <= status < 300:
        # A 503 may say when to come back too (Confluence's do).
        raise KbUnavailable(f"{service}: HTTP {status}", status=status, retry_after=retry_after)
    try:
        return json.loads(body) if body else {}
    except ValueError as exc:
        raise KbUnavailable(f"{service}: the answer is not JSON") from exc
