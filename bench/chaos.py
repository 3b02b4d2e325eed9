"""Chaos soak: random SIGKILLs of bot processes under a mixed Slack workload; exactly-once checked.

`python -m bench.chaos --seed 7 --duration 60 --db postgresql` starts FakeSlack and FakePagerDuty
(tests/fakes) on 127.0.0.1 in this process, a scratch database (PostgreSQL: a database of its own
on --pg-url's server, created and dropped; SQLite: a file in a temporary folder), and the bot
processes of --procs (`serve`, `web` = `serve --no-scheduler`, `worker`). Technicians then open
tickets through the intake modal (P1s page), log time and close tickets (CSAT surveys due
`csat.delay` later) with signed Slack requests, while one bot process at a time is SIGKILLed at
a random instant (every --kill-min..--kill-max s) and started again. Afterwards every process
is brought back, the outbox is given --drain s to empty, and the invariants are checked against
what the fakes received and what the database holds. Exit 0 on PASS, 1 on a violation, 2 when
the run itself broke. The seed fixes the workload's and the kills' choices and waits (timing
still varies: a failing seed shows where to look; run it a few times).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import yaml
from aiohttp import web
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bench.procs import REPO, base_env, free_port
from storage import db
from storage.models import OutboxMessage, Ticket, TimeEntry, utcnow
from tests.fakes.base import Recorded
from tests.fakes.pagers import FakePagerDuty
from tests.fakes.slack_api import FakeSlack
from tests.harness import BOT_TOKEN, SIGNING_SECRET, slack_signature, view_submission

ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"
INCIDENT_CHANNEL = "C0INCIDENT"
CHANNELS = ("C0CHAOS1", "C0CHAOS2", "C0CHAOS3", "C0CHAOS4")
PEOPLE = [
    {"email": "tom@example.com", "name": "Tom Tech", "slack_id": "UTECH", "technician": True},
    {"email": "ana@example.com", "name": "Ana Lopez", "slack_id": "UANA", "teams_id": "29:1ana"},
]
GOOD_NOTE = "Restarted the VPN concentrator VPN-01 and failed over to the standby tunnel"
TRY_AGAIN = "cannot save tickets right now"
# The database lost its connection while the change's COMMIT was on its way: the person is told
# it may or may not be saved (handlers.dispatch.IN_DOUBT); either is right.
IN_DOUBT = "did not confirm in time whether this was saved"
RETRY_AFTER = 3.0  # Slack's Retry-After with --throttle
PG_DEFAULT = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


@dataclass
class Options:
    seed: int = 1
    duration: float = 60.0
    db: str = "postgresql"  # postgresql | sqlite
    pg_url: str = PG_DEFAULT  # server (and admin database) for the scratch database
    database_url: str = ""  # use this database as is (migrated, empty); nothing created/dropped
    procs: tuple[str, ...] = ("serve", "web", "worker")
    kill_min: float = 0.5
    kill_max: float = 3.0
    technicians: int = 3
    think: tuple[float, float] = (0.1, 0.6)  # a technician's pause between actions
    lease: float = 5.0
    csat_delay: str = "2s"
    drain: float = 90.0
    latency: float = 0.3  # Slack chat.* and PagerDuty answer up to this late (work done at once)
    throttle: bool = False  # Slack's per-channel post limit (429 + Retry-After) switched on
    db_drops: bool = False  # PostgreSQL: every 2-8 s, every connection to the database is cut
    transport: str = "http"  # http: signed requests | socket: Socket Mode (bench/chaos_socket)
    platform: str = "slack"  # slack | teams | both: where technicians work (bench/chaos_teams.py)
    keep: bool = False
    workdir: Path | None = None
    log: Any = print


# -- the fakes -------------------------------------------------------------------------------


class SlowSlack(FakeSlack):
    """FakeSlack that does each call's work at once and answers up to `latency` s later: the
    window where a killed sender leaves a message sent and not recorded."""

    def __init__(self, latency: float, rng: random.Random) -> None:
        super().__init__()
        self.latency, self.rng = latency, rng
        # (monotonic, channel, outbox id, posted | refused 429 | VIOLATION) per chat.postMessage
        self.post_log: list[tuple[float, str, Any, str]] = []
        self.ignored: list[tuple[str, float]] = []  # posts sent well inside a known window
        # Per channel, each 429's answer: (when it was due to its sender, whether the sender
        # was still connected to hear it). A window no live sender heard of is known to none.
        self.told: dict[str, list[tuple[float, bool]]] = {}
        self.unheard: list[tuple[str, float]] = []  # posts inside a window none heard of

    def _heard_before(self, channel: str, opened: float, at: float) -> bool:
        """Whether a 429 in the window opened at `opened` reached a live sender by `at`."""
        return any(
            heard and opened - 0.01 <= answered <= at
            for answered, heard in self.told.get(channel, [])
        )

    async def handle(self, rec: Recorded, request: web.Request) -> web.StreamResponse:
        violations = len(self.violations)
        response = await super().handle(rec, request)
        refused_to = ""
        if rec.path == "/api/chat.postMessage":
            params = self.api_calls()[-1].params if self.api_calls() else {}
            for call in reversed(self.api_calls()):
                if call.recorded is rec:
                    params = call.params
                    break
            meta = (params.get("metadata") or {}).get("event_payload") or {}
            what = "posted" if response.status == 200 else f"refused {response.status}"
            if response.status == 429:
                refused_to = str(params.get("channel"))
            if len(self.violations) > violations:
                channel, at = self.violations[-1]
                opened = self.windows[channel] - RETRY_AFTER
                since = at - opened
                what = f"refused inside a window opened {since:.2f}s before"
                # The refusal that opened the window reaches its sender up to `latency` later;
                # until then a post from another process is in flight unknowingly (a race no
                # process can see). Later than that, the window was ignored, unless no 429 of
                # it reached a sender still alive (killed before the answer came).
                if since > self.latency + 1.0:
                    if self._heard_before(channel, opened, at - 1.0):
                        self.ignored.append((channel, at))
                    else:
                        self.unheard.append((channel, at))
            self.post_log.append((time.monotonic(), str(params.get("channel")),
                                  meta.get("outbox_id"), what))  # fmt: skip
        if self.latency > 0 and rec.path.startswith("/api/chat."):
            await asyncio.sleep(self.rng.uniform(0, self.latency))
        if refused_to:
            heard = request.transport is not None and not request.transport.is_closing()
            self.told.setdefault(refused_to, []).append((time.monotonic(), heard))
        return response


class SlowPagerDuty(FakePagerDuty):
    def __init__(self, latency: float, rng: random.Random) -> None:
        super().__init__(routing_key=ROUTING_KEY)
        self.latency, self.rng = latency, rng

    async def handle(self, rec: Recorded, request: web.Request) -> web.StreamResponse:
        response = await super().handle(rec, request)
        if self.latency > 0:
            await asyncio.sleep(self.rng.uniform(0, self.latency))
        return response


# -- processes --------------------------------------------------------------------------------


class BotProc:
    """One `python -m bot ...` slot: started, SIGKILLed, started again; output in a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.args, self.env, self.log = name, args, env, log
        self.port = free_port() if args[0] == "serve" else 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready = False
        self.starts = 0
        self.kills = 0

    @property
    def serves(self) -> bool:
        return self.port != 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        env = dict(self.env)
        if self.serves:
            env["PORT"] = str(self.port)
        with open(self.log, "ab") as out:
            out.write(f"\n=== start {self.starts + 1} at {time.time():.3f}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bot", *self.args], cwd=REPO, env=env,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.starts += 1
        self.ready = False

    def kill(self, sig: int = signal.SIGKILL) -> None:
        proc = self.proc
        self.ready = False
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        if sig == signal.SIGKILL:
            proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; always leaves nothing running."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self.ready = False

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


async def serving(slots: list[BotProc], rng: random.Random) -> BotProc | None:
    """A process that serves requests and is up (waiting up to 10 s for one), at random."""
    for _ in range(100):
        up = [s for s in slots if s.serves and s.ready and s.alive()]
        if up:
            return rng.choice(up)
        await asyncio.sleep(0.1)
    return None


async def watch_ready(slot: BotProc, http: aiohttp.ClientSession) -> None:
    """Mark the slot ready once its current process answers (serve) or started its worker."""
    proc = slot.proc
    deadline = time.monotonic() + 60
    while slot.proc is proc and proc is not None and proc.poll() is None:
        if time.monotonic() > deadline:
            return
        if slot.serves:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(f"{slot.url}/healthz", timeout=aiohttp.ClientTimeout(2)) as r:
                    if r.status == 200:
                        slot.ready = True
                        return
        else:
            tail = slot.output().rsplit("=== start", 1)[-1]
            if "outbox worker running" in tail:
                slot.ready = True
                return
        await asyncio.sleep(0.1)


# -- the workload -----------------------------------------------------------------------------


@dataclass
class Intake:
    token: str
    channel: str
    p1: bool
    outcome: str = ""  # ok | refused (told to try again, nothing else) | unknown | error:<text>
    answers: list[str] = field(default_factory=list)  # each submission's answer, "-" for none


@dataclass
class Action:
    kind: str  # close | time
    number: str
    token: str
    outcome: str = ""


@dataclass
class Workload:
    intakes: list[Intake] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    opened: list[str] = field(default_factory=list)  # numbers of tickets known to exist, open
    unanswered: int = 0  # requests that got no answer (their process died or was not up)
    skipped: int = 0  # actions not started: no `serve` up, or its form never opened


class Driver:
    """Signed Slack requests to whichever `serve` is up, as a technician would send them."""

    def __init__(self, slots: list[BotProc], slack: FakeSlack, http: aiohttp.ClientSession) -> None:
        self.slots, self.slack, self.http = slots, slack, http
        self.work = Workload()
        self.used_views: set[int] = set()
        self.responses = 0

    async def post(self, rng: random.Random, body: str) -> str | None:
        """The answer's text, or None when no answer came (killed, not up, timed out)."""
        slot = await serving(self.slots, rng)
        if slot is None:
            return None
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": slack_signature(SIGNING_SECRET, ts, body),
        }
        try:
            async with self.http.post(
                f"{slot.url}/slack/events", data=body.encode(), headers=headers,
                timeout=aiohttp.ClientTimeout(total=10),
            ) as response:  # fmt: skip
                answer = await response.text()
                if response.status != 200:
                    return f"HTTP {response.status}: {answer[:200]}"
                return answer
        except (aiohttp.ClientError, TimeoutError):
            self.work.unanswered += 1
            return None

    async def slash(self, rng: random.Random, words: str, channel: str) -> str | None:
        self.responses += 1
        form = {
            "token": "legacy", "team_id": "T0TEAM", "team_domain": "acme",
            "channel_id": channel, "channel_name": "helpdesk", "user_id": "UTECH",
            "user_name": "tom", "command": "/ticket", "text": words, "api_app_id": "A0APP",
            "response_url": self.slack.response_url_for(f"chaos{self.responses}"),
            "trigger_id": f"trigger-{secrets.token_hex(8)}",
        }  # fmt: skip
        return await self.post(rng, urlencode(form))

    async def submit(self, rng: random.Random, payload: dict[str, Any]) -> str | None:
        return await self.post(rng, urlencode({"payload": json.dumps(payload)}))

    async def modal(self, rng: random.Random, words: str, channel: str, mark: str) -> Any:
        """Open a form with `/ticket <words>`; the view views.open got (None if it never came).
        A person whose command got no answer types it again."""
        for _ in range(3):
            await self.slash(rng, words, channel)
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline:
                for i, call in enumerate(self.slack.method_calls("views.open")):
                    if i not in self.used_views and mark in json.dumps(call["view"]):
                        self.used_views.add(i)
                        return call["view"]
                await asyncio.sleep(0.05)
        return None

    async def submit_until_answered(
        self, rng: random.Random, payload: dict[str, Any], answers: list[str] | None = None
    ) -> str:
        """Submit the form; with no answer, submit the same form again (same view id and
        hash, as Slack's Submit button does), up to 6 times. Returns the outcome."""
        unknown = False
        for _ in range(6):
            answer = await self.submit(rng, payload)
            if answers is not None:
                answers.append("-" if answer is None else f"{time.time():.3f}:{answer[:80]!r}")
            if answer is None:
                unknown = True
                await asyncio.sleep(rng.uniform(0.3, 1.0))
                continue
            if TRY_AGAIN in answer:
                return "unknown" if unknown else "refused"
            if IN_DOUBT in answer:
                return "unknown"
            if answer.startswith("HTTP "):
                return f"error:{answer}"
            if '"errors"' in answer:
                return f"error:{answer[:300]}"
            return "ok"
        return "unknown"

    async def intake(self, rng: random.Random) -> None:
        token = f"chaos-{secrets.token_hex(5)}"
        item = Intake(token, rng.choice(CHANNELS), rng.random() < 0.35)
        self.work.intakes.append(item)
        view = await self.modal(rng, f"new {token} VPN down", item.channel, token)
        if view is None:
            item.outcome = "no form"
            self.work.skipped += 1
            return
        values = {
            "requester": {"type": "users_select", "selected_user": "UANA"},
            "summary": _text(f"{token} VPN down"),
            "error_text": _text("Error 809: the network connection could not be established"),
            "doing": _text("Connecting in the morning"), "reproducible": _choice("yes"),
            "users_affected": {"type": "number_input", "value": "40" if item.p1 else "1"},
            "priority": _choice("P1" if item.p1 else "P3"), "category": _choice("network"),
            "asset": _text("VPN-01"), "client": _text(""),
        }  # fmt: skip
        payload = view_submission(view, values, view_id=f"V{token}")
        item.outcome = await self.submit_until_answered(rng, payload, item.answers)

    async def close(self, rng: random.Random, number: str) -> None:
        action = Action("close", number, f"close-{number}")
        self.work.actions.append(action)
        view = await self.modal(rng, f"close {number}", "C0CHAOS1", f'\\"{number}\\"')
        if view is None:
            action.outcome = "no form"
            self.work.skipped += 1
            return
        values = {"resolution_note": _text(GOOD_NOTE), "resolution_category": _choice("Incident"),
                  "time_spent": _text("1h"), "kb_article": _text("KB0012345")}  # fmt: skip
        payload = view_submission(view, values, view_id=f"VC{secrets.token_hex(5)}")
        action.outcome = await self.submit_until_answered(rng, payload)

    async def log_time(self, rng: random.Random, number: str) -> None:
        token = f"chaos-{secrets.token_hex(5)}"
        action = Action("time", number, token)
        self.work.actions.append(action)
        answer = await self.slash(rng, f"time {number} 15m {token}", "C0CHAOS1")
        if answer is None:
            action.outcome = "unknown"
        elif TRY_AGAIN in answer:
            action.outcome = "refused"
        elif IN_DOUBT in answer:
            action.outcome = "unknown"
        elif answer.startswith("HTTP "):
            action.outcome = f"error:{answer}"
        else:
            action.outcome = "ok"

    async def technician(
        self, rng: random.Random, until: float, think: tuple[float, float]
    ) -> None:
        """Half intakes, a quarter closes, a quarter time entries (on tickets still open)."""
        while time.monotonic() < until:
            await asyncio.sleep(rng.uniform(*think))
            numbers = list(self.work.opened)
            roll = rng.random()
            if roll < 0.5 or not numbers:
                await self.intake(rng)
            elif roll < 0.75:
                number = rng.choice(numbers)
                if number in self.work.opened:
                    self.work.opened.remove(number)
                await self.close(rng, number)
            else:
                await self.log_time(rng, rng.choice(numbers))


def outcomes_of(work: Workload, kind: str) -> dict[str, int]:
    return dict(Counter(a.outcome.split(":")[0] for a in work.actions if a.kind == kind))


KILLS: list[tuple[float, str]] = []  # (monotonic, process name) of every SIGKILL of the run


def _text(value: str) -> dict[str, Any]:
    return {"type": "plain_text_input", "value": value}


def _choice(value: str) -> dict[str, Any]:
    return {"type": "static_select", "selected_option": {"value": value}}


# -- the database -----------------------------------------------------------------------------


async def admin(server_url: str, sql: str) -> None:
    engine = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


@dataclass
class Snapshot:
    tickets: list[Ticket]
    rows: list[OutboxMessage]
    times: list[TimeEntry]


async def snapshot(url: str) -> Snapshot:
    engine = db.create_engine(url)
    try:
        async with db.session_factory(engine)() as session:
            tickets = list((await session.execute(select(Ticket))).scalars())
            rows = list((await session.execute(select(OutboxMessage))).scalars())
            times = list((await session.execute(select(TimeEntry))).scalars())
            return Snapshot(tickets, rows, times)
    finally:
        await engine.dispose()


def due_later(row: OutboxMessage) -> bool:
    """SLA alarms, tier nudges, the P1 follow-up: queued for hours ahead, never tried yet."""
    purpose = (row.payload or {}).get("purpose")
    if (row.dedup_key or "").startswith("sla:") or purpose in ("tier-nudge", "vip-followup"):
        return (row.status == "pending" and row.attempts == 0) or row.status == "cancelled"
    return (
        row.status == "pending"
        and row.attempts == 0
        and row.due_at > utcnow() + timedelta(minutes=10)
    )


def undelivered(rows: list[OutboxMessage]) -> list[OutboxMessage]:
    return [
        r
        for r in rows
        if not due_later(r) and (r.status not in ("delivered", "cancelled") or r.claimed_until)
    ]


# -- the run ----------------------------------------------------------------------------------


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    logs: dict[str, str] = field(default_factory=dict)  # each bot process slot's output

    @property
    def passed(self) -> bool:
        return not self.violations

    def text(self) -> str:
        verdict = "PASS" if self.passed else f"FAIL ({len(self.violations)} violations)"
        out = ["", f"chaos: {verdict}", *self.lines]
        out += [f"  VIOLATION: {v}" for v in self.violations]
        out += [f"  note: {n}" for n in self.notes]
        return "\n".join(out)


def check(work: Workload, snap: Snapshot, slack: FakeSlack, pd: FakePagerDuty,
          slots: list[BotProc]) -> Report:  # fmt: skip
    report = Report()
    bad = report.violations.append
    by_id = {r.id: r for r in snap.rows}
    number_of = {t.id: t.number for t in snap.tickets}

    # Tickets per intake token (each summary starts with its token).
    per_token: dict[str, list[Ticket]] = {}
    for ticket in snap.tickets:
        per_token.setdefault((ticket.summary or "").split(" ")[0], []).append(ticket)
    outcomes = Counter(i.outcome.split(":")[0] for i in work.intakes)
    for item in work.intakes:
        found = per_token.get(item.token, [])
        if len(found) > 1:
            bad(f"intake {item.token} made {len(found)} tickets: {[t.number for t in found]}")
        if item.outcome == "ok" and not found:
            bad(f"intake {item.token} was accepted but no ticket exists; answers {item.answers}")
        if item.outcome == "refused" and found:
            bad(f"intake {item.token} was told to try again, yet {found[0].number} exists")
        if item.outcome.startswith("error"):
            bad(f"intake {item.token} answered with an error: {item.outcome}")

    # Every Slack post of a side effect: once per outbox row (by the metadata on the message).
    posts = slack.method_calls("chat.postMessage")
    raw: Counter[int] = Counter()
    unmarked = 0
    for params in posts:
        meta = params.get("metadata") or {}
        outbox_id = (meta.get("event_payload") or {}).get("outbox_id")
        if outbox_id is None:
            unmarked += 1
        else:
            raw[int(outbox_id)] += 1
    stored: Counter[int] = Counter()  # what the channels hold (refused posts are not there)
    for messages in slack.messages.values():
        for message in messages:
            meta = message.get("metadata") or {}
            outbox_id = (meta.get("event_payload") or {}).get("outbox_id")
            if outbox_id is not None:
                stored[int(outbox_id)] += 1
    for outbox_id, n in sorted(stored.items()):
        if n > 1:
            row = by_id.get(outbox_id)
            what = f"{row.kind} {row.payload.get('purpose')}" if row else "?"
            bad(f"outbox row {outbox_id} ({what}) posted {n} times")
    ignored = getattr(slack, "ignored", [])
    if len(slack.violations) > len(ignored):
        report.notes.append(
            f"{len(slack.violations) - len(ignored)} posts arrived inside a Retry-After window "
            "before its refusal can have reached its sender (a race between processes)"
        )
    for channel, at in getattr(slack, "unheard", []):
        kills = [f"{t - at:+.2f}s {name}" for t, name in KILLS if at - 4 <= t <= at]
        report.notes.append(
            f"a post to {channel} inside a Retry-After window whose 429s reached no live sender "
            f"(killed before the answer came: known to no process); kills {kills}"
        )
    for channel, at in ignored:
        seen = [
            f"{t - at:+.2f}s row {oid} {what}"
            for t, c, oid, what in getattr(slack, "post_log", [])
            if c == channel and at - 3 <= t <= at + 0.5
        ]
        kills = [f"{t - at:+.2f}s {name}" for t, name in KILLS if at - 3 <= t <= at + 0.5]
        bad(f"a post to {channel} inside its Retry-After window: {seen}; kills {kills}")

    def purpose_posts(purpose: str) -> Counter[str]:
        seen: Counter[str] = Counter()
        for outbox_id, n in stored.items():
            row = by_id.get(outbox_id)
            if row is None or not row.ticket_id or row.kind not in ("message", "dm"):
                continue
            if purpose == "ticket-card" and row.payload.get("ticket_card"):
                seen[number_of[row.ticket_id]] += n
            elif row.payload.get("purpose") == purpose:
                seen[number_of[row.ticket_id]] += n
        return seen

    cards = purpose_posts("ticket-card")
    for ticket in snap.tickets:
        if ticket.source_platform != "slack":  # Teams tickets: bench.chaos_teams.check
            continue
        if cards.get(ticket.number, 0) != 1:
            bad(f"{ticket.number}: ticket card posted {cards.get(ticket.number, 0)} times")
    closed = sorted(t.number for t in snap.tickets if t.status == "closed")
    # The card as it stands in the channel after every refresh: a closed ticket's card has
    # lost its buttons, an open one still has **Close**; a closed P1's notice is resolved.
    for messages in slack.messages.values():
        for message in messages:
            outbox_id = ((message.get("metadata") or {}).get("event_payload") or {}).get(
                "outbox_id"
            )
            row = by_id.get(int(outbox_id)) if outbox_id is not None else None
            if row is None or not row.ticket_id:
                continue
            if row.payload.get("purpose") == "incident-notice":
                number = number_of[row.ticket_id]
                resolved = str(message.get("text", "")).startswith("Resolved:")
                if resolved != (number in closed):
                    bad(f"{number}: the incident notice in Slack is stale (ticket "
                        f"{'closed' if number in closed else 'open'}, notice "
                        f"{'resolved' if resolved else 'open'})")  # fmt: skip
                continue
            if not row.payload.get("ticket_card"):
                continue
            number = number_of[row.ticket_id]
            has_close = '"Close"' in json.dumps(message.get("blocks") or [])
            if has_close == (number in closed):
                state = "closed" if number in closed else "open"
                bad(f"{number}: the card in Slack is stale (ticket {state}, Close button "
                    f"{'shown' if has_close else 'gone'})")  # fmt: skip
    surveys = purpose_posts("csat-survey")
    on_slack = {t.number for t in snap.tickets if t.source_platform == "slack"}
    for number in closed:
        if number in on_slack and surveys.get(number, 0) != 1:
            bad(f"{number}: CSAT survey DM sent {surveys.get(number, 0)} times")
    for number, n in surveys.items():
        if number not in closed:
            bad(f"{number}: survey sent ({n}) for a ticket not closed")

    # Pages: one alert per P1 after dedup; open unless closed. One incident notice each.
    p1s = sorted(t.number for t in snap.tickets if t.priority == "P1")
    notices = purpose_posts("incident-notice")
    for number in p1s:
        if notices.get(number, 0) != 1:
            bad(f"{number}: incident notice posted {notices.get(number, 0)} times")
    triggers = Counter(e.get("dedup_key") for e in pd.events("trigger"))
    resolves = Counter(e.get("dedup_key") for e in pd.events("resolve"))
    not_paged = {
        number_of[r.ticket_id]
        for r in snap.rows
        if r.kind.startswith("page.") and r.status == "cancelled" and r.ticket_id
    }
    for number in p1s:
        if not triggers.get(number) and number not in not_paged:
            bad(f"{number}: P1 never paged")
    for key in triggers:
        if key not in p1s:
            bad(f"page {key} for no P1 ticket")
    should_be_open = sorted(set(p1s) - set(closed) - not_paged)
    is_open = sorted(pd.open_dedup_keys())
    if is_open != should_be_open:
        extra = sorted(set(is_open) - set(should_be_open))
        missing = sorted(set(should_be_open) - set(is_open))
        bad(f"PagerDuty alerts open {extra} but should not be; not open {missing}")

    # Closures and time entries acknowledged are in the database, none twice.
    status = {t.number: t.status for t in snap.tickets}
    for action in work.actions:
        if (
            action.kind == "close"
            and action.outcome == "ok"
            and status.get(action.number) != "closed"
        ):
            bad(f"close of {action.number} accepted but the ticket is {status.get(action.number)}")
        if action.outcome.startswith("error") and "is closed" not in action.outcome:
            report.notes.append(f"{action.kind} {action.number}: {action.outcome[:200]}")
    entries = Counter(e.note.split(" ")[0] for e in snap.times if e.note.startswith("chaos-"))
    for action in work.actions:
        if action.kind != "time":
            continue
        n = entries.get(action.token, 0)
        if n > 1:
            bad(f"time entry {action.token} on {action.number} recorded {n} times")
        if action.outcome == "ok" and n == 0 and "ok" == action.outcome:
            report.notes.append(f"time entry {action.token} answered but not recorded")
        if action.outcome == "refused" and n:
            bad(f"time entry {action.token} was told to try again, yet it was recorded")

    # The outbox is empty: nothing owed, nothing claimed, nothing dead.
    left = undelivered(snap.rows)
    for row in left[:20]:
        bad(
            f"outbox row {row.id} {row.kind}/{row.payload.get('purpose')} "
            f"{row.status} attempts={row.attempts} claimed_until={row.claimed_until} "
            f"last_error={row.last_error[:120]!r}"
        )
    if len(left) > 20:
        bad(f"... and {len(left) - 20} more outbox rows not delivered")
    delivered_posts = [
        r
        for r in snap.rows
        if r.status == "delivered" and r.kind in ("message", "dm") and (r.result or {}).get("ts")
        if r.payload.get("platform") != "teams"  # Teams: bench.chaos_teams.check
    ]
    lost = [r.id for r in delivered_posts if not stored.get(r.id)]
    if lost:
        bad(f"outbox rows recorded delivered that Slack never got: {lost[:20]}")
    for outbox_id in sorted(set(raw) - set(stored)):
        row = by_id.get(outbox_id)
        if row is None:
            continue
        what = f"row {outbox_id} {row.kind}/{row.payload.get('purpose')} {row.status}"
        if row.status == "delivered":
            bad(f"{what}: recorded delivered, but none of its {raw[outbox_id]} posts is in Slack")
        else:
            report.notes.append(f"{what}: its {raw[outbox_id]} posts were refused ({row.result})")

    report.logs = {s.name: s.output() for s in slots}
    tracebacks = {name: out.count("Traceback") for name, out in report.logs.items()}
    if any(tracebacks.values()):
        report.notes.append(f"tracebacks in logs: {tracebacks}")

    kinds = Counter(f"{r.kind}:{r.status}" for r in snap.rows)
    looked_up = sum(1 for r in snap.rows if (r.result or {}).get("found"))
    in_doubt = sum(1 for r in snap.rows if r.in_doubt)
    report.lines += [
        "  processes: "
        + ", ".join(f"{s.name} started {s.starts}x killed {s.kills}x" for s in slots),
        f"  intakes: {len(work.intakes)} {dict(outcomes)}; unanswered requests: "
        f"{work.unanswered}; actions skipped: {work.skipped}",
        f"  tickets: {len(snap.tickets)} ({len(p1s)} P1, {len(closed)} closed); "
        f"time entries: {len(entries)} of {sum(a.kind == 'time' for a in work.actions)} `time` "
        f"commands ({len(snap.times)} with closures' Time spent)",
        f"  closes: {outcomes_of(work, 'close')}; time: {outcomes_of(work, 'time')}",
        f"  Slack: {len(posts)} chat.postMessage ({unmarked} without outbox metadata), "
        f"{sum(raw.values())} for {len(raw)} outbox rows ({len(slack.refusals)} refused 429), "
        f"{sum(stored.values())} in channels; cards {sum(cards.values())}; "
        f"incident notices {sum(notices.values())}; "
        f"surveys {sum(surveys.values())}; history look-ups "
        f"{len(slack.method_calls('conversations.history'))}"
        f"+{len(slack.method_calls('conversations.replies'))}",
        f"  PagerDuty: {sum(triggers.values())} raw triggers for {len(triggers)} keys "
        f"({sum(n - 1 for n in triggers.values())} repeats, deduplicated by dedup_key), "
        f"{sum(resolves.values())} resolves; open {len(is_open)}; not paged (closed first) "
        f"{len(not_paged)}",
        f"  outbox: {len(snap.rows)} rows {dict(sorted(kinds.items()))}; found by look-up "
        f"{looked_up}; in doubt {in_doubt}",
    ]
    return report


async def drop_connections(url: str, until: float, rng: random.Random, drops: list[int]) -> None:
    """Cut every connection to the database (as a failover or a network blip does)."""
    name = make_url(url).database
    server = make_url(url).set(database="postgres").render_as_string(hide_password=False)
    engine = create_async_engine(server, isolation_level="AUTOCOMMIT")
    cut = text(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = :name AND pid <> pg_backend_pid()"
    )
    try:
        while time.monotonic() < until:
            await asyncio.sleep(rng.uniform(2.0, 8.0))
            with contextlib.suppress(Exception):
                async with engine.connect() as conn:
                    drops.append(int((await conn.execute(cut, {"name": name})).scalar() or 0))
    finally:
        await engine.dispose()


async def run(opts: Options) -> Report:
    rng = random.Random(opts.seed)
    KILLS.clear()
    log = opts.log
    work_dir = opts.workdir or Path(tempfile.mkdtemp(prefix=f"helpdesk-chaos-{opts.seed}-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    slack = SlowSlack(opts.latency, random.Random(f"{opts.seed}-slack"))
    pd = SlowPagerDuty(opts.latency, random.Random(f"{opts.seed}-pd"))
    if opts.throttle:
        slack.limit_posts(burst=3, per_second=1.0, retry_after=RETRY_AFTER)
    from bench import chaos_teams  # the Teams side (it imports this module)

    teams = chaos_teams.TeamsFakes(opts.latency, opts.seed) if opts.platform != "slack" else None
    slots: list[BotProc] = []
    scratch = ""
    server = ""
    if opts.database_url:
        url = opts.database_url
    elif opts.db == "postgresql":
        server = opts.pg_url
        scratch = f"helpdesk_chaos_{os.getpid()}_{secrets.token_hex(3)}"
        url = make_url(server).set(database=scratch).render_as_string(hide_password=False)
    else:
        url = f"sqlite+aiosqlite:///{work_dir / 'helpdesk.db'}"
    config = {
        "slack": {"incident_channel": INCIDENT_CHANNEL},
        "incident": {"bridge_url": "https://meet.example.com/p1-bridge"},
        "csat": {"delay": opts.csat_delay},
        "directory": {"source": "file", "path": "people.yaml"},
    }
    people = PEOPLE + (chaos_teams.people(opts.technicians) if teams else [])
    (work_dir / "people.yaml").write_text(yaml.safe_dump(people))
    (work_dir / "helpdesk.yaml").write_text(yaml.safe_dump(config))
    tasks: list[asyncio.Task[Any]] = []
    socket = None
    if opts.transport == "socket":
        from bench.chaos_socket import SocketTransport

        socket = SocketTransport(opts.seed, slack)
    try:
        await slack.start()
        await pd.start()
        if socket is not None:
            await socket.start()
        if teams is not None:
            await teams.start()
            config["teams"] = teams.config()  # its URLs are known now
            (work_dir / "helpdesk.yaml").write_text(yaml.safe_dump(config))
        env = {
            **base_env(),
            "DATABASE_URL": url,
            "HELPDESK_CONFIG": str(work_dir / "helpdesk.yaml"),
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": f"{slack.url}/api/",
            "PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
            "PAGERDUTY_EVENTS_URL": pd.events_url,
            "HOST": "127.0.0.1",
            "OUTBOX_LEASE_SECONDS": f"{opts.lease:g}",
            "LOG_LEVEL": "INFO",
            **(teams.env() if teams else {}),
        }
        if socket is not None:
            env = socket.env(env)
        if scratch:
            await admin(server, f'CREATE DATABASE "{scratch}"')
        if not opts.database_url:
            migrate = await asyncio.to_thread(
                subprocess.run, [sys.executable, "-m", "bot", "migrate"], cwd=REPO, env=env,
                capture_output=True, timeout=120, check=False,
            )  # fmt: skip
            if migrate.returncode != 0:
                raise RuntimeError(f"migrate failed: {migrate.stdout!r} {migrate.stderr!r}")
        args = {"serve": ["serve"], "web": ["serve", "--no-scheduler"], "worker": ["worker"]}
        for i, kind in enumerate(opts.procs):
            name = f"{kind}{i + 1}"
            slots.append(BotProc(name, args[kind], env, work_dir / f"{name}.log"))
        async with aiohttp.ClientSession() as http:
            for slot in slots:
                slot.start()
            await asyncio.gather(*(watch_ready(s, http) for s in slots))
            if not all(s.ready for s in slots):
                raise RuntimeError(f"the bot did not start; see {work_dir}")
            where = url if opts.database_url else opts.db
            log(f"chaos: seed {opts.seed}, {where}, {opts.duration:g}s, "
                f"processes {[s.name for s in slots]}, logs in {work_dir}")  # fmt: skip
            driver = socket.driver(Driver, slots, http) if socket else Driver(slots, slack, http)
            teams_driver = None
            if teams is not None:
                teams_driver = chaos_teams.TeamsDriver(slots, teams, http, driver.work, work_dir)

            engine = db.create_engine(url)

            async def refresh_open() -> None:
                """Open tickets for closes and time entries, read from the database."""
                while True:
                    with contextlib.suppress(Exception):
                        async with db.session_factory(engine)() as session:
                            found = await session.execute(
                                select(Ticket.number).where(Ticket.status == "open")
                            )
                            closing = {a.number for a in driver.work.actions if a.kind == "close"}
                            driver.work.opened = [n for n in found.scalars() if n not in closing]
                    await asyncio.sleep(1.0)

            until = time.monotonic() + opts.duration
            tasks.append(asyncio.ensure_future(refresh_open()))
            if socket is not None:
                socket.unsettle(until, slots)
            techs = []
            for n in range(opts.technicians):
                tech_rng = random.Random(f"{opts.seed}-{n}")
                if teams_driver and (opts.platform == "teams" or n % 2):  # both: every other
                    work = teams_driver.technician(tech_rng, until, opts.think, n)
                else:
                    work = driver.technician(tech_rng, until, opts.think)
                techs.append(asyncio.ensure_future(work))
            kills: list[str] = []
            drops: list[int] = []
            if opts.db_drops and url.startswith("postgresql"):
                tasks.append(asyncio.ensure_future(
                    drop_connections(url, until, random.Random(f"{opts.seed}-db"), drops)
                ))  # fmt: skip
            while time.monotonic() < until:
                await asyncio.sleep(rng.uniform(opts.kill_min, opts.kill_max))
                if time.monotonic() >= until:
                    break
                # A process that is up and working (one still starting holds nothing yet);
                # the choice is made whatever is up, so the seed's sequence stays the same.
                pick, pause = rng.random(), rng.uniform(0.0, 1.0)
                up = [s for s in slots if s.ready and s.alive()]
                if not up:
                    continue
                victim = up[int(pick * len(up))]
                victim.kill()
                KILLS.append((time.monotonic(), victim.name))
                victim.kills += 1
                kills.append(victim.name)
                await asyncio.sleep(pause)
                victim.start()
                tasks.append(asyncio.ensure_future(watch_ready(victim, http)))
            await asyncio.gather(*techs)
            log(f"chaos: kills done ({len(kills)}); {len(driver.work.intakes)} intakes; draining")
            for slot in slots:
                if not slot.alive():
                    slot.start()
            await asyncio.gather(*(watch_ready(s, http) for s in slots))
            deadline = time.monotonic() + opts.drain
            started = time.monotonic()
            while time.monotonic() < deadline:
                snap = await snapshot(url)
                if not undelivered(snap.rows):
                    break
                await asyncio.sleep(1.0)
            drained = time.monotonic() - started
            await asyncio.sleep(3.0)  # every process polls again: nothing more may go out
            for task in tasks:
                task.cancel()
            await engine.dispose()
            snap = await snapshot(url)
            for slot in slots:
                slot.stop()
            report = check(driver.work, snap, slack, pd, slots)
            if socket is not None:
                await socket.check(report, driver.work, url)
            if teams_driver is not None:
                chaos_teams.check(teams_driver, snap, report, db_drops=bool(drops))
            cut = f", {len(drops)} cuts of {sum(drops)} connections" if drops else ""
            report.lines.insert(0, f"  seed {opts.seed}, {opts.duration:g}s of kills "
                                   f"({len(kills)} SIGKILLs{cut}), drained in {drained:.1f}s, "
                                   f"logs {work_dir}")  # fmt: skip
            return report
    finally:
        for task in tasks:
            task.cancel()
        for slot in slots:
            slot.stop()
        if socket is not None:
            await socket.stop()
        await slack.stop()
        await pd.stop()
        if teams is not None:
            await teams.stop()
        if scratch:
            with contextlib.suppress(Exception):
                await admin(server, f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
        if not opts.keep and opts.workdir is None:
            import shutil

            shutil.rmtree(work_dir, ignore_errors=True)


def _interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seed", type=int, default=None, help="default: a random one (printed)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of kills (60)")
    parser.add_argument("--db", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--pg-url", default=os.environ.get("TEST_POSTGRES_URL", PG_DEFAULT),
                        help="server for the scratch database (created and dropped)")  # fmt: skip
    parser.add_argument("--procs", default="serve,web,worker",
                        help="serve, web (= serve --no-scheduler), worker")  # fmt: skip
    parser.add_argument("--kill-min", type=float, default=0.5)
    parser.add_argument("--kill-max", type=float, default=3.0)
    parser.add_argument("--technicians", type=int, default=3, help="concurrent technicians")
    parser.add_argument("--think", type=float, nargs=2, default=(0.1, 0.6),
                        help="a technician's pause between actions, min max (0.1 0.6)")  # fmt: skip
    parser.add_argument("--lease", type=float, default=5.0, help="OUTBOX_LEASE_SECONDS (5)")
    parser.add_argument("--drain", type=float, default=90.0, help="max wait for the outbox")
    parser.add_argument("--latency", type=float, default=0.3,
                        help="Slack chat.* and PagerDuty answer this late at most")  # fmt: skip
    parser.add_argument("--throttle", action="store_true",
                        help="Slack refuses posts over ~1/s per channel (429)")  # fmt: skip
    parser.add_argument("--db-drops", action="store_true",
                        help="PostgreSQL: cut every connection to it every 2-8 s")  # fmt: skip
    parser.add_argument("--platform", choices=("slack", "teams", "both"), default="slack",
                        help="where technicians work (both: every other one in Teams)")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, SQLite)")
    parser.add_argument("--transport", choices=("http", "socket"), default="http",
                        help="Slack's requests: signed HTTP, or Socket Mode envelopes")  # fmt: skip
    ns = parser.parse_args(argv)
    seed = ns.seed if ns.seed is not None else random.SystemRandom().randrange(1, 10**6)
    opts = Options(
        seed=seed, duration=ns.duration, db=ns.db, pg_url=ns.pg_url,
        procs=tuple(p.strip() for p in ns.procs.split(",") if p.strip()),
        kill_min=ns.kill_min, kill_max=ns.kill_max, technicians=ns.technicians,
        think=tuple(ns.think),
        lease=ns.lease, drain=ns.drain, keep=ns.keep, latency=ns.latency, throttle=ns.throttle,
        db_drops=ns.db_drops, transport=ns.transport, platform=ns.platform,
    )  # fmt: skip
    try:
        report = asyncio.run(run(opts))
    except KeyboardInterrupt:
        print("chaos: interrupted; processes stopped", file=sys.stderr)
        return 130
    except Exception as exc:
        traceback.print_exc()
        print(f"chaos: the run broke: {exc!r}", file=sys.stderr)
        return 2
    print(report.text())
    if not report.passed:
        print(f"replay: python -m bench.chaos --seed {seed} --db {ns.db} "
              f"--duration {ns.duration:g} --procs {ns.procs} "
              f"--transport {ns.transport} --platform {ns.platform}")  # fmt: skip
    return 0 if report.passed else 1


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupted)  # stopped like Ctrl-C: everything cleaned up
    # Run as bench.chaos, the module bench.chaos_teams imports (one KILLS list, not two).
    from bench import chaos

    sys.exit(chaos.main())
