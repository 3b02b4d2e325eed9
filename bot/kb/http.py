"""One GET to a knowledge base: JSON back, or KbUnavailable saying why (never the key)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from yarl import URL

from bot.capped import MAX_BODY, MAX_ERROR_BODY, read_capped
from bot.logs import one_line
from bot.notifiers import retry_after_seconds
from bot.unreachable import connect_failure
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
    """GET `url`; the parsed JSON on 2xx. Error texts name the service and the status only.
    Redirects are not followed: the key travels in a custom header (`x-api-key`), which aiohttp
    would hand to whatever host a redirect names."""
    try:
        async with http.get(
            url, params=params, headers=headers, timeout=TIMEOUT, allow_redirects=False
        ) as response:
            status = response.status
            # Bytes: a body that is not text (or not in its charset) is "not JSON" below.
            ok = 200 <= status < 300
            body = await read_capped(response, MAX_BODY if ok else MAX_ERROR_BODY)
            if body is None and not ok:
                body = b""  # its status says what happened; its words are not read
            retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            location = response.headers.get("Location", "")
    except aiohttp.ClientConnectorError as exc:
        raise KbUnavailable(f"{service}: {connect_failure(exc)}") from exc
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise KbUnavailable(f"{service}: {type(exc).__name__}") from exc
    if body is None:
        raise KbUnavailable(
            f"{service}: the answer is larger than {MAX_BODY // 2**20} MB (HTTP {status})",
            not_api=True,
        )
    if status == 429:
        wait = f", retry after {retry_after:.0f} s" if retry_after is not None else ""
        raise KbUnavailable(
            f"{service}: HTTP 429 (rate limited{wait})", status=status, retry_after=retry_after
        )
    if 300 <= status < 400:
        where = URL(location).host if location else None
        raise KbUnavailable(
            f"{service}: HTTP {status}, a redirect"
            + (f" to {where}" if where else "")
            + ": set kb.url to the address the KB answers at",
            status=status,
        )
    if status in (401, 403):
        raise KbUnavailable(
            f"{service}: HTTP {status}: check KB_API_KEY (and KB_USERNAME)", status=status
        )
    if not 200 <= status < 300:
        # A 503 may say when to come back too (Confluence's do). A 4xx says why (Confluence:
        # "Could not parse cql ..."): for the log, which is where an admin looks.
        reason = _reason(body) if 400 <= status < 500 else ""
        raise KbUnavailable(
            f"{service}: HTTP {status}" + (f": {reason}" if reason else ""),
            status=status,
            retry_after=retry_after,
        )
    try:
        return json.loads(body) if body else {}
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError; nested too deep
        kind = response.headers.get("Content-Type", "").split(";")[0].strip() or "no type"
        raise KbUnavailable(
            f"{service}: the answer is not JSON ({kind}, HTTP {status})", not_api=True
        ) from exc


REASON_CHARS = 300


def _reason(body: bytes) -> str:
    """The error message of a KB's JSON error body, shortened, or "": Confluence's
    `message`, Hudu's `error`, IT Glue's JSON:API `errors[].detail` / `title`."""
    try:
        found = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    if not isinstance(found, dict):
        return ""
    text = found.get("message") or found.get("error")
    errors = found.get("errors")
    if not text and isinstance(errors, list) and errors and isinstance(errors[0], dict):
        text = errors[0].get("detail") or errors[0].get("title")
    return one_line(text, REASON_CHARS) if isinstance(text, str) else ""
