"""`python -m bot [serve|worker|migrate|check-config|teams-package|report]`: run the bot, only
the outbox worker, or migrations; check the config; build the Teams app package; write the QBR
report."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

# Each command imports what it uses, when it runs: `--help`, `check-config`, `teams-package`
# and `report` start without the web server, the ORM or the PSA and chat handlers.
if TYPE_CHECKING:
    from bot.settings import Settings

log = logging.getLogger("bot")


def _parser() -> argparse.ArgumentParser:
    from bot.cli_help import OneLineSubcommands
    from bot.report_cli import add_arguments as report_arguments
    from bot.teams.package import add_arguments as teams_package_arguments

    parser = argparse.ArgumentParser(
        prog="python -m bot",
        formatter_class=OneLineSubcommands,
        description="helpdesk-bot: the Slack and Teams help-desk bot (no command: serve)",
    )
    sub = parser.add_subparsers(dest="command", metavar="command")
    serve = sub.add_parser("serve", help="run the web server with the scheduler (default)")
    serve.add_argument(
        "--no-scheduler",
        action="store_true",
        help="web-only replica: leave outbox delivery to `worker` processes",
    )
    worker = sub.add_parser("worker", help="run only the scheduler / outbox worker")
    worker.add_argument(
        "--metrics-port",
        type=_port,
        metavar="PORT",
        help="also serve GET /metrics and GET /healthz on HOST:PORT (the deliveries, failures "
        "and retention counts are this process's: a web-only replica has none)",
    )
    sub.add_parser("migrate", help="bring the database schema to the newest revision")
    check = sub.add_parser("check-config", help="validate settings and directory; show what is on")
    check.add_argument("--no-db", action="store_true", help="do not contact the database")
    check.add_argument(
        "--probe",
        action="store_true",
        help="also make read-only calls to the PSA and a Graph directory and report them",
    )
    teams_package_arguments(
        sub.add_parser("teams-package", help="write the Teams app package (.zip) to upload")
    )
    report_arguments(
        sub.add_parser("report", help="print the QBR report; --csv and --png write it to files")
    )
    return parser


def _port(text: str) -> int:
    """A TCP port number (argparse names the option when it is not one)."""
    if not (text.isascii() and text.isdigit() and 0 < int(text) < 65536):
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port number")
    return int(text)


async def _migrate(settings: Settings) -> None:
    from bot.settings import engine_for
    from handlers.diagnosis import backfill_signatures
    from storage import db
    from storage.migrate import upgrade

    engine = engine_for(settings.database_url)
    try:
        before, after = await upgrade(engine)
        if before and before != after:
            # Tickets from before error signatures existed get theirs (no-op when they have).
            await backfill_signatures(db.session_factory(engine), batch=1000)
    finally:
        await engine.dispose()
    if before == after:
        log.info("database schema is at the newest revision (%s): nothing to do", ", ".join(after))
    else:
        log.info(
            "database schema upgraded from revision %s to %s",
            ", ".join(before) or "none",
            ", ".join(after),
        )


async def _worker(settings: Settings, *, metrics_port: int | None = None) -> None:
    from aiohttp import web

    from bot import gc_tuning
    from bot.app import start_services, stop_services, worker_app
    from bot.metrics_access import metrics_access

    services = await start_services(settings, scheduler=True, web_front=False)
    runner: web.AppRunner | None = None
    if metrics_port is not None:
        runner = web.AppRunner(worker_app(settings, services), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, settings.host, metrics_port).start()
        except BaseException:
            await runner.cleanup()
            await stop_services(services)
            raise
        log.info(
            "GET /metrics and GET /healthz on http://%s:%s (%s)",
            settings.host,
            metrics_port,
            metrics_access(settings, metrics_port).removeprefix("GET /metrics: "),
        )
    gc_tuning.tune()
    stop = asyncio.Event()
    received: list[str] = []

    def _stop(sig: signal.Signals) -> None:
        received.append(sig.name)
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _stop, sig)
    log.info("outbox worker running")
    await stop.wait()
    # Said, so that a clean stop and a crash do not look alike in the log.
    log.info("stopping (%s): finishing the deliveries in hand", received[0])
    if runner is not None:
        await runner.cleanup()
    await stop_services(services)
    log.info("outbox worker stopped")


def listening_url(host: str, port: int) -> str:
    """The address to type in a browser: an IPv6 host in brackets (`http://[::1]:3978`)."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _serve(settings: Settings, *, scheduler: bool) -> None:
    from aiohttp import web

    from bot import gc_tuning
    from bot.app import create_app
    from bot.settings import is_loopback

    if settings.teams_emulator and not is_loopback(settings.host):
        log.warning(
            "MicrosoftAppId is empty: the Teams endpoint runs in Emulator mode and "
            "refuses non-loopback callers while HOST=%s",
            settings.host,
        )
    app = create_app(settings, scheduler=scheduler)

    async def stopping(_: web.Application) -> None:
        # Said, so that a clean stop and a crash do not look alike in the log.
        log.info("stopping: finishing the requests in flight")

    async def started(_: web.Application) -> None:
        gc_tuning.tune()  # after the app's own start-up (its services are up by now)

    app.on_startup.append(started)
    app.on_shutdown.insert(0, stopping)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        # Said once the services are up and the port is bound (start-up may still stop).
        print=lambda _: log.info("listening on %s", listening_url(settings.host, settings.port)),
        access_log=None,
        handle_signals=True,
    )
    log.info("stopped")


async def _check_listen(host: str, port: int, *, option: str = "PORT") -> None:
    """ConfigError naming HOST or PORT (or `option`) when the server could not listen there:
    checked before anything starts (aiohttp binds only after the services are up)."""
    from bot.settings import ConfigError

    try:
        server = await asyncio.get_running_loop().create_server(asyncio.Protocol, host, port)
    except OSError as exc:
        # asyncio's bind errors quote the address again: keep only the reason.
        code = exc.errno or 0
        reason = os.strerror(code) if code > 0 else exc.strerror or str(exc)
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):
            raise ConfigError(f"{option}: cannot listen on {host}:{port} ({reason})") from None
        raise ConfigError(f"HOST: cannot listen on {host}:{port} ({reason})") from None
    server.close()
    await server.wait_closed()


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Only errors from logger `name` (and its children) while inside."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


async def _preflight(settings: Settings, command: str, *, metrics_port: int | None = None) -> None:
    """Fail fast (exit 2) on an unreachable database, a schema this release cannot run on
    (see `storage.migrate.check_schema`), an unusable directory, or (`serve`) a HOST and PORT
    it cannot listen on."""
    from bot.check_config import database_unreachable, new_sqlite_file
    from bot.directory.factory import create_directory
    from bot.settings import ConfigError, engine_for
    from handlers.directory import DirectoryError
    from storage import db
    from storage.migrate import check_schema

    # A SQLite file whose folder is missing (or a folder) is named as that, not as SQLite's
    # "unable to open database file".
    new_sqlite_file(settings.database_url)
    engine = engine_for(settings.database_url)
    try:
        try:
            await asyncio.wait_for(db.ping(engine), timeout=15)
        except Exception as exc:
            raise database_unreachable(exc, settings.database_url) from None
        # SQLite is migrated by `serve` and `worker` on start; PostgreSQL only by `migrate`,
        # so its processes refuse a schema behind theirs. Nobody touches a newer one.
        newest = command != "migrate" and not db.is_sqlite(settings.database_url)
        await check_schema(engine, require_newest=newest)
    finally:
        await engine.dispose()
    # `serve` and `worker` build the directory again as they start, and say what it is then:
    # its lines (`directory: none configured ...`) are kept out of this check, not said twice.
    quiet = _quiet("bot.directory") if command != "migrate" else contextlib.nullcontext()
    try:
        with quiet:
            directory = await create_directory(
                settings.config.directory, config_dir=settings.config_dir, env=settings.env
            )
    except DirectoryError as exc:
        raise ConfigError(f"directory: {exc}") from exc
    await directory.close()
    if command == "serve":
        await _check_listen(settings.host, settings.port)
    if metrics_port is not None:
        await _check_listen(settings.host, metrics_port, option="--metrics-port")


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The arguments; one the command does not take is refused by that command's parser, so
    its usage line is the one shown (`python -m bot migrate extra` showed the top-level one)."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        commands = next(
            a for a in parser._actions if isinstance(a, argparse._SubParsersAction)
        ).choices
        (commands.get(args.command) or parser).error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    command = args.command or "serve"
    if command == "teams-package":  # needs no settings or database
        from bot.teams.package import run as teams_package

        return teams_package(args)
    if command == "check-config":
        from bot.check_config import run as check_config

        return check_config(os.environ, database=not args.no_db, probe=args.probe)
    if command == "report":  # reads the database, starts nothing
        from bot.report_cli import run as report

        return report(args, os.environ)
    from bot.logs import redact_urls, setup_logging
    from bot.settings import ConfigError, load_settings
    from handlers.directory import DirectoryError

    try:
        settings = load_settings(os.environ)
    except ConfigError as exc:
        print(redact_urls(f"config error: {exc}"), file=sys.stderr)
        return 2
    setup_logging(fmt=settings.log_format, level=settings.log_level)
    if settings.database_note:
        log.info("%s", settings.database_note)
    from storage.migrate import MigrationBusy, SchemaMismatch

    try:
        metrics_port = getattr(args, "metrics_port", None)
        asyncio.run(_preflight(settings, command, metrics_port=metrics_port))
        if command == "migrate":
            asyncio.run(_migrate(settings))
        elif command == "worker":
            asyncio.run(_worker(settings, metrics_port=metrics_port))
        else:
            _serve(settings, scheduler=not getattr(args, "no_scheduler", False))
    except (ConfigError, DirectoryError) as exc:
        # Not through the log: masked as it would be (a URL's user:password, a key).
        print(redact_urls(f"config error: {exc}"), file=sys.stderr)
        return 2
    except (SchemaMismatch, MigrationBusy) as exc:
        print(f"database error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
