"""Real `python -m bot ...` processes for tests: spawn, read their output, stop or kill them."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
import yaml
from sqlalchemy import text

from storage import db
from storage.models import Base
from tests.harness import BOT_TOKEN, wait_until
from tests.http.p1_support import ROUTING_KEY

eventually = wait_until


class Proc:
    """A `python -m bot ...` child; its output is kept (and checked for secrets)."""

    def __init__(self, process: asyncio.subprocess.Process, name: str) -> None:
        self.process, self.name = process, name
        self.lines: list[str] = []
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip())

    # A process starting on a loaded 2-core CI box (three other test processes beside it) has
    # taken over 15 s to import and start; waiting longer costs nothing when it is quick.
    async def wait_for_line(self, words: str, timeout: float = 45.0) -> None:  # noqa: ASYNC109
        await eventually(lambda: any(words in line for line in self.lines)
                         or self.process.returncode is not None, timeout=timeout,
                         what=f"{self.name}: {words!r}")  # fmt: skip
        assert self.process.returncode is None, "\n".join(self.lines[-30:])

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.returncode is None:
            self.process.send_signal(sig)
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        await asyncio.wait_for(self._reader, 5)


Spawn = Callable[..., Awaitable[Proc]]


@pytest.fixture
async def spawn(tmp_path: Path) -> AsyncIterator[Spawn]:
    """Start `python -m bot <args>` with extra env; every child is killed at the end."""
    started: list[Proc] = []

    async def start(*args: str, env: dict[str, str], name: str = "") -> Proc:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", *args, cwd=tmp_path,
            env={**os.environ, "LOG_LEVEL": "INFO", **env},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        proc = Proc(process, name or " ".join(args))
        started.append(proc)
        return proc

    yield start
    for proc in started:
        await proc.stop(signal.SIGKILL)
        for line in proc.lines:
            assert ROUTING_KEY not in line and BOT_TOKEN not in line, line


@pytest.fixture
async def blackhole() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A server that reads requests and never answers (a pager that hangs)."""
    received: list[bytes] = []
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        received.append(await reader.read(65536))
        await reader.read()  # until the client goes away

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/v2/enqueue", received
    for writer in writers:
        writer.close()
    server.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def healthy(http: aiohttp.ClientSession, port: int) -> bool:
    try:
        async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


@pytest.fixture
async def pg_url(request: pytest.FixtureRequest) -> str:
    """The PostgreSQL test database, emptied (skipped where PostgreSQL is not available)."""
    url: str = request.getfixturevalue("pg_migrated")
    engine = db.create_engine(url)
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    await engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database real processes share: a SQLite file (`serve` migrates it), or the
    emptied PostgreSQL test database."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'helpdesk.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


def teams_env(
    tmp_path: Path, *, database: str, service_url: str, tenant: str,
    people: list[dict[str, object]], auth: dict[str, str] | None = None,
) -> dict[str, str]:  # fmt: skip
    """The environment of processes answering Teams at `service_url` (the file directory
    with `people`); `auth`: MicrosoftAppId and its password (none: Emulator mode)."""
    (tmp_path / "people.yaml").write_text(yaml.safe_dump(people))
    config = {
        "teams": {"service_url": service_url, "tenant_id": tenant},
        "directory": {"source": "file", "path": "people.yaml"},
    }
    (tmp_path / "helpdesk.yaml").write_text(yaml.safe_dump(config))
    return {
        "DATABASE_URL": database,
        "HELPDESK_CONFIG": str(tmp_path / "helpdesk.yaml"),
        "HOST": "127.0.0.1",
        **(auth or {}),
    }


async def serve_teams(spawn: Spawn, env: dict[str, str], name: str) -> tuple[Proc, str]:
    """A `serve --no-scheduler` process, listening; it and its Bot Framework endpoint."""
    port = free_port()
    proc = await spawn("serve", "--no-scheduler", env={**env, "PORT": str(port)}, name=name)
    await proc.wait_for_line("listening on")
    return proc, f"http://127.0.0.1:{port}/api/messages"
