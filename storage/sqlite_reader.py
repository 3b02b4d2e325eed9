"""Reads of committed rows of a SQLite file through a read-only connection of its own.

The engine has one connection (storage.db), held by whatever transaction is running, so a
look-up on the path of every delivery or every change made through it waits for the intakes
in flight to commit (+15 ms p50 in bench.intake, for the Retry-After windows) and pays for a
pool checkout and a transaction around one SELECT. WAL readers neither wait for the writer nor
hold it up, and each SELECT here sees what was committed before it began. A read that finds
the file busy anyway (or the table missing) raises sqlite3.Error: callers fall back or treat
the database as not telling, each as its own rule says.

One reader per engine (`of`), on the event loop's thread like the engine's own inline
connection (storage.sqlite_inline); it goes with the engine.
"""

from __future__ import annotations

import sqlite3
import weakref
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import sqlite_inline

# SQLAlchemy's SQLite DATETIME text (UtcDateTime stores UTC): compared as text, in order.
SQLITE_TEXT = "%Y-%m-%d %H:%M:%S.%f"


class SqliteReader:
    """A read-only connection to one SQLite file, opened on first use."""

    def __init__(self, uri: str) -> None:
        self._uri = uri
        self._conn: sqlite3.Connection | None = None

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        if self._conn is None:
            self._conn = sqlite3.connect(self._uri, uri=True, check_same_thread=False)
            self._conn.execute("PRAGMA busy_timeout=0")
        return self._conn.execute(sql, params).fetchall()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def to_text(moment: datetime) -> str:
    """A moment as the column stores it (UTC text)."""
    return moment.astimezone(UTC).strftime(SQLITE_TEXT)


def from_text(stored: object) -> datetime:
    """A stored moment (UTC text) as an aware datetime."""
    return datetime.fromisoformat(str(stored)).replace(tzinfo=UTC)


def reader_for(engine: AsyncEngine) -> SqliteReader | None:
    """A new reader of `engine`'s SQLite file (None for PostgreSQL and in-memory SQLite)."""
    url = getattr(engine, "url", None)  # (a stand-in engine in tests may have none)
    if url is None or url.get_backend_name() != "sqlite":
        return None
    database, uri, _ = sqlite_inline.url_args(url)  # the file as the engine opens it
    if not sqlite_inline.on_disk(database, uri=uri):
        return None
    return SqliteReader(sqlite_inline.file_uri(database, uri=uri, mode="ro"))


_READERS: weakref.WeakKeyDictionary[Engine, SqliteReader | None] = weakref.WeakKeyDictionary()


def of(engine: AsyncEngine) -> SqliteReader | None:
    """The reader shared by everything reading `engine`'s SQLite file this way (None: not a
    SQLite file); closed when the engine is gone."""
    sync = getattr(engine, "sync_engine", None)
    if sync is None:  # (a stand-in engine in tests)
        return reader_for(engine)
    if sync not in _READERS:
        reader = _READERS[sync] = reader_for(engine)
        if reader is not None:
            # Closed with the engine's own connections (it opens again if the engine is used
            # after that), and when the engine is gone.
            event.listen(sync, "engine_disposed", lambda _: reader.close())
            weakref.finalize(sync, reader.close)
    return _READERS[sync]
