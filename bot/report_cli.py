"""`python -m bot report`: the QBR summary on stdout, and optionally the CSV and the chart.

Exit 0 when it was written (also with no ticket in the period); 2 with one line naming the
option for a malformed date, a period that ends before it starts, or a file that cannot be
written (all checked before the database is asked), and for a database that cannot be reached
(a SQLite file that is not there is named, never created) or a schema this release cannot read.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import secrets
import sys
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, cast

from bot.logs import redact_urls

if TYPE_CHECKING:
    from handlers import reports


class ReportError(Exception):
    """Names the option and what is wrong with it."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--client", help="one client (any case); default: all clients")
    parser.add_argument("--since", metavar="YYYY-MM-DD", help="first UTC day (inclusive)")
    parser.add_argument(
        "--until", metavar="YYYY-MM-DD", help="last UTC day (inclusive); default: today"
    )
    parser.add_argument("--csv", metavar="FILE", help="also write one row per ticket (CSV)")
    parser.add_argument("--png", metavar="FILE", help="also write the chart (PNG)")


def _day(option: str, value: str | None) -> date | None:
    if value is None:
        return None
    from handlers import reports

    try:
        return reports.parse_date(value)
    except ValueError as exc:
        raise ReportError(f"{option}: {exc}") from None


def period(args: argparse.Namespace, *, today: date) -> reports.Period:
    """The period the options ask for (the 90 days ending today by default)."""
    from handlers import reports

    since, until = _day("--since", args.since), _day("--until", args.until)
    try:
        return reports.period_of(since, until, today=today)
    except ValueError:
        assert since is not None
        shown = until.isoformat() if until is not None and args.until else f"today ({today})"
        raise ReportError(f"--since: {since.isoformat()} is after --until {shown}") from None


def _cannot(option: str, value: str, exc: OSError) -> ReportError:
    return ReportError(f"{option}: cannot write {value} ({exc.strerror or exc})")


class _Output:
    """A file the report writes: first beside its name (so that a report that fails leaves
    nothing behind, and an earlier file of that name as it was), moved there once written."""

    def __init__(self, option: str, value: str, *, text: bool) -> None:
        self.option, self.value = option, value
        self.path = Path(value)
        try:
            if self.path.is_dir():
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
            if self.path.exists() and not os.access(self.path, os.W_OK):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
            self.temporary = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
            # The mode a file opened for writing gets (umask applies), not a private one.
            fd = os.open(self.temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except OSError as exc:
            raise _cannot(option, value, exc) from None
        self.file: IO[str] | IO[bytes] = (
            os.fdopen(fd, "w", encoding="utf-8", newline="") if text else os.fdopen(fd, "wb")
        )

    def keep(self) -> None:
        """Put the written file in place of its name."""
        self.file.close()
        try:
            os.replace(self.temporary, self.path)
        except OSError as exc:
            self.temporary.unlink(missing_ok=True)
            raise _cannot(self.option, self.value, exc) from None

    def discard(self) -> None:
        self.file.close()
        self.temporary.unlink(missing_ok=True)


async def _write(
    url: str,
    *,
    pattern_threshold: int,
    span: reports.Period,
    client: str | None,
    now: datetime,
    csv_file: IO[str] | None,
    png_file: IO[bytes] | None,
) -> list[str]:
    from handlers import reports
    from storage import db
    from storage.migrate import check_schema

    engine = db.create_engine(url)
    try:
        try:
            await asyncio.wait_for(db.ping(engine), timeout=15)
        except Exception as exc:
            from bot.check_config import database_unreachable

            raise database_unreachable(exc, url) from None
        await check_schema(engine, require_newest=True)
        summary = await reports.build(
            engine, period=span, client=client, now=now, pattern_threshold=pattern_threshold
        )
        if csv_file is not None:
            await reports.write_csv(engine, csv_file, period=span, client=client, now=now)
        if png_file is not None:
            png_file.write(await reports.chart_png(summary))
        return reports.lines(summary)
    finally:
        await engine.dispose()


def _existing_database(url: str) -> None:
    """A SQLite file that is not there is named, not created: `migrate` would then make an
    empty database beside the wrong working directory, reporting no ticket."""
    from sqlalchemy.engine import make_url

    from bot.check_config import new_sqlite_file
    from bot.settings import ConfigError

    if new_sqlite_file(url):
        path = Path(make_url(url).database or "").resolve()
        raise ConfigError(
            f"DATABASE_URL: no database file {path} (a relative path is read from the working "
            "directory): run report where the bot runs, or set DATABASE_URL"
        )


def _distinct_files(args: argparse.Namespace) -> None:
    """`-` would be a file named `-` (stdout carries the summary), and one path for both
    options would be the chart written over the CSV, each with exit 0."""
    for option, value in (("--csv", args.csv), ("--png", args.png)):
        if value == "-":
            raise ReportError(f"{option}: name a file ('-' is not stdout here: the summary is)")
    if args.csv is not None and args.png is not None:
        if Path(args.csv).resolve() == Path(args.png).resolve():
            raise ReportError(f"--png: {args.png} is also the --csv file; name two files")


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """The `report` subcommand."""
    from bot.settings import ConfigError, load_settings
    from storage.migrate import SchemaMismatch

    now = datetime.now(UTC)
    outputs: dict[str, _Output] = {}
    try:
        settings = load_settings(env)
        span = period(args, today=now.date())
        csv_file: IO[str] | None = None
        png_file: IO[bytes] | None = None
        _distinct_files(args)
        if args.csv is not None:
            outputs["--csv"] = _Output("--csv", args.csv, text=True)
            csv_file = cast(IO[str], outputs["--csv"].file)
        if args.png is not None:
            outputs["--png"] = _Output("--png", args.png, text=False)
            png_file = cast(IO[bytes], outputs["--png"].file)
        _existing_database(settings.database_url)
        client = (args.client or "").strip() or None
        text = asyncio.run(
            _write(
                settings.database_url,
                pattern_threshold=settings.config.patterns.repeat_threshold,
                span=span,
                client=client,
                now=now,
                csv_file=csv_file,
                png_file=png_file,
            )
        )
        while outputs:
            outputs.pop(next(iter(outputs))).keep()
    except ReportError as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(redact_urls(f"config error: {exc}"), file=sys.stderr)
        return 2
    except SchemaMismatch as exc:
        print(f"database error: {exc}", file=sys.stderr)
        return 2
    finally:
        for output in outputs.values():
            output.discard()
    try:
        print("\n".join(text), flush=True)
    except BrokenPipeError:
        # `report | head`: the reader has gone, which is no error of the report's. Point
        # stdout at /dev/null so the flush at exit does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
