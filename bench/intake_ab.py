"""A/B of one change in one process: the real app's intake, the change applied and undone by
round, CPU per job compared pair by pair.

    python -m bench.intake_ab bench/ab/gc_tuning.py [--jobs 300] [--pairs 8]

The patch file defines `apply()` (B: the change) and `undo()` (A: without it). The app, the
fake Slack Web API and the closed-loop clients are those of `bench.intake_inproc` (c=8; a job
ends when its card reached the fake); rounds alternate A-B, B-A, ... so that a box whose speed
drifts (a shared 2-core box does, by a fifth within minutes) weighs on both alike. Printed: the
median CPU per job of each side, p50/p99 over its jobs, and the median (min-max) of the
per-pair ratios B/A, the figure to read.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from bench import intake_inproc
from bench.help_inproc import serve


def load_patch(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_ab_patch", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def main_async(args: argparse.Namespace) -> int:
    from bot.app import create_app

    patch = load_patch(args.patch)
    tmp = Path(tempfile.mkdtemp(prefix="helpdesk-intake-ab-"))
    client = intake_inproc.Client()
    settings = intake_inproc.bot_settings(tmp, f"{client.fake.url}/api/", args.log_level)
    # The log lines are formatted as in production, and not written to the terminal.
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(args.devnull)
    runner, port = await serve(create_app(settings))
    url = f"http://127.0.0.1:{port}/slack/events"
    loop = asyncio.get_running_loop()
    view: dict[str, Any] = await loop.run_in_executor(None, client.view, url)

    async def one(jobs: int) -> tuple[float, list[float]]:
        cpu = time.process_time()
        client_cpu, _, latencies = await loop.run_in_executor(
            None, client.round, url, view, jobs, args.concurrency, True
        )
        return (time.process_time() - cpu - client_cpu) / jobs * 1000, latencies

    try:
        await one(200)  # warm-up, and once with the change
        patch.apply()
        await one(100)
        patch.undo()
        cpu: dict[str, list[float]] = {"A": [], "B": []}
        lat: dict[str, list[float]] = {"A": [], "B": []}
        for pair in range(args.pairs):
            for side in ("A", "B") if pair % 2 == 0 else ("B", "A"):
                (patch.apply if side == "B" else patch.undo)()
                per_job, latencies = await one(args.jobs)
                cpu[side].append(per_job)
                lat[side] += latencies
            patch.undo()
            print(f"pair {pair + 1}: A {cpu['A'][-1]:.2f} ms, B {cpu['B'][-1]:.2f} ms", flush=True)
        for side in ("A", "B"):
            ordered = sorted(lat[side])
            p50, p99 = ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.99)]
            spread = f"[{min(cpu[side]):.2f}-{max(cpu[side]):.2f}]"
            print(f"{side}: CPU/job median {statistics.median(cpu[side]):.2f} ms {spread}, "
                  f"p50 {p50:.1f} p99 {p99:.1f} ms")  # fmt: skip
        ratios = [b / a for a, b in zip(cpu["A"], cpu["B"], strict=True)]
        print(f"B/A CPU per job, per pair: median {statistics.median(ratios):.3f} "
              f"[{min(ratios):.3f}-{max(ratios):.3f}]")  # fmt: skip
    finally:
        patch.undo()
        await runner.cleanup()
        client.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("patch", help="a file defining apply() and undo()")
    parser.add_argument("--jobs", type=int, default=300, help="jobs per side per pair")
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    with open(os.devnull, "w") as args.devnull:
        return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
