"""Retry-After windows shared by every process on the database, one row per place.

bot.places keeps each process's windows in memory; this is where a window one process learns
from a refusal is found by the others. A row is written when a send is refused with a
Retry-After (the longer window wins) and read before a send; rows whose window is over are
deleted when a window is written, so the table holds only the places throttled now.

These take a Connection, not a Session: the read runs before every delivery, and a plain
connection costs about half the CPU of a session's transaction around the same SELECT.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from storage import statements
from storage.models import PlaceWindow

_WINDOWS = statements.table_of(PlaceWindow)
# Built once: every delivery reads its places (see storage.statements for why that matters).
_OPEN = select(_WINDOWS.c.place, _WINDOWS.c.blocked_until).where(
    _WINDOWS.c.place.in_(bindparam("window_places", expanding=True)),
    _WINDOWS.c.blocked_until > bindparam("window_now"),
)
_OVER = delete(_WINDOWS).where(_WINDOWS.c.blocked_until <= bindparam("window_now"))


async def open_windows(
    conn: AsyncConnection, *, places: Sequence[str], now: datetime
) -> dict[str, datetime]:
    """The windows of `places` that are not over at `now`: place -> until (UTC)."""
    if not places:
        return {}
    result = await conn.execute(_OPEN, {"window_places": list(places), "window_now": now})
    return {place: until for place, until in result.all()}


async def hold(conn: AsyncConnection, *, place: str, until: datetime, now: datetime) -> None:
    """Nothing goes to `place` before `until` (a later window already stored wins); windows
    over at `now` are dropped. Commit is the caller's."""
    await conn.execute(_OVER, {"window_now": now})
    await conn.execute(
        statements.upsert_max_on(conn.dialect.name, _WINDOWS, "place", "blocked_until"),
        {"place": place, "blocked_until": until},
    )


# SQLAlchemy's SQLite DATETIME text (UtcDateTime stores UTC): compared as text, in order.
_SQLITE_TEXT = "%Y-%m-%d %H:%M:%S.%f"


class SqliteReader:
    """`open_windows` for a SQLite file through a read-only connection of its own.

    The engine has one connection (storage.db), held by whatever transaction is running, so a
    read before every delivery through it waited for intakes to commit (+15 ms p50 in
    bench.intake). WAL readers neither wait for the writer nor hold it up; a read that finds
    the file busy anyway raises sqlite3.OperationalError, which the caller treats as the
    database not telling (memory only, this once)."""

    def __init__(self, uri: str) -> None:
        self._uri = uri
        self._conn: sqlite3.Connection | None = None

    def open_windows(self, places: Sequence[str], now: datetime) -> dict[str, datetime]:
        if not places:
            return {}
        if self._conn is None:
            self._conn = sqlite3.connect(self._uri, uri=True, check_same_thread=False)
            self._conn.execute("PRAGMA busy_timeout=0")
        marks = ",".join("?" * len(places))
        rows = self._conn.execute(
            f"SELECT place, blocked_until FROM place_windows WHERE place IN ({marks}) "
            "AND blocked_until > ?",
            (*places, now.astimezone(UTC).strftime(_SQLITE_TEXT)),
        ).fetchall()
        return {
            str(place): datetime.fromisoformat(str(until)).replace(tzinfo=UTC)
            for place, until in rows
        }

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
