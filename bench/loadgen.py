"""Closed-loop load: `concurrency` workers on one keep-alive aiohttp session, N requests."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

Build = Callable[[int], tuple[bytes, dict[str, str]]]


@dataclass
class LoadResult:
    requests: int
    concurrency: int
    wall: float
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    cpu: float | None = None  # server CPU seconds over the run (and its settling)

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.wall if self.wall > 0 else 0.0

    def pct(self, q: float) -> float:
        """Nearest-rank percentile in milliseconds."""
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        rank = max(1, math.ceil(q * len(ordered)))
        return ordered[rank - 1] * 1000

    @property
    def cpu_ms(self) -> float:
        if self.cpu is None or not self.requests:
            return math.nan
        return self.cpu * 1000 / self.requests


def client_session(concurrency: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=max(concurrency, 1), keepalive_timeout=60)
    return aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=15), auto_decompress=False
    )


async def run_load(
    http: aiohttp.ClientSession,
    url: str,
    build: Build,
    *,
    requests: int,
    concurrency: int,
    ok: tuple[int, ...] = (200, 201),
    max_seconds: float = 120.0,
) -> LoadResult:
    """Send `requests` POSTs with at most `concurrency` in flight; bodies come from `build(i)`.

    No new request starts after `max_seconds`; `result.requests` is what was actually sent.
    """
    result = LoadResult(requests=0, concurrency=concurrency, wall=0.0)
    next_index = 0
    stop_at = time.perf_counter() + max_seconds

    async def worker() -> None:
        nonlocal next_index
        while next_index < requests and time.perf_counter() < stop_at:
            index = next_index
            next_index += 1
            body, headers = build(index)
            start = time.perf_counter()
            try:
                async with http.post(url, data=body, headers=headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            elapsed = time.perf_counter() - start
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if status in ok:
                result.latencies.append(elapsed)
            else:
                result.errors += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.wall = time.perf_counter() - start
    result.requests = next_index
    return result
