"""Intake as the whole job, in one process: server CPU per job, low noise, and a profile.

    python -m bench.intake_inproc [--jobs 300] [--rounds 3] [--concurrency 8] [--profile]

`bench.intake` runs each server in its own process and is the benchmark of record; on a shared
2-core box its figures move with everything else running. This builds, in one process, the real
aiohttp app (`bot.app.create_app` as `python -m bot serve` does: SQLite in a temporary file, the
scheduler and outbox worker running, LOG_LEVEL INFO) and the bare baselines of `bench.intake`
(`bolt.insert`, `bolt.insert_post`, `bolt.outbox` from bench/baselines/bolt_app.py), each on a
loopback port of the main thread's event loop. A client thread with its own event loop runs the
fake Slack Web API (tests/fakes FakeSlack) and `c` closed-loop clients: a job is a signed
`view_submission` of the bot's intake modal with a token in its summary and a channel of its
own, complete when the `chat.postMessage` holding that token reached the fake (for
`bolt.insert`, which posts nothing, when it was acked).

CPU per job is the *server side's* CPU: the process's CPU time minus the client thread's (which
runs the clients and the fake), over a round, divided by its jobs; so aiosqlite's helper thread
counts for the baselines as the inline SQLite does for the bot. Servers take turns within each
round. `--profile` runs one more round of the bot under cProfile (the main thread: everything
of the bot's but the baselines' aiosqlite threads) and prints the top functions.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import cProfile
import itertools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from bench import payloads
from bench.fakes import JOB_TOKEN
from bench.help_inproc import serve, top
from tests.fakes.base import Recorded
from tests.fakes.slack_api import FakeSlack


class CardFake(FakeSlack):
    """FakeSlack that resolves a waiter when a card carrying a job token arrives."""

    THREADED = False

    def __init__(self) -> None:
        super().__init__()
        self.waiting: dict[str, asyncio.Future[None]] = {}
        self.last_view: dict[str, Any] | None = None

    async def handle(self, rec: Recorded, request: web.Request) -> web.StreamResponse:
        response = await super().handle(rec, request)
        method = rec.path.removeprefix("/api/")
        if method == "chat.postMessage":
            found = JOB_TOKEN.search(rec.body_text)
            if found and (waiter := self.waiting.pop(found.group(), None)) and not waiter.done():
                waiter.set_result(None)
        elif method == "views.open":
            params = rec.json if isinstance(rec.json, dict) else (rec.form or {})
            view = params.get("view")
            self.last_view = json.loads(view) if isinstance(view, str) else view
        self.reset()  # keep no bodies: a long run would hold them all
        return response


_tokens = itertools.count(1)


def submission(view: dict[str, Any]) -> tuple[bytes, dict[str, str], str]:
    n = next(_tokens)
    token = f"bench-{n:x}"
    body, headers = payloads.view_submission(
        copy.deepcopy(view), view_id=f"VJ{n:010d}", channel=f"CJ{n:08d}",
        summary=f"{payloads.SUMMARY} {token}",
    )  # fmt: skip
    return body, headers, token


class Client:
    """The client thread: its own loop, the fake Slack and the load."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="client")
        self.thread.start()
        self.fake = CardFake()
        self.http: aiohttp.ClientSession | None = None
        self.run(self._start())

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    async def _start(self) -> None:
        await self.fake.start()
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))

    async def _stop(self) -> None:
        assert self.http is not None
        await self.http.close()
        await self.fake.stop()

    def stop(self) -> None:
        self.run(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    async def _round(
        self, url: str, view: dict[str, Any], jobs: int, concurrency: int, card: bool
    ) -> tuple[float, float, list[float]]:
        """(client thread CPU s, wall s, latencies ms) of `jobs` closed-loop jobs."""
        assert self.http is not None
        http = self.http
        left = [jobs]
        latencies: list[float] = []
        prepared = [submission(view) for _ in range(jobs)]

        async def worker() -> None:
            while left[0] > 0:
                left[0] -= 1
                body, headers, token = prepared.pop()
                waiter = self.loop.create_future() if card else None
                if waiter is not None:
                    self.fake.waiting[token] = waiter
                started = time.perf_counter()
                async with http.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{url}: {response.status}")
                if waiter is not None:
                    await asyncio.wait_for(waiter, 30)
                latencies.append((time.perf_counter() - started) * 1000)

        cpu, wall = time.thread_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.thread_time() - cpu, time.perf_counter() - wall, latencies

    def round(
        self, url: str, view: dict[str, Any], jobs: int, concurrency: int, card: bool
    ) -> tuple[float, float, list[float]]:
        return self.run(self._round(url, view, jobs, concurrency, card))  # type: ignore[no-any-return]

    async def _view(self, url: str) -> dict[str, Any]:
        assert self.http is not None
        body, headers = payloads.slash("new x")
        async with self.http.post(url, data=body, headers=headers) as response:
            await response.read()
        for _ in range(200):
            if self.fake.last_view is not None:
                return self.fake.last_view
            await asyncio.sleep(0.05)
        raise RuntimeError("the bot did not open the intake modal")

    def view(self, url: str) -> dict[str, Any]:
        return self.run(self._view(url))  # type: ignore[no-any-return]


def bot_settings(tmp: Path, api_url: str, log_level: str) -> Any:
    """The bot's settings for an in-process bench (SQLite in `tmp`, Slack's Web API at
    `api_url`), its logging set up as `serve` sets it."""
    from bot.logs import setup_logging
    from bot.settings import load_settings

    config = tmp / "helpdesk.yaml"
    config.write_text(yaml.safe_dump({"slack": {"incident_channel": "C0INCIDENT"}}))
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'bot.db'}",
        "SLACK_BOT_TOKEN": payloads.BOT_TOKEN,
        "SLACK_SIGNING_SECRET": payloads.SIGNING_SECRET,
        "SLACK_API_URL": api_url,
        "HELPDESK_CONFIG": str(config),
        "LOG_LEVEL": log_level,
    }
    settings = load_settings(env)
    setup_logging(fmt=settings.log_format, level=settings.log_level)
    return settings


NAMES = {"bot": True, "bolt.insert": False, "bolt.insert_post": True, "bolt.outbox": True}


async def main_async(args: argparse.Namespace) -> int:
    from bench.baselines.bolt_app import build as build_bolt
    from bot.app import create_app

    tmp = Path(tempfile.mkdtemp(prefix="helpdesk-intake-inproc-"))
    client = Client()
    api_url = f"{client.fake.url}/api/"
    os.environ["SLACK_BOT_TOKEN"] = payloads.BOT_TOKEN  # bolt_app.build reads these
    os.environ["SLACK_SIGNING_SECRET"] = payloads.SIGNING_SECRET
    settings = bot_settings(tmp, api_url, args.log_level)
    servers = {"bot": await serve(create_app(settings))}
    modes = {"bolt.insert": "insert", "bolt.insert_post": "insert-post", "bolt.outbox": "outbox"}
    for name, mode in modes.items():
        servers[name] = await serve(build_bolt(mode, api_url, str(tmp / f"{mode}.db")))
    loop = asyncio.get_running_loop()
    urls = {name: f"http://127.0.0.1:{port}/slack/events" for name, (_, port) in servers.items()}

    async def one(name: str, jobs: int) -> tuple[float, float, list[float]]:
        cpu = time.process_time()
        client_cpu, wall, latencies = await loop.run_in_executor(
            None, client.round, urls[name], view, jobs, args.concurrency, NAMES[name]
        )
        server_cpu = time.process_time() - cpu - client_cpu
        return server_cpu / jobs * 1000, jobs / wall, latencies

    try:
        view = await loop.run_in_executor(None, client.view, urls["bot"])
        if args.dump_view:
            await asyncio.to_thread(Path(args.dump_view).write_text, json.dumps(view))
        for name in NAMES:  # warm-up
            await one(name, 100)
        cpu: dict[str, list[float]] = {name: [] for name in NAMES}
        rate: dict[str, list[float]] = {name: [] for name in NAMES}
        lat: dict[str, list[float]] = {name: [] for name in NAMES}
        for number in range(1, args.rounds + 1):
            order = list(NAMES) if number % 2 else list(NAMES)[::-1]
            if args.bot_only:
                order = ["bot"]
            line = []
            for name in order:
                per_job, rps, latencies = await one(name, args.jobs)
                cpu[name].append(per_job)
                rate[name].append(rps)
                lat[name] += latencies
                line.append(f"{name} {per_job:5.2f} ms ({rps:5.0f}/s)")
            print(f"round {number}: " + ", ".join(line), flush=True)
        print()
        for name in NAMES:
            if not lat[name]:
                continue
            ordered = sorted(lat[name])
            p50, p99 = ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.99)]
            print(f"{name:17} CPU/job median {statistics.median(cpu[name]):5.2f} ms "
                  f"[{min(cpu[name]):.2f}-{max(cpu[name]):.2f}], "
                  f"{statistics.median(rate[name]):6.1f} jobs/s, "
                  f"p50 {p50:6.1f} p99 {p99:6.1f} ms")  # fmt: skip
        for base in ("bolt.insert", "bolt.insert_post", "bolt.outbox"):
            if not cpu[base]:
                continue
            ratios = [b / h for b, h in zip(cpu[base], cpu["bot"], strict=True)]
            print(f"bot CPU bound vs {base:17} {statistics.median(ratios):.2f}x "
                  f"[{min(ratios):.2f}-{max(ratios):.2f}]")  # fmt: skip
        if args.profile:
            profile = cProfile.Profile(time.thread_time)
            profile.enable()
            await one("bot", args.jobs)
            profile.disable()
            print(f"\n===== cProfile bot ({args.jobs} jobs, main thread), by inclusive time")
            print(top(profile, "cumulative", args.top))
            print("===== by self time")
            print(top(profile, "tottime", args.top))
            if args.profile_out:
                profile.dump_stats(args.profile_out)
    finally:
        for runner, _ in servers.values():
            await runner.cleanup()
        client.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=300, help="jobs per server per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--profile-out", help="also write the cProfile stats to this file")
    parser.add_argument("--top", type=int, default=50)
    parser.add_argument("--bot-only", action="store_true", help="rounds of the bot alone")
    parser.add_argument("--dump-view", help="write the bot's intake modal (JSON) to this file")
    return asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
