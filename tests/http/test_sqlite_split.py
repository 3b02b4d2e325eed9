"""The Procfile's split on the default SQLite file (SPEC "Running"): one `serve --no-scheduler`
and two `worker` processes on one host, real processes on one local file. Every side effect
(ticket cards, P1 notices and their updates, pages, surveys, follow-up reminders) happens exactly
once, soon after its cause, with no lock error anywhere and a bounded WAL."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from sqlalchemy import select

from storage import db
from storage.models import OutboxMessage, Ticket
from tests.fakes.slack_api import FakeSlack
from tests.harness import (
    BOT_TOKEN,
    SIGNING_SECRET,
    AppHarness,
    is_due_later,
    is_sla_alarm,
    view_submission,
)
from tests.http import processes
from tests.http.p1_support import (
    BRIDGE,
    INCIDENT_CHANNEL,
    ROUTING_KEY,
    SLACK_PEOPLE,
    eventually,
    fake_pagerduty,
    pager_env,
    slack_close,
    slack_modal,
)

log = logging.getLogger(__name__)
TICKETS = 8  # every other one a P1
CLOSED = (1, 2, 3, 4)
WAL_LIMIT = 16 * 1024 * 1024
CONFIG = {
    "slack": {"incident_channel": INCIDENT_CHANNEL},
    "incident": {"bridge_url": BRIDGE},
    "csat": {"delay": "0s", "vip_followup_delay": "1s"},
    "directory": {"source": "file", "path": "people.yaml"},
}


def intake_values(i: int) -> dict[str, dict[str, Any]]:
    def text(value: str) -> dict[str, Any]:
        return {"type": "plain_text_input", "value": value}

    def choice(value: str) -> dict[str, Any]:
        return {"type": "static_select", "selected_option": {"value": value}}

    p1 = i % 2 == 0
    return {
        "requester": {"type": "users_select", "selected_user": "UANA"},
        "summary": text(f"Split ticket {i}"),
        "error_text": text("Error 809"),
        "doing": text("Connecting"),
        "reproducible": choice("yes"),
        "users_affected": {"type": "number_input", "value": "40" if p1 else "1"},
        "priority": choice("P1" if p1 else "P3"),
        "category": choice("network"),
        "asset": text("VPN-01"),
        "client": text(""),
    }


def cards(fake: FakeSlack) -> dict[str, list[Any]]:
    """The ticket cards posted in the help channel, by summary (each should be there once)."""
    found: dict[str, list[Any]] = {}
    for call in fake.calls("/api/chat.postMessage"):
        body = call.json or call.form or {}
        if body.get("channel") == "C0HELP" and "thread_ts" not in body:
            for i in range(TICKETS):
                if f"Split ticket {i}" in json.dumps(body):
                    found.setdefault(f"Split ticket {i}", []).append(call)
    return found


def posts_to(fake: FakeSlack, channel: str) -> list[dict[str, Any]]:
    return [p for p in fake.posts() if p.get("channel") == channel]


def updates_to(fake: FakeSlack, channel: str) -> list[dict[str, Any]]:
    return [u for u in fake.method_calls("chat.update") if u.get("channel") == channel]


async def test_web_and_two_workers_on_one_sqlite_file_do_everything_exactly_once(
    tmp_path: Path, slack_api: FakeSlack, spawn: processes.Spawn
):
    (tmp_path / "people.yaml").write_text(yaml.safe_dump(SLACK_PEOPLE))
    (tmp_path / "helpdesk.yaml").write_text(yaml.safe_dump(CONFIG))
    database = tmp_path / "helpdesk.db"
    port = processes.free_port()
    async with fake_pagerduty() as pd:
        env = {
            "DATABASE_URL": f"sqlite+aiosqlite:///{database}",
            "HELPDESK_CONFIG": str(tmp_path / "helpdesk.yaml"),
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": f"{slack_api.url}/api/",
            "HOST": "127.0.0.1",
            "PORT": str(port),
            **pager_env(pd, None),
        }
        # The web process migrates the new file on start; the workers come up after it.
        web = await spawn("serve", "--no-scheduler", env=env, name="web")
        await web.wait_for_line("listening on")
        workers = [await spawn("worker", env=env, name=f"worker {n}") for n in (1, 2)]
        for worker in workers:
            await worker.wait_for_line("outbox worker running")

        client = AppHarness(tmp_path, env, None, None)  # talks to the web process over HTTP
        client.url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as client.http:
            await eventually(lambda: processes.healthy(client.http, port), timeout=10)  # type: ignore[arg-type]
            views = [await slack_modal(client, slack_api, "new VPN down") for _ in range(TICKETS)]
            sent: dict[str, float] = {}

            async def submit(i: int) -> float:
                sent[f"Split ticket {i}"] = time.monotonic()
                submission = view_submission(views[i], intake_values(i), view_id=f"VS{i}")
                response = await client.interactive(submission)
                assert response.status == 200
                return time.monotonic() - sent[f"Split ticket {i}"]

            acks = await asyncio.gather(*(submit(i) for i in range(TICKETS)))
            assert max(acks) < 3.0, acks
            await eventually(lambda: len(cards(slack_api)) == TICKETS, timeout=10, what="cards")
            latency = [calls[0].at - sent[summary] for summary, calls in cards(slack_api).items()]
            # Committed by the web process, delivered by a worker: within about a second; the
            # eight cards share one channel, where posts are paced to about one a second (a
            # burst of three first), so the last ones wait their turn.
            assert sorted(latency)[2] < 1.5, latency
            assert max(latency) < TICKETS + 1.0, latency
            log.info("acks %.0f-%.0f ms; cards %.0f-%.0f ms after their submission",
                     min(acks) * 1000, max(acks) * 1000, min(latency) * 1000,
                     max(latency) * 1000)  # fmt: skip
            await eventually(lambda: len(pd.events("trigger")) == TICKETS // 2, timeout=10)
            # The eight were submitted at once: which got which number is up to the database.
            engine = db.create_engine(f"sqlite+aiosqlite:///{database}")
            async with db.session_factory(engine)() as session:
                query = select(Ticket.number).where(Ticket.priority == "P1")
                p1s = sorted((await session.execute(query)).scalars().all())
            await engine.dispose()
            closed_p1s = sorted(f"HD-{n}" for n in CLOSED if f"HD-{n}" in p1s)

            for number in CLOSED:
                await slack_close(client, slack_api, f"HD-{number}")
            await eventually(lambda: len(posts_to(slack_api, "DUANA")) == len(CLOSED),
                             timeout=10, what="surveys")  # fmt: skip
            await eventually(lambda: len(pd.events("resolve")) == len(closed_p1s), timeout=10,
                             what="resolves")  # fmt: skip
            await eventually(
                lambda: len(posts_to(slack_api, "DUTECH")) >= len(closed_p1s), timeout=10
            )

            async def all_sent() -> bool:
                # Thread replies in the help channel are paced like every post there.
                engine = db.create_engine(f"sqlite+aiosqlite:///{database}")
                try:
                    async with db.session_factory(engine)() as session:
                        found = (await session.execute(select(OutboxMessage))).scalars()
                        # SLA warnings and tier nudges are due later: they wait, as they should.
                        return {r.status for r in found if not is_due_later(r)} == {"delivered"}
                finally:
                    await engine.dispose()

            await eventually(all_sent, timeout=30, what="every outbox row delivered")
            await asyncio.sleep(2.0)  # several polls of both workers: nothing more may come

        # Exactly once each.
        assert {s: len(c) for s, c in cards(slack_api).items()} == {
            f"Split ticket {i}": 1 for i in range(TICKETS)
        }
        notices = posts_to(slack_api, INCIDENT_CHANNEL)
        assert len(notices) == TICKETS // 2
        assert len({u["ts"] for u in updates_to(slack_api, INCIDENT_CHANNEL)}) == len(closed_p1s)
        triggers = sorted(e["dedup_key"] for e in pd.events("trigger"))
        assert triggers == p1s, triggers
        assert sorted(e["dedup_key"] for e in pd.events("resolve")) == closed_p1s
        surveys = [json.dumps(p) for p in posts_to(slack_api, "DUANA")]
        assert all(sum(f"HD-{n}" in s for s in surveys) == 1 for n in CLOSED), surveys
        reminders = [p for p in posts_to(slack_api, "DUTECH") if "follow-up" in json.dumps(p)]
        assert len(reminders) == len(closed_p1s), reminders  # the closed P1s

        engine = db.create_engine(f"sqlite+aiosqlite:///{database}")
        async with db.session_factory(engine)() as session:
            rows = (await session.execute(select(OutboxMessage))).scalars().all()
            tickets = (await session.execute(select(Ticket))).scalars().all()
        await engine.dispose()
        assert len(tickets) == TICKETS
        # SLA warnings (due hours later) stay queued, or were cancelled by the first response.
        alarms = [r for r in rows if is_sla_alarm(r)]
        assert {(r.status, r.attempts) for r in alarms} <= {("pending", 0), ("cancelled", 0)}
        rows = [r for r in rows if not is_due_later(r)]
        assert {(r.status, r.attempts) for r in rows} == {("delivered", 1)}, [
            (r.id, r.kind, r.status, r.attempts, r.last_error, r.payload.get("purpose"), r.due_at)
            for r in rows
            if (r.status, r.attempts) != ("delivered", 1)
        ]
        # Only the workers delivered (the web process has no scheduler).
        assert {r.claimed_by.split("-")[0] for r in rows if r.claimed_by} <= {
            str(w.process.pid) for w in workers
        }
        for proc in (web, *workers):
            problems = [
                line
                for line in proc.lines
                if " ERROR " in line or "Traceback" in line or "locked" in line.lower()
            ]
            assert problems == [], (proc.name, problems)
            assert not any(ROUTING_KEY in line for line in proc.lines)
        wal = database.with_name(database.name + "-wal")
        assert not wal.exists() or wal.stat().st_size < WAL_LIMIT
