"""Server subprocesses: start, wait until they answer, read their CPU time, always stop them."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
RUNNING: set[Server] = set()  # servers started and not yet stopped


def stop_all() -> None:
    """Stop every server this process started (also registered with atexit)."""
    for server in list(RUNNING):
        server.stop()


atexit.register(stop_all)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env() -> dict[str, str]:
    """A clean environment: only what Python needs, nothing from the caller's settings."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "SSL_CERT_FILE")
    return {k: os.environ[k] for k in keep if k in os.environ}


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all threads) from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        stat = fh.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Server:
    """One HTTP server subprocess on 127.0.0.1:`port`, its output in `log`."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], port: int, log: Path):
        self.name = name
        self.args = args
        self.env = env
        self.port = port
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def _spawn(self) -> subprocess.Popen[bytes]:
        with open(self.log, "ab") as out:
            return subprocess.Popen(
                [sys.executable, *self.args], cwd=REPO, env=self.env,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    async def start(self, *, limit: float = 60.0) -> Server:
        """Spawn the process and wait (at most `limit` s) until GET /healthz answers 200."""
        self.proc = self._spawn()
        RUNNING.add(self)
        deadline = time.monotonic() + limit
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited ({self.proc.returncode}); see {self.log}"
                    )
                try:
                    async with http.get(f"{self.url}/healthz") as response:
                        if response.status == 200:
                            return self
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer /healthz in {limit:.0f}s; see {self.log}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        RUNNING.discard(self)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def run_checked(args: list[str], env: dict[str, str], log: Path, *, timeout: float = 120) -> None:
    """Run `python <args>` to completion (e.g. `-m bot migrate`); raise with the log on failure."""
    with open(log, "ab") as out:
        code = subprocess.run(
            [sys.executable, *args], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
            timeout=timeout, check=False,
        ).returncode  # fmt: skip
    if code != 0:
        raise RuntimeError(f"python {' '.join(args)} failed ({code}); see {log}")
