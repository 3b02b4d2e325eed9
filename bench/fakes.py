"""The loopback fakes in their own process, so their work does not delay the load generator.

`python -m bench.fakes` starts FakeSlack, FakePagerDuty and FakeConnector (from tests/fakes),
prints one JSON line with their URLs and serves until its stdin closes. Each fake also answers
`GET /__bench/state` (counters and arrival times, `time.monotonic()`: the same clock in every
process) and `POST /__bench/trim` (forget recorded bodies, keep counters).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from typing import Any

import aiohttp
from aiohttp import web

from bench.payloads import PD_ROUTING_KEY
from tests.fakes.base import Recorded
from tests.fakes.botframework import FakeConnector
from tests.fakes.pagers import FakePagerDuty
from tests.fakes.slack_api import FakeSlack

STATE = "/__bench/state"
TRIM = "/__bench/trim"
# One line per chat.postMessage whose body names a job token (`bench-...`, put into the
# intake summary by bench.intake): `<token> <arrival monotonic>`, pushed as it arrives.
STREAM = "/__bench/stream"
JOB_TOKEN = re.compile(r"bench-[0-9a-z]+")


def _control(fake: Any, rec: Recorded) -> web.Response | None:
    if rec.path == STATE:
        return web.json_response(fake.bench_state())
    if rec.path == TRIM:
        fake.reset()
        return web.json_response({"ok": True})
    return None


class CountingSlack(FakeSlack):
    """FakeSlack that also keeps per-method counts and first-arrival times per channel."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}
        self.first_post: dict[str, float] = {}
        self.last_view: dict[str, Any] | None = None
        self.last_post: dict[str, Any] | None = None
        self.listeners: set[asyncio.Queue[str]] = set()

    def bench_state(self) -> dict[str, Any]:
        return {"counts": self.counts, "first_post": self.first_post, "last_view": self.last_view,
                "last_post": self.last_post}  # fmt: skip

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """Job tokens as their cards arrive, until the client goes away."""
        response = web.StreamResponse()
        response.content_type = "text/plain"
        await response.prepare(request)
        queue: asyncio.Queue[str] = asyncio.Queue()
        self.listeners.add(queue)
        try:
            while True:
                lines = [await queue.get()]
                while not queue.empty():
                    lines.append(queue.get_nowait())
                await response.write("".join(lines).encode())
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.listeners.discard(queue)
        return response

    async def handle(self, rec: Recorded, request: web.Request) -> web.StreamResponse:
        control = _control(self, rec)
        if control is not None:
            return control
        if rec.path == STREAM:
            return await self.stream(request)
        response = await super().handle(rec, request)
        method = rec.path.removeprefix("/api/")
        self.counts[method] = self.counts.get(method, 0) + 1
        params = rec.json if isinstance(rec.json, dict) else (rec.form or {})
        if method == "chat.postMessage":
            self.first_post.setdefault(str(params.get("channel")), rec.at)
            self.last_post = params
            if self.listeners:
                found = JOB_TOKEN.search(rec.body_text)
                if found:
                    line = f"{found.group()} {rec.at}\n"
                    for queue in self.listeners:
                        queue.put_nowait(line)
        elif method == "views.open":
            view = params.get("view")
            self.last_view = json.loads(view) if isinstance(view, str) else view
        return response


class CountingPagerDuty(FakePagerDuty):
    def __init__(self) -> None:
        super().__init__(routing_key=PD_ROUTING_KEY)
        self.arrivals: list[float] = []

    def bench_state(self) -> dict[str, Any]:
        return {"arrivals": self.arrivals}

    async def handle(self, rec: Recorded, request: web.Request) -> web.StreamResponse:
        control = _control(self, rec)
        if control is not None:
            return control
        response = await super().handle(rec, request)
        if response.status == 202:
            self.arrivals.append(rec.at)
        return response


class CountingConnector(FakeConnector):
    def __init__(self) -> None:
        super().__init__()
        self.posted = 0
        self.peers: set[tuple[str, int]] = set()  # client (host, port): one per TCP connection

    def bench_state(self) -> dict[str, Any]:
        return {"posted": self.posted, "connections": len(self.peers)}

    async def handle(self, rec: Recorded, request: web.Request) -> web.StreamResponse:
        control = _control(self, rec)
        if control is not None:
            return control
        response = await super().handle(rec, request)
        if rec.method == "POST":
            self.posted += 1
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            self.peers.add((str(peer[0]), int(peer[1])))
        return response


async def serve() -> None:
    fakes = (CountingSlack(), CountingPagerDuty(), CountingConnector())
    for fake in fakes:
        await fake.start()
    slack, pd, connector = fakes
    urls = {"slack": slack.url, "pd": pd.url, "connector": connector.url}
    print(json.dumps(urls), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin
    for fake in fakes:
        await fake.stop()


class RemoteFakes:
    """The benchmark's handle on the fakes process."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.slack_url = self.pd_url = self.connector_url = ""
        self._http: aiohttp.ClientSession | None = None
        self.view: dict[str, Any] | None = None  # the intake modal, once the bot opened one

    def _spawn(self) -> subprocess.Popen[bytes]:
        from bench.procs import REPO

        return subprocess.Popen(
            [sys.executable, "-m", "bench.fakes"], cwd=REPO,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip

    async def start(self) -> None:
        self.proc = self._spawn()
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), 30)
        if not line:
            raise RuntimeError("the fakes process did not start")
        urls = json.loads(line)
        self.slack_url, self.pd_url, self.connector_url = (
            urls["slack"],
            urls["pd"],
            urls["connector"],
        )
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    @property
    def pd_events_url(self) -> str:
        return f"{self.pd_url}/v2/enqueue"

    @property
    def service_url(self) -> str:
        return self.connector_url + "/"

    async def _state(self, base: str) -> dict[str, Any]:
        assert self._http is not None
        async with self._http.get(base + STATE) as response:
            data: dict[str, Any] = await response.json()
            return data

    async def slack(self) -> dict[str, Any]:
        return await self._state(self.slack_url)

    async def count(self, method: str) -> int:
        return int((await self.slack())["counts"].get(method, 0))

    async def connector(self) -> tuple[int, int]:
        """(activities posted, TCP connections they came on) so far."""
        state = await self._state(self.connector_url)
        return int(state["posted"]), int(state["connections"])

    async def pages(self) -> list[float]:
        return list((await self._state(self.pd_url))["arrivals"])

    async def trim(self) -> None:
        assert self._http is not None
        for base in (self.slack_url, self.pd_url, self.connector_url):
            async with self._http.post(base + TRIM) as response:
                await response.read()

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.to_thread(proc.wait, 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait, 5)


if __name__ == "__main__":
    asyncio.run(serve())
