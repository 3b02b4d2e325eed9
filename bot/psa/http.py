"""JSON over HTTP for the PSA connectors: one shared aiohttp session, answers as PsaError.

Every connector sends through `PsaHttp.call`, which also keeps the PSA's own pause: after a
429 (or a 503 with Retry-After) no request leaves this process before the time has passed.
Error texts name the system, the status and the PSA's own message; never a header.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from yarl import URL

from bot.capped import MAX_ERROR_BODY, read_capped
from bot.logs import one_line
from bot.notifiers import retry_after_seconds
from bot.unreachable import connect_failure
from handlers.psa import Company, PsaError
from storage.outbox import retry_wait

TIMEOUT = aiohttp.ClientTimeout(total=20, sock_connect=10)
# A pause this short is waited out in the call; a longer one fails the call at once.
WAIT_IN_CALL = 1.0
# The largest answer read (a page of 1000 ConnectWise notes is a few MB): more is not the
# PSA's API (a proxy streaming without end, a download at psa.url) and is not read into memory.
MAX_ANSWER = 32 * 1024 * 1024


def reason(body: Any) -> str:
    """The PSA's own words about an error, from any of the four envelopes."""
    if isinstance(body, str):
        return one_line(body, 200)
    if not isinstance(body, dict):
        return ""
    parts: list[str] = []
    error = body.get("error")
    if isinstance(error, dict):  # ServiceNow {"error": {"message", "detail"}}
        parts += [str(error.get(k)) for k in ("message", "detail") if error.get(k)]
    elif isinstance(error, str):
        parts.append(error)
    for key in ("message", "description", "code"):
        if isinstance(body.get(key), str) and body[key] not in parts:
            parts.append(body[key])
    errors = body.get("errors")
    if isinstance(errors, list):  # Freshservice [{field, message}], Autotask ["..."], CW
        for item in errors[:3]:
            if isinstance(item, dict):
                field = item.get("field")
                text = str(item.get("message") or item.get("code") or "")
                parts.append(f"{field}: {text}" if field else text)
            else:
                parts.append(str(item))
    # One line: ServiceNow's details carry "\n\t" (a data policy's list of fields).
    return one_line("; ".join(" ".join(p.split()) for p in parts if p.strip()), 300)


class PsaHttp:
    """Requests to one PSA with its auth headers; the PSA's answer or a PsaError."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        name: str,
        headers: dict[str, str],
        refuses_with_500: bool = False,
        refused: Callable[[int, Any], bool] | None = None,
        credentials_refused: Callable[[int, Any], bool] | None = None,
    ):
        self.session = session
        self.name = name
        self._headers = headers
        self._paused_until = 0.0
        # Autotask answers a write its business rules refuse with 500 and its `errors` list.
        self.refuses_with_500 = refuses_with_500
        # (status, answer) -> the PSA refused this request as sent, whatever the status says
        # otherwise (ServiceNow: a 403 from a data policy or business rule, not the login).
        self.refused = refused
        # (status, answer) -> the PSA refused the credentials although the status is not
        # 401/403 (Autotask: an unknown ApiIntegrationCode is a 500 with its errors list).
        self.credentials_refused = credentials_refused

    def __repr__(self) -> str:
        return f"PsaHttp({self.name!r})"

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    async def _wait_for_pause(self) -> None:
        left = self._paused_until - time.monotonic()
        if left <= 0:
            return
        if left > WAIT_IN_CALL:
            raise PsaError(
                f"{self.name}: waiting {left:.0f} s more, as the PSA asked (Retry-After)",
                kind="throttled",
                retry_after=left,
            )
        await asyncio.sleep(left)

    async def call(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        auth: bool = True,
        headers: dict[str, str] | None = None,
        reading: str = "",
    ) -> Any:
        """Send one request; the parsed JSON answer (None when empty) on 2xx. `reading`
        names what a look-up made inside a write reads (`sys_user`, `Resources`): a 403
        there is that table kept from the integration user, not refused credentials."""
        await self._wait_for_pause()
        sent = {**(self._headers if auth else {}), **(headers or {})}
        if body is not None:
            sent.setdefault("Content-Type", "application/json")
        data = json.dumps(body) if body is not None else None
        try:
            # Redirects are not followed: aiohttp keeps custom headers (Autotask's Secret and
            # ApiIntegrationCode, ConnectWise's clientId) on a redirect to another host.
            async with self.session.request(
                method,
                url,
                params=params,
                data=data,
                headers=sent,
                timeout=TIMEOUT,
                allow_redirects=False,
            ) as response:
                status = response.status
                ok = 200 <= status < 300
                raw = await read_capped(response, MAX_ANSWER if ok else MAX_ERROR_BODY)
                if raw is None and not ok:
                    raw = b""  # its status says what happened; its words are not read
                wait = retry_after_seconds(response.headers.get("Retry-After"))
                if wait is not None:
                    # At most an hour, as every outbox wait: a Retry-After years away (a
                    # proxy's bug) would stop every call to the PSA, in every worker, for years.
                    wait = retry_wait(wait)
                location = response.headers.get("Location", "")
                charset = response.charset or "utf-8"
        except aiohttp.ClientConnectorError as exc:
            # Never connected: nothing can have happened there.
            raise PsaError(f"{self.name}: {connect_failure(exc)}", kind="unavailable") from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # The request may have arrived and been acted on before the answer was lost.
            raise PsaError(
                f"{self.name}: no answer ({type(exc).__name__})", kind="unavailable", definite=False
            ) from exc
        if raw is None:
            # Not the PSA's answer, and maybe not the whole of it: a write may have been made.
            raise PsaError(
                f"{self.name}: HTTP {status} answered more than {MAX_ANSWER // 2**20} MB, "
                "which is not the PSA's API: is psa.url the PSA's address?",
                kind="unavailable",
                status=status,
                definite=method == "GET",
            )
        answer = _parse(_decoded(raw, charset))
        if 200 <= status < 300:
            if isinstance(answer, str):
                raise self._not_json(method, status, answer)
            return answer
        if 300 <= status < 400:
            where = URL(location).host if location else None
            raise PsaError(
                f"{self.name}: HTTP {status}, a redirect"
                + (f" to {where}" if where else "")
                + ": set psa.url to the address the PSA answers at",
                kind="unavailable",
                status=status,
            )
        raise self._error(method, status, answer, wait, reading)

    def _not_json(self, method: str, status: int, page: str) -> PsaError:
        """A 2xx answer that is not JSON: a web page from whatever answers at psa.url (a
        ServiceNow developer instance asleep, a proxy's or login page), not the PSA's API.
        Not a refusal, so the write is kept; nor proof nothing happened, so a write is
        looked up before it is sent again."""
        title = re.search(r"<title[^>]*>(.*?)</title>", page, re.IGNORECASE | re.DOTALL)
        said = " ".join((title.group(1) if title else page).split())[:120]
        return PsaError(
            f"{self.name}: HTTP {status} answered with a web page, not JSON ({said}): is "
            "psa.url the PSA's address, and is the PSA awake?",
            kind="unavailable",
            status=status,
            definite=method == "GET",
        )

    def _error(
        self, method: str, status: int, answer: Any, wait: float | None, reading: str
    ) -> PsaError:
        message = f"{self.name}: HTTP {status}"
        said = reason(answer)
        if said:
            message += f" ({said})"
        if status == 403 and reading:
            # The credentials were accepted; an ACL / security role keeps this one read from
            # the user (ServiceNow KB2971488 'User Not Authorized'). The write either goes on
            # without the fact (handlers.psa.optional) or is refused: it says what to grant.
            return PsaError(
                f"{message}: the integration user may not read {reading}; "
                f"give it read access there",
                kind="rejected",
                status=status,
                unreadable=reading,
            )
        if self.refused is not None and self.refused(status, answer):
            # Refused as sent: the same write gets the same answer, the credentials are fine.
            return PsaError(message, kind="rejected", status=status)
        if status in (401, 403) or (
            self.credentials_refused is not None and self.credentials_refused(status, answer)
        ):
            return PsaError(message, kind="auth", status=status)
        if status == 429 or (status == 503 and wait is not None):
            if wait is None:
                wait = 1.0
            self.pause(wait)
            return PsaError(message, kind="throttled", status=status, retry_after=wait)
        if (
            status == 500
            and self.refuses_with_500
            and _listed_errors(answer)
            and not _fault(answer)
        ):
            # Refused as sent (a required field, a picklist value): nothing was written and
            # sending it again gets the same answer.
            return PsaError(message, kind="rejected", status=status)
        if status in (408, 500, 502, 503, 504) or status >= 500:
            # 503 says the request was not taken; the others may come after it was acted on.
            definite = status == 503 or method == "GET"
            return PsaError(message, kind="unavailable", status=status, definite=definite)
        return PsaError(message, kind="rejected", status=status)


# Autotask's own words for a fault on its side (its 500 carries an `errors` list then too):
# not a business rule refusing the write, so it is an outage, retried like a bare 500.
_SERVER_FAULT = re.compile(
    r"unexpected error|internal (server )?error|an error has occurred|error occurred while "
    r"processing|try again|temporarily|unavailable|timed? ?out|deadlock|object reference not set",
    re.IGNORECASE,
)


def _fault(answer: Any) -> bool:
    """Autotask's `errors` say the fault is on its side (not the write as sent)."""
    errors = answer.get("errors") if isinstance(answer, dict) else None
    return isinstance(errors, list) and any(_SERVER_FAULT.search(str(e)) for e in errors)


def _listed_errors(answer: Any) -> bool:
    """The answer carries the PSA's own list of error messages (`{"errors": ["..."]}`)."""
    errors = answer.get("errors") if isinstance(answer, dict) else None
    return isinstance(errors, list) and any(str(e).strip() for e in errors)


def _decoded(raw: bytes, charset: str) -> str:
    """The answer as text: a byte its charset does not allow (a Windows-1252 quote in a note
    that came in by e-mail, labelled UTF-8) is one character shown as U+FFFD, not a reason
    to refuse the whole answer."""
    try:
        return raw.decode(charset, errors="replace")
    except LookupError:  # a charset Python does not know
        return raw.decode("utf-8", errors="replace")


def ident(value: Any) -> str:
    """An id or number from a PSA answer as text; TypeError for anything but a string or a
    number (an object or list there is an answer the bot cannot read, not an id to keep)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError(f"an id or number of type {type(value).__name__}: {str(value)[:80]}")
    return str(value)


def _parse(text: str) -> Any:
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text[:500]


class Memo:
    """Answers that rarely change (companies, users, choice lists), kept for `ttl` seconds."""

    def __init__(self, ttl: float = 300.0) -> None:
        self.ttl = ttl
        self._values: dict[str, tuple[float, Any]] = {}

    def get(self, key: str) -> tuple[bool, Any]:
        found = self._values.get(key)
        if found is None or found[0] < time.monotonic():
            return False, None
        return True, found[1]

    async def cached(self, key: str, make: Callable[[], Awaitable[Any]]) -> Any:
        """The value kept under `key`, else what `make()` answers (then kept)."""
        found, value = self.get(key)
        if found:
            return value
        return self.put(key, await make())

    def put(self, key: str, value: Any) -> Any:
        if len(self._values) > 5000:
            self._values.clear()
        self._values[key] = (time.monotonic() + self.ttl, value)
        return value


def company_named(
    rows: list[dict[str, Any]], name: str, *, id_key: str = "id", name_key: str = "name"
) -> Company | None:
    """The row whose name is `name` (case and surrounding spaces aside), as a Company."""
    wanted = name.strip().lower()
    for row in rows:
        if str(row.get(name_key, "")).strip().lower() == wanted:
            return Company(str(row[id_key]), str(row[name_key]))
    return None


class CachedCompanies:
    """`find_company` and `active_contracts` answered from `self.memo` while it keeps them;
    a connector supplies `_find_company` and `_active_contracts`, which ask its PSA."""

    memo: Memo

    async def find_company(self, name: str) -> Company | None:
        found: Company | None = await self.memo.cached(
            f"company:{name.strip().lower()}", lambda: self._find_company(name)
        )
        return found

    async def active_contracts(self, company: Company) -> list[str]:
        names: list[str] = await self.memo.cached(
            f"contracts:{company.id}", lambda: self._active_contracts(company)
        )
        return names

    async def _find_company(self, name: str) -> Company | None:
        raise NotImplementedError

    async def _active_contracts(self, company: Company) -> list[str]:
        raise NotImplementedError


def basic(user: str, password: str) -> str:
    """An HTTP Basic `Authorization` value."""
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
