"""The PSA scenario (issue #12): intake CPU with and without a system of record, and how many
PSA writes one worker pushes per second.

    python -m bench.psa [--requests N] [--tickets N]

Starts the fakes (`bench.fakes`) and a ServiceNow fake (`tests/fakes/psa_servicenow.py`) in
helper processes and the bot as `python -m bot serve` subprocesses on SQLite, like bench.run:

- intake: signed Slack intake submissions (client Acme, whose ServiceNow contract maps to a
  tier) at c=1 and c=8, once per setup: the web process alone (`serve --no-scheduler`: the
  request path, which is where the PSA adds its outbox row), and with the worker in the same
  process (card posted; with the PSA also the incident created, the contract read and the
  card refreshed with the number: everything a ticket costs). CPU per request is the server
  process's CPU over the run (and its settling) / requests.
- writes/s: N tickets each with a queued incident and a work note (written into the
  database from here), one `python -m bot worker`; writes / seconds until the fake has all.

Targets: the PSA adds <= 20 % to intake CPU per request; one worker >= 100 PSA writes/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from bench import payloads
from bench.fakes import RemoteFakes
from bench.loadgen import client_session
from bench.procs import REPO, Server, base_env, cpu_seconds, free_port, stop_all
from bench.run import Figures, measure, unique_view_id, wait_until
from tests.fakes.base import Recorded
from tests.fakes.psa_servicenow import FakeServiceNow

STATE = "/__bench/state"
LEVELS = (1, 8)
CONTRACT = "Gold Support"


class CountingServiceNow(FakeServiceNow):
    """The ServiceNow fake, with its counters readable over HTTP (its own process)."""

    def bench_state(self) -> dict[str, Any]:
        kinds: dict[str, int] = {}
        for _, what, _ in self.writes:
            kinds[what] = kinds.get(what, 0) + 1
        return {"writes": len(self.writes), "kinds": kinds}

    async def handle(self, rec: Recorded, request: web.Request) -> web.StreamResponse:
        if rec.path == STATE:
            return web.json_response(self.bench_state())
        return await super().handle(rec, request)


async def serve_fake() -> None:
    fake = CountingServiceNow()
    fake.add_company("Acme", [(CONTRACT, True)])
    await fake.start()
    print(json.dumps({"url": fake.url, "env": fake.env()}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await fake.stop()


class RemotePsa:
    """The ServiceNow fake's process."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.env: dict[str, str] = {}

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "bench.psa", "--serve-fake"],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    async def start(self) -> None:
        self.proc = self._spawn()
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), 30)
        started = json.loads(line)
        self.url, self.env = started["url"], started["env"]

    async def state(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as http, http.get(self.url + STATE) as response:
            data: dict[str, Any] = await response.json()
            return data

    async def count(self, what: str) -> int:
        return int((await self.state())["kinds"].get(what, 0))

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        await asyncio.to_thread(proc.wait, 10)


def _spawn_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "bot", "worker"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def say(message: str) -> None:
    print(message, flush=True)


def bot_env(db_url: str, port: int, fakes: RemoteFakes, config: Path) -> dict[str, str]:
    return {
        **base_env(),
        "DATABASE_URL": db_url,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "SLACK_BOT_TOKEN": payloads.BOT_TOKEN,
        "SLACK_SIGNING_SECRET": payloads.SIGNING_SECRET,
        "SLACK_API_URL": f"{fakes.slack_url}/api/",
        "HELPDESK_CONFIG": str(config),
        "LOG_LEVEL": "WARNING",
    }


class Progress:
    """Settles a run: every request's post-ack work (card post; PSA create and refresh)."""

    def __init__(self, fakes: RemoteFakes, psa: RemotePsa | None) -> None:
        self.fakes, self.psa = fakes, psa

    async def mark(self) -> int:
        posts = await self.fakes.count("chat.postMessage")
        if self.psa is None:
            return posts
        # Each ticket: a card post, an incident and a card refresh; count the slowest.
        return min(posts, await self.psa.count("create"), await self.fakes.count("chat.update"))

    async def wait(self, mark: int, expected: int) -> bool:
        async def done() -> bool:
            return await self.mark() >= mark + expected

        return await wait_until(done, 60.0)


async def intake(
    name: str,
    tmp: Path,
    fakes: RemoteFakes,
    psa: RemotePsa | None,
    figures: Figures,
    *,
    scheduler: bool,
    requests: int,
) -> None:
    work = tmp / name
    work.mkdir()
    config: dict[str, Any] = {"sla": {"clients": {}}}
    if psa is not None:
        config["psa"] = {"system": "servicenow", "url": psa.url, "tiers": {CONTRACT: "gold"}}
    (work / "helpdesk.yaml").write_text(yaml.safe_dump(config))
    port = free_port()
    env = bot_env(
        f"sqlite+aiosqlite:///{work / 'helpdesk.db'}", port, fakes, work / "helpdesk.yaml"
    )
    if psa is not None:
        env.update(psa.env)
    args = ["-m", "bot", "serve", *([] if scheduler else ["--no-scheduler"])]
    server = Server(name, args, env, port, work / "server.log")
    await server.start()
    try:
        events = f"{server.url}/slack/events"
        opened = await fakes.count("views.open")
        async with client_session(1) as http:
            body, headers = payloads.slash("new x")
            async with http.post(events, data=body, headers=headers) as response:
                await response.read()

        async def modal() -> bool:
            return await fakes.count("views.open") > opened

        if not await wait_until(modal, 10):
            raise RuntimeError("the bot did not open the intake modal")
        view = (await fakes.slack())["last_view"]
        say(f"{name}: intake submissions")
        await measure(
            figures,
            ("psa", name),
            server,
            events,
            lambda i: payloads.view_submission(view, view_id=unique_view_id(name)),
            requests=requests,
            levels=LEVELS,
            settle=Progress(fakes, psa) if scheduler else None,  # type: ignore[arg-type]
        )
    finally:
        server.stop()
        await fakes.trim()


async def write_rate(
    tmp: Path, fakes: RemoteFakes, psa: RemotePsa, tickets: int
) -> dict[str, float]:
    """`tickets` tickets with an incident and a note queued; one worker sends them."""
    from handlers import psa as core
    from handlers.config import HelpdeskConfig
    from storage import db
    from storage import tickets as repo
    from storage.migrate import upgrade
    from storage.models import utcnow

    work = tmp / "writes"
    work.mkdir()
    raw = {"psa": {"system": "servicenow", "url": psa.url}}
    (work / "helpdesk.yaml").write_text(yaml.safe_dump(raw))
    url = f"sqlite+aiosqlite:///{work / 'helpdesk.db'}"
    engine = db.create_engine(url)
    await upgrade(engine)
    config = HelpdeskConfig.model_validate(raw)
    env = {**bot_env(url, free_port(), fakes, work / "helpdesk.yaml"), **psa.env}
    worker = _spawn_worker(env, work / "worker.log")

    try:
        await asyncio.sleep(2.0)  # the worker is up and polling
        before = (await psa.state())["writes"]
        now = utcnow()
        sessions = db.session_factory(engine)
        async with sessions() as session, session.begin():
            for n in range(1, tickets + 1):
                ticket = await repo.create(
                    session,
                    number=f"HD-{n}",
                    prefix="HD",
                    seq=n,
                    status="open",
                    summary=f"Bench ticket {n}",
                    reproducible="yes",
                    priority="P3",
                    tier="standard",
                    tier_source="default",
                    requester_id="UANA",
                    technician_id="UTECH",
                    source_platform="slack",
                    source_channel="C0HELP",
                    created_at=now,
                    respond_by=now + timedelta(hours=8),
                    resolve_by=now + timedelta(days=3),
                    psa_system="servicenow",
                )
                await core.on_ticket_opened(session, config, ticket=ticket, technician_email="")
                await core.on_escalated(
                    session,
                    ticket=ticket,
                    queue="networking",
                    by="Tom Tech",
                    facts={"repro_steps": "bench"},
                    labels={},
                )
        committed = time.monotonic()
        cpu_before = cpu_seconds(worker.pid)
        expected = before + 2 * tickets

        async def done() -> bool:
            return int((await psa.state())["writes"]) >= expected

        finished = await wait_until(done, 300.0)
        seconds = time.monotonic() - committed
        cpu = cpu_seconds(worker.pid) - cpu_before
        written = int((await psa.state())["writes"]) - before
    finally:
        worker.terminate()
        await asyncio.to_thread(worker.wait, 10)
        await engine.dispose()
    return {
        "writes": written,
        "seconds": seconds,
        "rate": written / seconds if seconds else 0.0,
        "cpu_ms": cpu * 1000 / written if written else float("nan"),
        "finished": float(finished),
    }


async def main_async(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="helpdesk-bench-psa-"))
    fakes, psa, figures = RemoteFakes(), RemotePsa(), Figures()
    try:
        await fakes.start()
        await psa.start()
        for scheduler in (False, True):
            for with_psa in (False, True):
                name = ("with-psa" if with_psa else "no-psa") + (
                    "+worker" if scheduler else ".web-only"
                )
                await intake(
                    name,
                    tmp,
                    fakes,
                    psa if with_psa else None,
                    figures,
                    scheduler=scheduler,
                    requests=args.requests,
                )
        say(f"one worker: {args.tickets} tickets, an incident and a note each")
        writes = await write_rate(tmp, fakes, psa, args.tickets)
    finally:
        stop_all()
        await psa.stop()
        await fakes.stop()
    say("\n== figures (SQLite; CPU in ms per request, over c=1 and c=8)")
    cpu: dict[str, float] = {}
    for (_, name, c), result in figures.loads.items():
        say(
            f"  {name:<22} c={c}  {result.rps:7.1f} req/s  p50 {result.pct(0.5):6.2f} ms  "
            f"p99 {result.pct(0.99):7.2f} ms  cpu {result.cpu_ms:5.2f} ms/req"
        )
    for name in {n for _, n, _ in figures.loads}:
        runs = [r for (_, n, _), r in figures.loads.items() if n == name]
        cpu[name] = sum(r.cpu or 0.0 for r in runs) * 1000 / sum(r.requests for r in runs)
    say(
        f"  one worker: {writes['writes']:.0f} PSA writes in {writes['seconds']:.2f} s = "
        f"{writes['rate']:.0f}/s, worker cpu {writes['cpu_ms']:.2f} ms/write"
        + ("" if writes["finished"] else " (TIMED OUT)")
    )
    say("\n== targets")
    for mode in (".web-only", "+worker"):
        base, ours = cpu.get(f"no-psa{mode}"), cpu.get(f"with-psa{mode}")
        if base and ours:
            added = ours / base - 1
            verdict = "PASS" if added <= 0.20 else "FAIL"
            label = "request path" if mode == ".web-only" else "with the worker (card + PSA sync)"
            say(
                f"  {verdict}  PSA adds <= 20 % intake CPU, {label}: {base:.2f} -> {ours:.2f} "
                f"ms/request ({added:+.0%})"
            )
    verdict = "PASS" if writes["rate"] >= 100 else "FAIL"
    say(f"  {verdict}  one worker >= 100 PSA writes/s: {writes['rate']:.0f}/s")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.psa", description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="per setup and level")
    parser.add_argument("--tickets", type=int, default=500, help="for the writes/s run")
    parser.add_argument("--serve-fake", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_fake:
        asyncio.run(serve_fake())
        return 0
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
