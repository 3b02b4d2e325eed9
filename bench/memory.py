"""Does the bot's memory grow with the tickets it handles? (SPEC: steady load)

    python -m bench.memory [--db sqlite|postgresql] [--warmup 500] [--steps 1000,5000]
                           [--distinct 0] [--concurrency 8] [--no-trace] [--frames 12]
                           [--top 25] [--inspect TYPE,...]

Runs the real aiohttp app (`bot.app.create_app`, scheduler and outbox worker in the process, as
`python -m bot serve` does) in this process, against the loopback fakes in their own process
(`python -m bench.fakes`, trimmed as it goes, so their records are not counted here). Each
ticket is a signed Slack intake `view_submission` (its own view id; its channel and technician
its own too, or one of `--distinct` N) and, one in five, a Teams Action.Submit of the intake
card (its own activity id; its person and conversation as for Slack); a step is over when every
Slack card reached FakeSlack (`chat.postMessage`). After the warm-up and after each step:
`gc.collect()`, then resident memory (VmRSS), the objects the GC tracks by type, the sizes of the
app's own keyed structures and, unless `--no-trace`, a tracemalloc snapshot (tracing starts
after the warm-up); each step prints the growth since the warm-up grouped by traceback, so
anything kept per ticket, request or conversation shows up with the line that allocated it.
tracemalloc costs time and memory: take the RSS figures from a `--no-trace` run. See
bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import linecache
import os
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from bench import payloads
from bench.fakes import RemoteFakes
from tests.harness import view_submission as harness_view_submission

PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/helpdesk_memory"  # DROPPED, made anew


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Driver:
    def __init__(
        self, bot_url: str, fakes: RemoteFakes, view: dict[str, Any], distinct: int
    ) -> None:
        self.url = bot_url
        self.distinct = distinct
        self.fakes = fakes
        self.view = view
        self.n = 0
        self.posted = 0  # chat.postMessage seen by FakeSlack

    def place(self, n: int) -> int:
        """Which channel, technician and Teams conversation ticket `n` uses."""
        return n % self.distinct if self.distinct else n

    def slack_submit(self, n: int) -> tuple[bytes, dict[str, str]]:
        p = self.place(n)
        rendered = {**self.view, "private_metadata": json.dumps({"channel": f"CM{p:08d}"})}
        states = payloads.intake_states("P3", f"{payloads.SUMMARY} mem-{n}")
        body = harness_view_submission(rendered, states, user=f"UM{p:07d}", view_id=f"VM{n:09d}")
        return payloads.signed(_form(body))

    def teams_submit(self, n: int) -> tuple[bytes, dict[str, str]]:
        p = self.place(n)
        conversation = f"a:1mem-chat-{p}"
        body = payloads.activity(
            self.fakes.service_url,
            value={
                "action": "ticket.create", "channel": conversation,
                "requester": f"person{p}@example.com", "summary": f"Teams mem-{n}",
                "error_text": "", "doing": "", "reproducible": "always",
                "users_affected": "1", "priority": "P3", "category": "printer",
                "asset": "", "client": "Acme",
            },
            conversation={"id": conversation, "conversationType": "personal",
                          "tenantId": payloads.TEAMS_TENANT},
            **{"from": {"id": f"29:1mem-{p}", "name": f"Tech {p}",
                        "aadObjectId": f"00000000-0000-4000-8000-{p:012d}"}},
        )  # fmt: skip
        return json.dumps(body).encode(), {"Content-Type": "application/json"}

    async def run(self, count: int, concurrency: int) -> None:
        """`count` Slack tickets (+ a Teams one per five), until every Slack card arrived."""
        first, self.n = self.n, self.n + count
        queue = list(range(first, self.n))
        queue.reverse()
        failures: list[str] = []

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:

            async def worker() -> None:
                while queue:
                    n = queue.pop()
                    body, headers = self.slack_submit(n)
                    async with http.post(
                        f"{self.url}/slack/events", data=body, headers=headers
                    ) as answer:
                        text = await answer.text()
                        if answer.status != 200 or text.strip() not in ("", "{}"):
                            failures.append(f"slack {answer.status}: {text[:200]}")
                    if n % 5 == 0:
                        body, headers = self.teams_submit(n)
                        async with http.post(
                            f"{self.url}/api/messages", data=body, headers=headers
                        ) as answer:
                            await answer.read()
                            if answer.status not in (200, 201, 202):
                                failures.append(f"teams {answer.status}")

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        expected = count - sum(f.startswith("slack") for f in failures)
        if failures:
            print(f"  {len(failures)} requests not taken, e.g. {failures[0][:160]}", flush=True)
        deadline = time.monotonic() + 120
        while True:
            posted = await self.fakes.count("chat.postMessage")  # kept over trims
            if posted >= self.posted + expected:
                break
            if time.monotonic() > deadline:
                print(f"  only {posted - self.posted} of {expected} cards arrived", flush=True)
                break
            await asyncio.sleep(0.1)
        self.posted = posted
        await self.fakes.trim()


def _form(payload: dict[str, Any]) -> str:
    from urllib.parse import urlencode

    return urlencode({"payload": json.dumps(payload)})


def type_counts() -> dict[str, int]:
    counts: dict[str, int] = {}
    for obj in gc.get_objects():
        name = f"{type(obj).__module__}.{type(obj).__qualname__}"
        counts[name] = counts.get(name, 0) + 1
    return counts


def show_types(base: dict[str, int], now: dict[str, int], tickets: int, top: int) -> None:
    grown = sorted(((now.get(k, 0) - base.get(k, 0), k) for k in now), reverse=True)[:top]
    print("  objects tracked by gc, by type (growth since the warm-up):")
    for delta, name in grown:
        if delta > 0:
            print(f"    +{delta:7d} ({delta / tickets:.2f}/ticket) {name}")


def inspect_new(base_ids: set[int], names: str) -> None:
    """Objects of the `names` types made since the warm-up, and the containers holding many
    of them (with what holds those), to find the structure that keeps them."""
    wanted = set(names.split(","))
    found: dict[str, list[Any]] = {}
    for obj in gc.get_objects():
        if id(obj) not in base_ids and type(obj).__qualname__ in wanted:
            found.setdefault(type(obj).__qualname__, []).append(obj)
    mine = {id(found), *(id(v) for v in found.values())}
    for name, objs in found.items():
        print(f"  {len(objs)} new {name}, e.g. " + "; ".join(repr(o)[:120] for o in objs[:3]))
        holders: dict[int, list[Any]] = {}
        for obj in objs:
            for ref in gc.get_referrers(obj):
                if id(ref) not in mine and not isinstance(ref, type(sys._getframe())):
                    holders.setdefault(id(ref), [ref, 0])[1] += 1
        for ref, count in sorted(holders.values(), key=lambda rc: -rc[1])[:3]:
            print(f"    {count} held by {_describe(ref)}")
            for up in gc.get_referrers(ref)[:4]:
                if id(up) not in mine and not isinstance(up, type(sys._getframe())):
                    print(f"      which is held by {_describe(up)}")


def _describe(obj: Any) -> str:
    desc = f"{type(obj).__module__}.{type(obj).__qualname__}"
    if isinstance(obj, (list, dict, set, tuple)):
        desc += f" (len {len(obj)})"
    if isinstance(obj, dict):
        desc += f" keys={sorted(map(str, obj))[:6]}"
    elif not isinstance(obj, (list, tuple, set)):
        desc += f" {repr(obj)[:120]}"
    return desc[:300]


def census(app: web.Application) -> str:
    """Sizes of the app's own per-key structures (bounded ones included: see where they stop)."""
    from bot.app import SERVICES

    services = app[SERVICES]
    sizes = {"sql cache": len(services.engine.sync_engine._compiled_cache or {})}
    places = services.places
    sizes["places"] = len(places._until) + len(places._arrival) + len(places._slots)
    sizes["place locks"] = len(places._locks)
    if services.worker is not None:
        w = services.worker
        sizes["worker"] = len(w._held) + len(w._until) + len(w._unrecorded) + len(w._unsent)
        sizes["worker tasks"] = len(w._tasks)
    if services.teams is not None:
        refs = services.teams.references
        sizes["teams refs"] = len(refs._written) + len(refs._seen) + len(refs._chats)
        sizes["teams people"] = len(refs.seen._aad_of) + len(refs.seen._user_of)
    return ", ".join(f"{k} {v}" for k, v in sizes.items())


async def measure(label: str, trace: bool) -> tuple[dict[str, int], tracemalloc.Snapshot | None]:
    """Collect, print the figures; the object counts by type (taken before the snapshot,
    whose own records are tuples) and the snapshot."""
    await asyncio.sleep(1.0)  # let the worker's last round and its logging finish
    for _ in range(3):
        gc.collect()
    current = tracemalloc.get_traced_memory()[0] if trace else 0
    tasks = len(asyncio.all_tasks())
    print(
        f"{label:>24}: RSS {rss_kib() / 1024:7.1f} MiB, traced {current / 1024 / 1024:7.1f} MiB, "
        f"gc objects {len(gc.get_objects()):8d}, Python blocks {sys.getallocatedblocks():8d}, "
        f"tasks {tasks}",
        flush=True,
    )
    types = type_counts()
    return types, tracemalloc.take_snapshot() if trace else None


def show_growth(
    base: tracemalloc.Snapshot, now: tracemalloc.Snapshot, tickets: int, top: int
) -> None:
    filters = [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
        tracemalloc.Filter(False, linecache.__file__),  # this script's own tracebacks
    ]
    diff = now.filter_traces(filters).compare_to(base.filter_traces(filters), "traceback")
    diff = [d for d in diff if d.size_diff > 0]
    diff.sort(key=lambda d: d.size_diff, reverse=True)
    for stat in diff[:top]:
        print(
            f"  +{stat.size_diff / 1024:8.1f} KiB  +{stat.count_diff:6d} blocks "
            f"({stat.count_diff / tickets:.2f}/ticket)"
        )
        for line in stat.traceback.format(limit=None, most_recent_first=True)[:24]:
            print("     " + line.strip())
    # Anything else that grew by at least one block per ten tickets (and 50), one line each, by the
    # innermost frame in this repository.
    rest = [d for d in diff[top:] if d.count_diff >= max(tickets / 10, 50)]
    if rest:
        print(f"  {len(rest)} more that grew by >= 0.1 blocks/ticket (and 50 blocks):")
    for stat in rest:
        frames = [f for f in reversed(stat.traceback) if "/lib/python3" not in f.filename]
        at = frames[0] if frames else stat.traceback[0]
        per = stat.count_diff / tickets
        print(f"    +{stat.size_diff / 1024:7.1f} KiB +{stat.count_diff:6d} blocks "
              f"({per:.2f}/ticket) {at.filename}:{at.lineno}")  # fmt: skip


async def main_async(args: argparse.Namespace) -> int:
    from bot.app import create_app
    from bot.logs import setup_logging
    from bot.settings import load_settings

    tmp = Path(tempfile.mkdtemp(prefix="helpdesk-memory-"))
    fakes = RemoteFakes()
    await fakes.start()
    runner: web.AppRunner | None = None
    try:
        config = tmp / "helpdesk.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "teams": {"service_url": fakes.service_url},
                    "slack": {"incident_channel": "C0INCIDENT"},
                    "sla": {"clients": {"acme": "gold"}},
                }
            )
        )
        url = f"sqlite+aiosqlite:///{tmp / 'bot.db'}" if args.db == "sqlite" else args.pg_url
        if args.db == "postgresql":
            from sqlalchemy import make_url, text
            from sqlalchemy.ext.asyncio import create_async_engine

            # A scratch database of its own, made anew on the server of --pg-url.
            name = make_url(url).database
            admin_url = make_url(url).set(database="postgres")
            admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
            try:
                async with admin.connect() as conn:
                    await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                    await conn.execute(text(f'CREATE DATABASE "{name}"'))
            finally:
                await admin.dispose()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "migrate", env={**os.environ, "DATABASE_URL": url}
        )
        if await proc.wait() != 0:
            raise RuntimeError("bot migrate failed")
        env = {
            "DATABASE_URL": url,
            "SLACK_BOT_TOKEN": payloads.BOT_TOKEN,
            "SLACK_SIGNING_SECRET": payloads.SIGNING_SECRET,
            "SLACK_API_URL": f"{fakes.slack_url}/api/",
            "HELPDESK_CONFIG": str(config),
            "LOG_LEVEL": args.log_level,
        }
        settings = load_settings(env)
        setup_logging(fmt=settings.log_format, level=settings.log_level)
        app = create_app(settings)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        assert site._server is not None and site._server.sockets
        port = site._server.sockets[0].getsockname()[1]
        bot_url = f"http://127.0.0.1:{port}"

        # The intake modal as the bot renders it.
        async with aiohttp.ClientSession() as http:
            body, headers = payloads.slash("new x")
            async with http.post(f"{bot_url}/slack/events", data=body, headers=headers) as r:
                await r.read()
        for _ in range(100):
            state = await fakes.slack()
            if state["last_view"]:
                break
            await asyncio.sleep(0.1)
        view = state["last_view"]
        await fakes.trim()
        driver = Driver(bot_url, fakes, view, args.distinct)

        started = time.monotonic()
        await driver.run(args.warmup, args.concurrency)
        if args.trace:
            tracemalloc.start(args.frames)  # what the warm-up allocated is not traced
        base_types, base = await measure(f"after warm-up ({driver.n})", args.trace)
        print(f"{'':>24}  {census(app)}", flush=True)
        base_ids = {id(o) for o in gc.get_objects()} if args.inspect else set()
        base_rss = rss_kib()
        for step in args.steps:
            await driver.run(step, args.concurrency)
            types, snap = await measure(f"+{driver.n - args.warmup} ({driver.n})", args.trace)
            print(f"{'':>24}  {census(app)}", flush=True)
            grown = (rss_kib() - base_rss) / 1024
            print(f"{'':>24}  RSS +{grown:.1f} MiB since the warm-up, "
                  f"{(time.monotonic() - started):.0f} s in all", flush=True)  # fmt: skip
            show_types(base_types, types, driver.n - args.warmup, args.top)
            if base is not None and snap is not None:
                show_growth(base, snap, driver.n - args.warmup, args.top)
            snap = None  # its records are traced memory too: not kept into the next step
            if args.inspect:
                inspect_new(base_ids, args.inspect)
    finally:
        if runner is not None:
            await runner.cleanup()
        await fakes.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--steps", default="1000,5000")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--distinct",
        type=int,
        default=0,
        help="channels, technicians and "
        "Teams conversations to cycle through (0: each ticket its own)",
    )
    parser.add_argument("--no-trace", dest="trace", action="store_false")
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument(
        "--inspect",
        default="",
        help="comma-separated type names: show "
        "objects of these types made since the warm-up and what holds them",
    )
    args = parser.parse_args(argv)
    args.steps = [int(s) for s in args.steps.split(",")]
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
