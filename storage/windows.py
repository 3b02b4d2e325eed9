"""Retry-After windows shared by every process on the database, one row per place.

bot.places keeps each process's windows in memory; this is where a window one process learns
from a refusal is found by the others. A row is written when a send is refused with a
Retry-After (the longer window wins) and read before a send; rows whose window is over are
deleted when a window is written, so the table holds only the places throttled now.

These take a Connection, not a Session: the read runs before every delivery, and a plain
connection costs about half the CPU of a session's transaction around the same SELECT.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from storage import sqlite_reader, statements
from storage.models import PlaceWindow
from storage.sqlite_reader import SqliteReader

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


def open_windows_sqlite(
    reader: SqliteReader, *, places: Sequence[str], now: datetime
) -> dict[str, datetime]:
    """`open_windows` through a SQLite file's reader of its own (storage.sqlite_reader): an
    intake in flight on the engine's one connection is not waited for."""
    if not places:
        return {}
    marks = ",".join("?" * len(places))
    rows = reader.rows(
        f"SELECT place, blocked_until FROM place_windows WHERE place IN ({marks}) "
        "AND blocked_until > ?",
        (*places, sqlite_reader.to_text(now)),
    )
    return {str(place): sqlite_reader.from_text(until) for place, until in rows}
