"""Intake measured as the whole job (issue #16 part 5), in alternating rounds against bare Bolt.

    python -m bench.intake [--db sqlite|postgresql|both] [--rounds 5] [--round-requests 300]

A `slack.submit` job is one signed intake `view_submission` AND its ticket card reaching the
fake Slack Web API (`chat.postMessage`): the summary carries a job token (`bench-...`) and the
fakes process pushes each token the moment its card arrives (bench/fakes.py `STREAM`). Each of
`c` clients starts its next job when its previous job is complete (closed loop over jobs, not
over acks), so a bot that acks fast and delivers late does not look faster than it is.
Latency = request sent -> card arrived; throughput = completed jobs / wall time; CPU = server
CPU over the round / jobs.

The box is shared and noisy, so the bot and its baselines run in alternating rounds (bot,
baselines, bot, baselines, ...) and each ratio is the median of the per-round ratios (min and
max beside it). See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench import payloads
from bench.fakes import STREAM, RemoteFakes
from bench.loadgen import client_session
from bench.procs import Server, base_env, free_port, stop_all
from bench.run import (
    FALLBACK_VIEW,
    PG_URL,
    Profiler,
    app_env,
    cancel_on_signals,
    intake_view,
    prepare_database,
    say,
)

CARD_TIMEOUT = 30.0  # a job whose card has not arrived by then counts as failed

# scenario -> (baseline, why)
BASELINES = {
    "slack.submit": (
        ("bolt.insert_post", "bare Bolt + insert + ack + the card posted with AsyncWebClient: "
         "the same user-visible job"),
        ("bolt.outbox", "bolt.insert_post made durable: the card queued with the submission "
         "before the ack, marked delivered after the post (the floor for never losing a card)"),
        ("bolt.insert", "bare Bolt + insert + ack, no card (the issue's yardstick)"),
    ),
    "slack.help": (("bolt.ack", "bare Bolt acking /ticket"),),
}  # fmt: skip
# The targets of issue #16 part 5: (scenario, baseline, minimum median ratio)
TARGETS = (("slack.submit", "bolt.insert", 0.70), ("slack.help", "bolt.ack", 0.90))
P99_TARGET_MS = 50.0


class CardWatch:
    """Arrival times of cards by job token, read from the fakes' stream."""

    def __init__(self, slack_url: str) -> None:
        self.url = slack_url + STREAM
        self.waiting: dict[str, asyncio.Future[float]] = {}
        self._task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        ready = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._read(ready))
        await asyncio.wait_for(ready, 10)

    async def _read(self, ready: asyncio.Future[None]) -> None:
        assert self._http is not None
        async with self._http.get(self.url) as response:
            ready.set_result(None)
            async for raw in response.content:
                token, _, at = raw.decode().strip().partition(" ")
                waiter = self.waiting.pop(token, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(float(at))

    def expect(self, token: str) -> asyncio.Future[float]:
        waiter: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting[token] = waiter
        return waiter

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._http is not None:
            await self._http.close()


@dataclass
class Round:
    jobs: int
    wall: float
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    cpu: float = 0.0

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.wall if self.wall > 0 else 0.0

    @property
    def cpu_ms(self) -> float:
        return self.cpu * 1000 / max(len(self.latencies), 1)


def pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1] * 1000


_tokens = itertools.count(1)
Job = Callable[[], tuple[bytes, dict[str, str], str | None]]  # body, headers, card token


def submit_job(view: dict[str, Any]) -> Job:
    def build() -> tuple[bytes, dict[str, str], str | None]:
        n = next(_tokens)
        token = f"bench-{n:x}"
        body, headers = payloads.view_submission(
            view, view_id=f"VJ{n:010d}", channel=f"CJ{n:08d}",
            summary=f"{payloads.SUMMARY} {token}",
        )  # fmt: skip
        return body, headers, token

    return build


def help_job() -> tuple[bytes, dict[str, str], str | None]:
    body, headers = payloads.slash("help")
    return body, headers, None


async def run_round(
    server: Server, cards: CardWatch, job: Job, *, jobs: int, concurrency: int,
    expects_card: bool,
) -> Round:  # fmt: skip
    """`jobs` jobs, `concurrency` at a time; a job ends at its card (or its answer)."""
    url = f"{server.url}/slack/events"
    result = Round(jobs=jobs, wall=0.0)
    started = 0
    cpu_before = server.cpu()

    async with client_session(concurrency) as http:

        async def worker() -> None:
            nonlocal started
            while started < jobs:
                started += 1
                body, headers, token = job()
                waiter = cards.expect(token) if expects_card and token else None
                begin = time.monotonic()
                try:
                    async with http.post(url, data=body, headers=headers) as response:
                        await response.read()
                        ok = response.status == 200
                    end = time.monotonic()
                    if ok and waiter is not None:
                        end = await asyncio.wait_for(waiter, CARD_TIMEOUT)
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                if token:
                    cards.waiting.pop(token, None)
                if ok:
                    result.latencies.append(max(end - begin, 0.0))
                else:
                    result.errors += 1

        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.wall = time.monotonic() - start
    result.cpu = server.cpu() - cpu_before
    return result


@dataclass
class Series:
    rounds: list[Round] = field(default_factory=list)

    def latencies(self) -> list[float]:
        return [x for r in self.rounds for x in r.latencies]

    def summary(self) -> str:
        lat = self.latencies()
        rps = statistics.median(r.rps for r in self.rounds)
        cpu = statistics.median(r.cpu_ms for r in self.rounds)
        errors = sum(r.errors for r in self.rounds)
        return (f"{rps:8.1f} {pct(lat, 0.5):7.2f} {pct(lat, 0.9):7.2f} {pct(lat, 0.99):8.2f} "
                f"{cpu:8.2f} {errors:>4}")  # fmt: skip


@dataclass
class Results:
    series: dict[tuple[str, str], Series] = field(default_factory=dict)  # (backend, scenario)

    def add(self, backend: str, scenario: str, result: Round) -> None:
        self.series.setdefault((backend, scenario), Series()).rounds.append(result)


def ratios(results: Results, backend: str, scenario: str, baseline: str) -> list[float]:
    ours = results.series.get((backend, scenario))
    base = results.series.get(("bare", baseline))
    if ours is None or base is None:
        return []
    return [a.rps / b.rps for a, b in zip(ours.rounds, base.rounds, strict=False) if b.rps > 0]


@dataclass
class Options:
    rounds: int
    round_requests: int
    concurrency: int
    log_level: str
    pg_url: str
    profile: Path | None


async def start_bot(db: str, fakes: RemoteFakes, opts: Options, tmp: Path) -> Server:
    work = tmp / db
    work.mkdir()
    config = work / "helpdesk.yaml"
    config.write_text(yaml.safe_dump({"slack": {"incident_channel": "C0INCIDENT"}}))
    port = free_port()
    env = app_env("", port, fakes, config, opts.log_level)
    bench_opts = argparse.Namespace(pg_url=opts.pg_url)
    env["DATABASE_URL"] = await prepare_database(db, work, bench_opts, env)  # type: ignore[arg-type]
    server = Server(f"bot-{db}", ["-m", "bot", "serve"], env, port, work / "server.log")
    await server.start()
    return server


async def start_baseline(mode: str, fakes: RemoteFakes, tmp: Path) -> Server:
    env = {**base_env(), "SLACK_BOT_TOKEN": payloads.BOT_TOKEN,
           "SLACK_SIGNING_SECRET": payloads.SIGNING_SECRET}  # fmt: skip
    port = free_port()
    args = ["-m", "bench.baselines.bolt_app", "--port", str(port), "--mode", mode,
            "--api-url", f"{fakes.slack_url}/api/"]  # fmt: skip
    if mode in ("insert", "insert-post", "outbox"):
        args += ["--db", str(tmp / f"{mode}.db")]
    server = Server(f"bolt.{mode}", args, env, port, tmp / f"bolt.{mode}.log")
    await server.start()
    return server


SCENARIOS: dict[str, tuple[str, bool]] = {
    # name -> (baseline mode or "" for the bot, ends at a card)
    "slack.submit": ("", True),
    "slack.help": ("", False),
    "bolt.insert_post": ("insert-post", True),
    "bolt.outbox": ("outbox", True),
    "bolt.insert": ("insert", False),
    "bolt.ack": ("ack", False),
}


async def measure(
    dbs: list[str], fakes: RemoteFakes, opts: Options, tmp: Path, results: Results
) -> None:
    cards = CardWatch(fakes.slack_url)
    await cards.start()
    try:
        bots = {db: await start_bot(db, fakes, opts, tmp) for db in dbs}
        view = await intake_view(next(iter(bots.values())), fakes)
        bare = {
            name: await start_baseline(mode, fakes, tmp)
            for name, (mode, _) in SCENARIOS.items()
            if mode
        }
        jobs_of = {"slack.help": lambda: help_job, "bolt.ack": lambda: help_job}

        def job_for(name: str) -> Job:
            return jobs_of[name]() if name in jobs_of else submit_job(view)

        plan: list[tuple[str, str, Server]] = []
        for db, bot in bots.items():
            plan += [(db, "slack.submit", bot), (db, "slack.help", bot)]
        plan += [("bare", name, server) for name, server in bare.items()]
        say("warm-up")
        for _, name, server in plan:
            await run_round(server, cards, job_for(name), jobs=100, concurrency=4,
                            expects_card=SCENARIOS[name][1])  # fmt: skip
        for number in range(1, opts.rounds + 1):
            # Alternate the order too, so neither side always runs right after the other.
            order = plan if number % 2 else plan[::-1]
            say(f"round {number}/{opts.rounds}")
            for backend, name, server in order:
                profiler = None
                if opts.profile is not None and number == 1 and backend != "bare":
                    profiler = Profiler(server.pid, opts.profile / f"{backend}-{name}.txt")
                result = await run_round(
                    server, cards, job_for(name), jobs=opts.round_requests,
                    concurrency=opts.concurrency, expects_card=SCENARIOS[name][1],
                )  # fmt: skip
                if profiler is not None:
                    profiler.stop()
                if opts.profile is not None and number == 1:
                    continue  # the profiled round is slowed down: not counted, for either side
                results.add(backend, name, result)
                say(f"  {backend:<10} {name:<17} {result.rps:8.1f} jobs/s  "
                    f"p50 {pct(result.latencies, 0.5):6.2f}  "
                    f"p99 {pct(result.latencies, 0.99):7.2f} ms  "
                    f"cpu {result.cpu_ms:5.2f} ms/job  errors {result.errors}")  # fmt: skip
            await fakes.trim()
    finally:
        await cards.stop()


def report(results: Results, dbs: list[str], concurrency: int) -> None:
    say(f"\n== figures (c={concurrency}; req/s and cpu/job: median over rounds; "
        "latencies over all rounds)")  # fmt: skip
    head = (f"{'backend':<10} {'scenario':<17} {'jobs/s':>8} {'p50':>7} {'p90':>7} {'p99':>8} "
            f"{'cpu/job':>8} {'err':>4}")  # fmt: skip
    say(head)
    say("-" * len(head))
    for (backend, scenario), series in results.series.items():
        say(f"{backend:<10} {scenario:<17} {series.summary()}")
    say("\n== ratios (median of per-round throughput ratios [min-max])")
    for db in dbs:
        for scenario, baselines in BASELINES.items():
            for baseline, why in baselines:
                found = ratios(results, db, scenario, baseline)
                if found:
                    say(f"  {db:<10} {scenario:<13} vs {baseline:<17} "
                        f"{statistics.median(found):5.2f}x [{min(found):.2f}-{max(found):.2f}]"
                        f"  ({why})")  # fmt: skip
    say("\n== the bare baselines against the issue's yardstick (what the frameworks alone reach)")
    for baseline in ("bolt.insert_post", "bolt.outbox"):
        found = ratios(results, "bare", baseline, "bolt.insert")
        series = results.series.get(("bare", baseline))
        if found and series is not None:
            p99 = pct(series.latencies(), 0.99)
            say(f"  {baseline:<17} vs bolt.insert  {statistics.median(found):5.2f}x "
                f"[{min(found):.2f}-{max(found):.2f}]  p99 {p99:.1f} ms")  # fmt: skip
    say("\n== targets (issue #16 part 5; judged on SQLite, PostgreSQL for information)")
    for db in dbs:
        for scenario, baseline, minimum in TARGETS:
            found = ratios(results, db, scenario, baseline)
            if not found:
                continue
            ratio = statistics.median(found)
            verdict = "PASS" if ratio >= minimum else "FAIL"
            say(f"  {verdict}  {db:<10} {scenario} >= {minimum:.2f}x {baseline:<12} "
                f"{ratio:.2f}x")  # fmt: skip
        series = results.series.get((db, "slack.submit"))
        if series is not None:
            p99 = pct(series.latencies(), 0.99)
            verdict = "PASS" if p99 <= P99_TARGET_MS else "FAIL"
            say(f"  {verdict}  {db:<10} slack.submit p99 <= {P99_TARGET_MS:.0f} ms "
                f"(request -> card)   {p99:.1f} ms")  # fmt: skip


async def main_async(args: argparse.Namespace) -> int:
    dbs = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    tmp = Path(tempfile.mkdtemp(prefix="helpdesk-intake-"))
    profile = None
    if args.profile:
        profile = tmp / "profiles"
        profile.mkdir()
    opts = Options(
        rounds=args.rounds, round_requests=args.round_requests, concurrency=args.concurrency,
        log_level=args.log_level, pg_url=args.pg_url, profile=profile,
    )  # fmt: skip
    say(f"intake benchmark: {', '.join(dbs)}; {opts.rounds} rounds of {opts.round_requests} "
        f"jobs at c={opts.concurrency}; work dir {tmp}")  # fmt: skip
    fakes = RemoteFakes()
    results = Results()
    cancel_on_signals()
    failed = False
    try:
        await fakes.start()
        fakes.view = FALLBACK_VIEW
        await measure(dbs, fakes, opts, tmp, results)
    except (Exception, asyncio.CancelledError) as exc:
        failed = True
        say(f"\nbenchmark stopped: {type(exc).__name__}: {exc}")
    finally:
        stop_all()
        await fakes.stop()
        report(results, dbs, opts.concurrency)
        if failed or args.keep or args.profile:
            say(f"work dir kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.intake",
                                     description=__doc__.split("\n")[0])  # fmt: skip
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="sqlite")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--round-requests", type=int, default=300, help="jobs per round")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="3 rounds of 150 jobs")
    parser.add_argument("--log-level", default="INFO", help="the bot's LOG_LEVEL (default INFO)")
    parser.add_argument("--pg-url", default=PG_URL.rsplit("/", 1)[0] + "/helpdesk_bench",
                        help="PostgreSQL URL; schema `public` is DROPPED")  # fmt: skip
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the bot in round 1 (that round is not counted)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.round_requests = 3, 150
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
