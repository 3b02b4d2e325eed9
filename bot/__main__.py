"""`python -m bot [serve|worker|migrate]`: run the bot, only the outbox worker, or migrations."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from aiohttp import web

from bot.logs import setup_logging
from bot.settings import ConfigError, Settings, is_loopback, load_settings

log = logging.getLogger("bot")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description="helpdesk-bot")
    sub = parser.add_subparsers(dest="command", metavar="command")
    serve = sub.add_parser("serve", help="run the web server with the scheduler (default)")
    serve.add_argument("--no-scheduler", action="store_true",
                       help="web-only replica: leave outbox delivery to `worker` processes")
    sub.add_parser("worker", help="run only the scheduler / outbox worker")
    sub.add_parser("migrate", help="bring the database schema to the newest revision")
    return parser


async def _migrate(settings: Settings) -> None:
    from storage import db
    from storage.migrate import upgrade

    engine = db.create_engine(settings.database_url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    log.info("database schema is at the newest revision")


async def _worker(settings: Settings) -> None:
    from bot.app import start_services, stop_services

    services = await start_services(settings, scheduler=True, web_front=False)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("outbox worker running")
    await stop.wait()
    await stop_services(services)


def _serve(settings: Settings, *, scheduler: bool) -> None:
    from bot.app import create_app

    if settings.teams_emulator and not is_loopback(settings.host):
        log.warning("MicrosoftAppId is empty: the Teams endpoint runs in Emulator mode and "
                    "refuses non-loopback callers while HOST=%s", settings.host)
    app = create_app(settings, scheduler=scheduler)
    log.info("listening on http://%s:%s", settings.host, settings.port)
    web.run_app(app, host=settings.host, port=settings.port, print=None,
                access_log=None, handle_signals=True)


async def _check_db(settings: Settings) -> None:
    from storage import db

    engine = db.create_engine(settings.database_url)
    try:
        await asyncio.wait_for(db.ping(engine), timeout=15)
    finally:
        await engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = args.command or "serve"
    try:
        settings = load_settings(os.environ)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    setup_logging(fmt=settings.log_format, level=settings.log_level)
    try:
        asyncio.run(_check_db(settings))
    except Exception as exc:
        print(f"config error: DATABASE_URL: cannot reach the database "
              f"({type(exc).__name__}: {exc})", file=sys.stderr)
        return 2
    try:
        if command == "migrate":
            asyncio.run(_migrate(settings))
        elif command == "worker":
            asyncio.run(_worker(settings))
        else:
            _serve(settings, scheduler=not getattr(args, "no_scheduler", False))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
