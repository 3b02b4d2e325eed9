"""`/ticket help` against bare Bolt in one process: server CPU per request, low noise.

    python -m bench.help_inproc [--requests 3000] [--rounds 4] [--slice 500] [--concurrency 8]
                                [--profile] [--no-scheduler]

The full benchmark (`bench.intake`) runs each server in its own process and drives it from
another; on a shared 2-core box its help ratio swings with the load generator. This builds, in
one process, the real aiohttp app (`bot.app.create_app`, as `python -m bot serve` does: SQLite in
a temporary file, the scheduler running, LOG_LEVEL INFO), bare Bolt acking `/ticket`
(`bench/baselines/bolt_app.py --mode ack`) and a bare aiohttp handler that answers a fixed 200
(what aiohttp's own HTTP server costs), each on a loopback port of the main thread's event loop.
A client thread with its own event loop sends signed `/ticket help` requests over `c` keep-alive
connections (closed loop), in rounds whose slices of `--slice` requests alternate between the
servers (bot, bolt, null, bot, ...), so that other work on the box meets them all alike.

CPU per request is the *server thread's* CPU time (`time.thread_time()` of the main thread,
which runs every server and nothing else) over a round divided by its requests: the client's
work is on its own thread and not counted. Both apps are up for the whole run, so the bot's
scheduler ticks (outbox poll, database probe) land in every round alike; the idle rate of the
server thread is printed too. `--profile` runs one more round of each server under cProfile
(server thread only) and prints the top functions by inclusive and by self time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import yaml
from aiohttp import web

from bench import payloads

HELP_CARD = b"Help desk commands"


def help_request(port: int, n: int) -> bytes:
    """One signed `/ticket help` as Slack sends it (HTTP/1.1, keep-alive)."""
    form = {
        "token": "legacy", "team_id": "T0TEAM", "team_domain": "acme",
        "channel_id": "C0HELP", "channel_name": "helpdesk", "user_id": "UTECH",
        "user_name": "utech", "command": "/ticket", "text": "help",
        "api_app_id": "A0APP", "response_url": "http://127.0.0.1:9/unused",
        "trigger_id": f"trigger-{n}",
    }  # fmt: skip
    body, headers = payloads.signed(urlencode(form))
    lines = [
        "POST /slack/events HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _client(port: int, requests: list[bytes], concurrency: int) -> list[bytes]:
    """Send `requests` over `concurrency` keep-alive connections; the first answer's body."""
    queue = list(reversed(requests))
    first: list[bytes] = []

    async def one_connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while queue:
                writer.write(queue.pop())
                head = await reader.readuntil(b"\r\n\r\n")
                status = head.split(b" ", 2)[1]
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length)
                if status != b"200":
                    raise RuntimeError(f"answer {status!r}: {body[:300]!r}")
                if not first:
                    first.append(body)
        finally:
            writer.close()

    await asyncio.gather(*(one_connection() for _ in range(concurrency)))
    return first


def drive(port: int, requests: list[bytes], concurrency: int) -> list[bytes]:
    """The client, on a thread of its own (its CPU is not the server thread's)."""
    return asyncio.run(_client(port, requests, concurrency))


async def null_app() -> web.Application:
    """A fixed 200 at /slack/events; also Slack's `auth.test` (Bolt asks it once)."""

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True})

    async def auth_test(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(
            {"ok": True, "url": "https://acme.slack.com/", "team": "Acme", "user": "helpdesk",
             "team_id": "T0TEAM", "user_id": "UBOT", "bot_id": "BBOT"}
        )  # fmt: skip

    app = web.Application()
    app.router.add_post("/slack/events", answer)
    app.router.add_post("/api/auth.test", auth_test)
    return app


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None and server.sockets
    return runner, int(server.sockets[0].getsockname()[1])


async def run_round(
    port: int, n: int, concurrency: int, profile: cProfile.Profile | None = None
) -> tuple[float, float, bytes]:
    """(server-thread CPU per request in ms, requests/s of the round, first answer's body)."""
    requests = [help_request(port, i) for i in range(n)]
    loop = asyncio.get_running_loop()
    started_cpu, started = time.thread_time(), time.perf_counter()
    if profile is not None:
        profile.enable()
    first = await loop.run_in_executor(None, drive, port, requests, concurrency)
    if profile is not None:
        profile.disable()
    cpu, wall = time.thread_time() - started_cpu, time.perf_counter() - started
    return cpu / n * 1000, n / wall, first[0]


def top(profile: cProfile.Profile, sort: str, count: int) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats(sort).print_stats(count)
    text = out.getvalue()
    for marker in (str(Path(sys.prefix)) + "/lib/python3.11/site-packages/", os.getcwd() + "/"):
        text = text.replace(marker, "")
    return text


async def main_async(args: argparse.Namespace) -> int:
    from bench.baselines.bolt_app import build as build_bolt
    from bot.app import create_app
    from bot.logs import setup_logging
    from bot.settings import load_settings

    tmp = Path(tempfile.mkdtemp(prefix="helpdesk-help-"))
    servers: dict[str, tuple[web.AppRunner, int]] = {}
    servers["null"] = await serve(await null_app())
    api_url = f"http://127.0.0.1:{servers['null'][1]}/api/"
    config = tmp / "helpdesk.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "teams": {"service_url": "http://127.0.0.1:9"},
                "slack": {"incident_channel": "C0INCIDENT"},
                "sla": {"clients": {"acme": "gold"}},
            }
        )
    )
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'bot.db'}",
        "SLACK_BOT_TOKEN": payloads.BOT_TOKEN,
        "SLACK_SIGNING_SECRET": payloads.SIGNING_SECRET,
        "SLACK_API_URL": api_url,
        "HELPDESK_CONFIG": str(config),
        "LOG_LEVEL": args.log_level,
    }
    # bolt_app.build reads these.
    os.environ["SLACK_BOT_TOKEN"] = payloads.BOT_TOKEN
    os.environ["SLACK_SIGNING_SECRET"] = payloads.SIGNING_SECRET
    settings = load_settings(env)
    setup_logging(fmt=settings.log_format, level=settings.log_level)
    servers["bot"] = await serve(create_app(settings, scheduler=not args.no_scheduler))
    servers["bolt"] = await serve(build_bolt("ack", api_url, None))
    names = ["bot", "bolt", "null"]
    try:
        # The server thread at rest (the bot's scheduler, database probe): per second.
        await asyncio.sleep(0.5)
        idle_cpu = time.thread_time()
        await asyncio.sleep(2.0)
        idle = (time.thread_time() - idle_cpu) / 2.0 * 1000
        print(f"server thread at rest: {idle:.2f} ms CPU per second", flush=True)
        for name in names:  # warm-up, checked
            _, _, body = await run_round(servers[name][1], 300, args.concurrency)
            if name != "null" and HELP_CARD not in body and name == "bot":
                raise SystemExit(f"{name}: not the help card: {body[:300]!r}")
        cpu: dict[str, list[float]] = {name: [] for name in names}
        rps: dict[str, list[float]] = {name: [] for name in names}
        slices = max(1, args.requests // args.slice)
        for round_no in range(1, args.rounds + 1):
            # Each round alternates the servers slice by slice, so that a change in the
            # box's load meets them all alike.
            spent = dict.fromkeys(names, 0.0)
            rates: dict[str, list[float]] = {name: [] for name in names}
            for _ in range(slices):
                for name in names:
                    per_request, rate, _ = await run_round(
                        servers[name][1], args.slice, args.concurrency
                    )
                    spent[name] += per_request / slices
                    rates[name].append(rate)
            line = []
            for name in names:
                cpu[name].append(spent[name])
                rps[name].append(statistics.median(rates[name]))
                line.append(f"{name} {spent[name] * 1000:6.1f} us ({rps[name][-1]:6.0f}/s)")
            ratio = cpu["bolt"][-1] / cpu["bot"][-1]
            print(f"round {round_no}: " + ", ".join(line) + f"; bolt/bot CPU {ratio:.2f}x",
                  flush=True)  # fmt: skip
        print()
        for name in names:
            med = statistics.median(cpu[name]) * 1000
            print(f"{name:5} CPU/request median {med:6.1f} us "
                  f"[{min(cpu[name]) * 1000:.1f}-{max(cpu[name]) * 1000:.1f}], "
                  f"{statistics.median(rps[name]):.0f} req/s median")  # fmt: skip
        ratios = [b / h for b, h in zip(cpu["bolt"], cpu["bot"], strict=True)]
        print(
            "bot throughput bound vs bare Bolt (bolt CPU / bot CPU per request): "
            f"{statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]"
        )
        bare = statistics.median(cpu["null"])
        bot_over = (statistics.median(cpu["bot"]) - bare) * 1000
        bolt_over = (statistics.median(cpu["bolt"]) - bare) * 1000
        print(f"above bare aiohttp: bot {bot_over:.1f} us, bolt {bolt_over:.1f} us")
        if args.profile:
            for name in ("bot", "bolt"):
                profile = cProfile.Profile(time.thread_time)
                await run_round(servers[name][1], args.requests, args.concurrency, profile)
                print(f"\n===== cProfile {name} ({args.requests} requests), by inclusive time")
                print(top(profile, "cumulative", args.top))
                print(f"===== cProfile {name}, by self time")
                print(top(profile, "tottime", args.top))
    finally:
        for runner, _ in servers.values():
            await runner.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--slice", type=int, default=500, help="requests per server in turn")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--no-scheduler", action="store_true", help="a web-only bot")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=45)
    return asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
