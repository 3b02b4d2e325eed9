"""SQLite for SQLAlchemy's aiosqlite dialect, run on the event loop's own thread.

aiosqlite runs every cursor call on a helper thread: a statement is 3-4 thread hops (cursor,
execute, fetchall, close), which measured ~0.8 ms CPU per statement here, while the statement
itself (an indexed insert or look-up, WAL, `synchronous=NORMAL`: no fsync) takes microseconds.
This adapter gives the dialect aiosqlite's interface with coroutines that finish at once.

Two things could block the loop for real, and both are kept off it:
- A lock wait (another *process* holds SQLite's write lock, or a checkpoint truncating the
  WAL): statements run with `busy_timeout=0`; on SQLITE_BUSY the same statement is retried on
  a thread, in short slices up to the full timeout. Within one process the pool's single
  connection never waits.
- WAL checkpoints (they fsync): automatic checkpoints are off on this connection and
  `Checkpointer` runs them on a thread from its own connection.

What stays on the loop is the statements' own work, so queries on the request path must stay
indexed and bounded (they are: look-ups by key, lists with a LIMIT).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode
from urllib.request import pathname2url

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

log = logging.getLogger(__name__)

CHECKPOINT_EVERY_SECONDS = 1.0
# A WAL longer than this (frames of one page, 4 KiB by default: ~16 MiB) is truncated.
TRUNCATE_AFTER_FRAMES = 4096
# TRUNCATE holds the write lock while it waits for readers: wait briefly, and when a reader
# (a backup, another process) keeps it busy, leave the WAL alone for a while.
TRUNCATE_WAIT_MS = 100
TRUNCATE_BACKOFF_SECONDS = 30.0
# Lock waits run on a thread in slices this long, so a cancelled wait lets go of the
# connection within one slice.
WAIT_SLICE_MS = 50


def _locked(error: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY (extended codes included), by code rather than by text. Not SQLITE_LOCKED:
    that is a conflict inside one connection or shared cache, which no wait resolves."""
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == sqlite3.SQLITE_BUSY


class InlineCursor:
    """aiosqlite.Cursor's coroutine interface over a sqlite3 cursor."""

    def __init__(self, owner: InlineConnection, cursor: sqlite3.Cursor) -> None:
        self._owner = owner
        self._cursor = cursor

    async def execute(self, sql: str, parameters: Any = ()) -> InlineCursor:
        await self._owner.run(self._cursor.execute, sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> InlineCursor:
        rows = list(parameters)
        await self._owner.run(self._cursor.executemany, sql, rows)
        return self

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def close(self) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid


class _ImmediateQueue:
    """Stands in for aiosqlite's request queue (SQLAlchemy's isolation_level setter uses it)."""

    def put_nowait(self, item: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as error:  # handed to the awaiting caller, as aiosqlite does
            future.set_exception(error)


class InlineConnection:
    """aiosqlite.Connection's interface; statements run inline, lock waits on a thread."""

    def __init__(self, conn: sqlite3.Connection, *, busy_timeout_ms: int) -> None:
        self._conn = conn
        self._tx = _ImmediateQueue()
        self._busy_timeout_ms = busy_timeout_ms

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        try:
            return function(*args)
        except sqlite3.OperationalError as error:
            if not _locked(error):
                raise
        # Another process holds the write lock: wait for it off the event loop.
        log.debug("sqlite write lock busy; waiting on a thread")
        stop = threading.Event()
        waiting = asyncio.ensure_future(asyncio.to_thread(self._waiting, stop, function, *args))
        try:
            return await asyncio.shield(waiting)
        except asyncio.CancelledError:
            # The thread is still using the connection: closing it under the thread (which
            # SQLAlchemy does to a connection whose operation was cancelled) crashes the
            # interpreter. Tell the thread to stop and let it go (at most one slice) first.
            stop.set()
            while not waiting.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([waiting])
            if not waiting.cancelled():
                waiting.exception()  # retrieved: the caller gets the cancellation
            raise

    def _waiting(self, stop: threading.Event, function: Callable[..., Any], *args: Any) -> Any:
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        self._conn.execute(f"PRAGMA busy_timeout={WAIT_SLICE_MS}")
        try:
            while True:
                try:
                    return function(*args)
                except sqlite3.OperationalError as error:
                    if not _locked(error) or stop.is_set() or time.monotonic() >= deadline:
                        raise
        finally:
            self._conn.execute("PRAGMA busy_timeout=0")

    async def cursor(self) -> InlineCursor:
        return InlineCursor(self, self._conn.cursor())

    async def execute(self, sql: str, parameters: Any = ()) -> InlineCursor:
        cursor = await self.cursor()
        return await cursor.execute(sql, parameters)

    async def commit(self) -> None:
        await self.run(self._conn.commit)

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        self._conn.close()

    def stop(self) -> None:
        self._conn.close()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    @isolation_level.setter
    def isolation_level(self, value: Any) -> None:
        self._conn.isolation_level = value


def connect(database: str, *, uri: bool = False, busy_timeout_ms: int = 30_000) -> InlineConnection:
    """Open and set up a connection (blocking: call it from a thread, see `connect_async`)."""
    conn = sqlite3.connect(
        database, uri=uri, timeout=busy_timeout_ms / 1000, check_same_thread=False
    )
    cur = conn.cursor()
    # Switching to WAL needs the lock, so these wait (up to the timeout) like any writer.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA wal_autocheckpoint=0")
    # From here on statements never wait on the loop: see InlineConnection.run.
    cur.execute("PRAGMA busy_timeout=0")
    cur.close()
    return InlineConnection(conn, busy_timeout_ms=busy_timeout_ms)


async def connect_async(
    database: str, *, uri: bool = False, busy_timeout_ms: int = 30_000
) -> InlineConnection:
    """`connect` on a thread: opening may wait for another process's lock."""
    return await asyncio.to_thread(connect, database, uri=uri, busy_timeout_ms=busy_timeout_ms)


def on_disk(database: str, *, uri: bool) -> bool:
    """False for in-memory databases (nothing to checkpoint)."""
    if uri:
        return "mode=memory" not in database and not database.startswith("file::memory:")
    return database not in ("", ":memory:")


def url_args(url: URL) -> tuple[str, bool, Mapping[str, Any]]:
    """(database, uri, options) of an SQLite URL, as SQLAlchemy's dialect reads them (with
    `?uri=true` the URL's query belongs to the file's URI, which `url.database` leaves out)."""
    args, options = url.get_dialect()().create_connect_args(url)
    return str(args[0]), bool(options.get("uri")), options


def file_uri(database: str, *, uri: bool, mode: str) -> str:
    """A URI that opens the file `database` (as `connect` takes it) in `mode`, "rw" or "ro",
    but never creates it (a deleted file stays gone). A URI's own parameters stay, except its
    `mode` ("rwc" creates), which gives way to `mode`; a read-only URI stays read-only."""
    if not uri:
        return f"file:{pathname2url(database)}?mode={mode}"
    path, _, query = database.partition("#")[0].partition("?")
    params = parse_qsl(query, keep_blank_values=True)
    given = [value for key, value in params if key == "mode"]
    kept = [(key, value) for key, value in params if key != "mode"]
    return f"{path}?{urlencode([*kept, ('mode', 'ro' if 'ro' in given else mode)])}"


def _read_write_uri(database: str, *, uri: bool) -> str:
    """A URI that opens the file read-write but never creates it (a deleted file stays gone)."""
    return file_uri(database, uri=uri, mode="rw")


def ping_file(database: str, *, uri: bool, timeout: float) -> None:
    """Read the database file's schema on a connection of its own (blocking: call it from a
    thread). Raises sqlite3.Error when the file cannot be opened or read (deleted, unreadable,
    a disk error). Never creates the file."""
    conn = sqlite3.connect(_read_write_uri(database, uri=uri), uri=True, timeout=timeout)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    finally:
        conn.close()


class Checkpointer:
    """Copies the WAL back into the database file from a thread, so the fsync never runs on
    the event loop (the inline connections have automatic checkpoints off)."""

    def __init__(self, database: str, *, uri: bool = False) -> None:
        self._database = _read_write_uri(database, uri=uri)
        self._truncate_after = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start (or, after `stop`, restart) the thread; a no-op while it runs."""
        if self._thread is None or not self._thread.is_alive():
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._loop, args=(self._stop,), name="sqlite-checkpoint", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def checkpoint(self) -> str:
        """One checkpoint; returns the mode that did the work (PASSIVE, or TRUNCATE when the
        WAL had grown past the limit and could be cut)."""
        conn = sqlite3.connect(self._database, uri=True, timeout=TRUNCATE_WAIT_MS / 1000)
        try:
            # PASSIVE copies what no reader still needs and never waits on anyone.
            _, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if frames < TRUNCATE_AFTER_FRAMES or time.monotonic() < self._truncate_after:
                return "PASSIVE"
            # Under steady writes a WAL is only restarted when a writer finds it fully copied,
            # so it can keep growing: past the limit, copy the rest and truncate it. Writers
            # that find the lock busy meanwhile wait on their threads (InlineConnection.run),
            # for at most TRUNCATE_WAIT_MS.
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy:
                log.info(
                    "sqlite WAL has %s frames (%s copied) but a reader keeps it; "
                    "retrying in %.0f s",
                    frames,
                    copied,
                    TRUNCATE_BACKOFF_SECONDS,
                )
                self._truncate_after = time.monotonic() + TRUNCATE_BACKOFF_SECONDS
                return "PASSIVE"
            return "TRUNCATE"
        finally:
            conn.close()

    def _loop(self, stop: threading.Event) -> None:
        while not stop.wait(CHECKPOINT_EVERY_SECONDS):
            try:
                self.checkpoint()
            except sqlite3.Error:
                log.warning("sqlite checkpoint failed; will retry", exc_info=True)
