"""Start the real app on an ephemeral loopback port with a given env, config and directory."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import yaml
from aiohttp import web
from sqlalchemy import select

from bot.app import SERVICES, Services, create_app
from bot.settings import load_settings
from storage.models import OutboxMessage, Ticket, TicketEvent
from tests import log_audit

# SPEC: the intake form's labels, in this order, on both platforms.
INTAKE_LABELS = [
    "Requester",
    "Summary",
    "Exact error text",
    "What were they doing",
    "Reproducible",
    "Users affected",
    "Priority",
    "Category",
    "Asset",
    "Client",
]
SIGNING_SECRET = "test-signing-secret-0123456789abcdef"
BOT_TOKEN = "xoxb-test-0000-token"


async def wait_until(
    check: Callable[[], Awaitable[bool] | bool],
    timeout: float = 5.0,  # noqa: ASYNC109
    what: str = "condition",
) -> None:
    """Poll `check` (sync or async) until it holds; outbound work is asynchronous (outbox)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


class TestClock:
    """The app's and the worker's clock in a test: it is where the test sets it, and runs on
    from there at the real pace (so pacing and retry waits still pass).

    Set it ahead of the real time: rows queued for "now" by the real clock (ticket cards) are
    then due at once, and rows with due times (SLA warnings) when the test moves it there.
    Move it only while the outbox is quiet: leases count in this time too.
    """

    __test__ = False  # not a test class, whatever its name

    def __init__(self, start: datetime) -> None:
        self._set, self._since = start, time.monotonic()

    def __call__(self) -> datetime:
        return self._set + timedelta(seconds=time.monotonic() - self._since)

    def set(self, moment: datetime) -> None:
        self._set, self._since = moment, time.monotonic()


def slack_signature(secret: str, timestamp: str, body: str) -> str:
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


class AppHarness:
    """The running app plus helpers to talk to it as Slack and Teams do."""

    def __init__(
        self,
        tmp: Path,
        env: dict[str, str],
        config: dict[str, Any] | None,
        people: list[dict[str, Any]] | None,
        *,
        scheduler: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.tmp = tmp
        self.clock = clock
        self.env = dict(env)
        log_audit.remember(self.env)
        self.scheduler = scheduler
        if config is not None or people is not None:
            cfg = dict(config or {})
            if people is not None:
                (tmp / "people.yaml").write_text(yaml.safe_dump(people))
                cfg.setdefault("directory", {"source": "file", "path": "people.yaml"})
            (tmp / "helpdesk.yaml").write_text(yaml.safe_dump(cfg))
            self.env["HELPDESK_CONFIG"] = str(tmp / "helpdesk.yaml")
        self.url = ""
        self._runner: web.AppRunner | None = None
        self.http: aiohttp.ClientSession | None = None
        self.app: web.Application | None = None

    async def start(self) -> AppHarness:
        settings = load_settings(self.env)
        self.app = create_app(settings, scheduler=self.scheduler, clock=self.clock)
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        self.http = aiohttp.ClientSession()
        return self

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def services(self) -> Services:
        assert self.app is not None
        return self.app[SERVICES]

    # -- Slack ---------------------------------------------------------------------------------

    async def slack(
        self,
        body: str,
        *,
        content_type: str,
        signed: bool = True,
        timestamp: int | None = None,
        secret: str = SIGNING_SECRET,
        headers: dict[str, str] | None = None,
    ) -> aiohttp.ClientResponse:
        ts = str(timestamp if timestamp is not None else int(time.time()))
        sent = {"Content-Type": content_type, **(headers or {})}
        if signed:
            sent["X-Slack-Request-Timestamp"] = ts
            sent["X-Slack-Signature"] = slack_signature(secret, ts, body)
        assert self.http is not None
        response = await self.http.post(
            f"{self.url}/slack/events", data=body.encode(), headers=sent
        )
        await response.read()
        return response

    async def slash(
        self,
        text: str,
        *,
        user: str = "UTECH",
        channel: str = "C0HELP",
        response_url: str = "http://127.0.0.1:9/unused",
        **kwargs: Any,
    ) -> aiohttp.ClientResponse:
        form = {
            "token": "legacy",
            "team_id": "T0TEAM",
            "team_domain": "acme",
            "channel_id": channel,
            "channel_name": "helpdesk",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/ticket",
            "text": text,
            "api_app_id": "A0APP",
            "response_url": response_url,
            "trigger_id": f"trigger-{time.monotonic_ns()}",
        }
        return await self.slack(
            urlencode(form), content_type="application/x-www-form-urlencoded", **kwargs
        )

    async def interactive(self, payload: dict[str, Any], **kwargs: Any) -> aiohttp.ClientResponse:
        body = urlencode({"payload": json.dumps(payload)})
        return await self.slack(body, content_type="application/x-www-form-urlencoded", **kwargs)

    # -- Teams ---------------------------------------------------------------------------------

    async def teams(
        self, activity: dict[str, Any], *, headers: dict[str, str] | None = None
    ) -> aiohttp.ClientResponse:
        assert self.http is not None
        response = await self.http.post(
            f"{self.url}/api/messages", json=activity, headers=headers or {}
        )
        await response.read()
        return response


def view_submission(
    view: dict[str, Any],
    values: dict[str, dict[str, Any]],
    *,
    user: str = "UTECH",
    view_id: str = "V0001",
) -> dict[str, Any]:
    """A view_submission payload for a modal we rendered, with the given input states."""
    return {
        "type": "view_submission",
        "team": {"id": "T0TEAM", "domain": "acme"},
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T0TEAM"},
        "api_app_id": "A0APP",
        "token": "legacy",
        "trigger_id": f"trigger-{time.monotonic_ns()}",
        "view": {
            **view,
            "id": view_id,
            "hash": "h-" + view_id,
            "team_id": "T0TEAM",
            "state": {"values": {key: {key: state} for key, state in values.items()}},
        },
    }


def slack_button(post: dict[str, Any], title: str) -> dict[str, Any]:
    """The rendered button titled `title` in a posted Slack message."""
    for block in post["blocks"]:
        for element in block.get("elements", []):
            if element.get("type") == "button" and element["text"]["text"] == title:
                return element
    raise AssertionError(f"no {title} button in {post['blocks']}")


def block_actions(
    element: dict[str, Any],
    *,
    user: str,
    channel: str,
    n: int,
    response_url: str,
    message_ts: str = "1.1",
    text: str = "",
    value: str | None = None,
) -> dict[str, Any]:
    """A block_actions payload for pressing `element` (a rendered button) as `user`."""
    return {
        "type": "block_actions",
        "team": {"id": "T0TEAM", "domain": "acme"},
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T0TEAM"},
        "api_app_id": "A0APP",
        "token": "legacy",
        "trigger_id": f"trigger-{n}",
        "container": {"type": "message", "message_ts": message_ts},
        "channel": {"id": channel, "name": "directmessage"},
        "message": {"type": "message", "ts": f"1700000000.{n:06d}", "text": text},
        "response_url": response_url,
        "actions": [
            {
                "type": "button",
                "action_id": element["action_id"],
                "block_id": "b",
                "value": element["value"] if value is None else value,
                "text": element["text"],
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def is_sla_alarm(row: OutboxMessage) -> bool:
    """An SLA warning or breach row (queued with the ticket, due later, mostly cancelled)."""
    return (row.dedup_key or "").startswith("sla:")


def is_tier_nudge(row: OutboxMessage) -> bool:
    """The nudge to escalate a ticket outside `tier1_scope` (due `escalation.nudge_after`
    after it was opened: 30 minutes unless a test says otherwise)."""
    return (row.payload or {}).get("purpose") == "tier-nudge"


def is_due_later(row: OutboxMessage) -> bool:
    """A row queued with the ticket for later: an SLA warning or breach, or the tier nudge."""
    return is_sla_alarm(row) or is_tier_nudge(row)


async def only_ticket(app: AppHarness) -> Ticket:
    """The one ticket in the app's database."""
    async with app.services.sessions() as session:
        return (await session.execute(select(Ticket))).scalar_one()


async def event_kinds(app: AppHarness) -> list[str]:
    """Every audit event kind, oldest first."""
    async with app.services.sessions() as session:
        query = select(TicketEvent.kind).order_by(TicketEvent.id)
        return list((await session.execute(query)).scalars().all())
