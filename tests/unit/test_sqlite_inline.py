"""The inline SQLite adapter: lock waits off the loop, errors, busy timeout, checkpoints."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.request import pathname2url

import pytest
import sqlalchemy.exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import db, sqlite_inline

CREATE = "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, payload TEXT)"


class Ticker:
    """Counts how often the event loop gets to run a 5 ms sleep while something else waits."""

    def __init__(self) -> None:
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(0.005)
            self.ticks += 1

    def __enter__(self) -> Ticker:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records each thread hop the adapter makes (it waits for locks via asyncio.to_thread)."""
    calls: list[str] = []
    real = asyncio.to_thread

    async def spy(function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        calls.append(getattr(function, "__name__", repr(function)))
        return await real(function, *args, **kwargs)

    monkeypatch.setattr(sqlite_inline.asyncio, "to_thread", spy)
    return calls


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "inline.db")


@pytest.fixture
async def engine(path: str) -> AsyncIterator[AsyncEngine]:
    engine = db.create_engine(f"sqlite+aiosqlite:///{path}")
    async with engine.begin() as conn:
        await conn.execute(text(CREATE))
    yield engine
    await engine.dispose()


@pytest.fixture
def writer(path: str) -> Iterator[sqlite3.Connection]:
    """Another process's writer: a plain connection holding SQLite's write lock."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO items (name) VALUES ('other')")
    yield conn
    conn.close()


async def _names(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        result = await conn.execute(text("SELECT name FROM items ORDER BY name"))
        return list(result.scalars())


async def test_lock_held_elsewhere_is_waited_for_off_the_loop(
    engine: AsyncEngine, writer: sqlite3.Connection, hops: list[str]
) -> None:
    # Released from a thread: if the adapter blocked the loop, a loop callback could not run.
    release = threading.Timer(0.3, writer.commit)
    start = time.monotonic()
    release.start()
    try:
        with Ticker() as ticker:
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO items (name) VALUES ('mine')"))
        elapsed = time.monotonic() - start
    finally:
        release.join()
    assert elapsed >= 0.25
    assert elapsed < 5
    assert ticker.ticks >= 20, f"the loop ran only {ticker.ticks} ticks during the lock wait"
    assert hops == ["_waiting"]
    assert await _names(engine) == ["mine", "other"]


async def test_uncontended_write_runs_inline_without_a_thread(
    engine: AsyncEngine, hops: list[str]
) -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def where(value: str) -> str:
        seen.append(threading.get_ident())
        return value

    async with engine.begin() as conn:
        raw = await conn.get_raw_connection()
        await raw.driver_connection.create_function("where_am_i", 1, where)
        await conn.execute(text("INSERT INTO items (name) VALUES (where_am_i('mine'))"))
    assert hops == []
    assert seen == [loop_thread]
    assert await _names(engine) == ["mine"]


async def test_constraint_violation_raises_and_engine_stays_usable(
    engine: AsyncEngine, hops: list[str]
) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO items (name) VALUES ('a')"))
    with pytest.raises(sqlalchemy.exc.IntegrityError, match="UNIQUE"):
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO items (name) VALUES ('b')"))
            await conn.execute(text("INSERT INTO items (name) VALUES ('a')"))
    # The failed transaction was rolled back ('b' is gone) and the connection still works.
    assert await _names(engine) == ["a"]
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO items (name) VALUES ('c')"))
    assert await _names(engine) == ["a", "c"]
    assert hops == []


async def test_syntax_error_raises_and_engine_stays_usable(
    engine: AsyncEngine, hops: list[str]
) -> None:
    with pytest.raises(sqlalchemy.exc.OperationalError, match="syntax error"):
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO items (name) VALUES ('x')"))
            await conn.execute(text("INSERT INTO items VALUE"))
    assert await _names(engine) == []
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO items (name) VALUES ('y')"))
    assert await _names(engine) == ["y"]
    assert hops == []


async def test_lock_wait_gives_up_after_busy_timeout(
    path: str, engine: AsyncEngine, writer: sqlite3.Connection
) -> None:
    conn = sqlite_inline.connect(path, busy_timeout_ms=200)
    try:
        start = time.monotonic()
        with Ticker() as ticker, pytest.raises(sqlite3.OperationalError, match="locked"):
            await asyncio.wait_for(conn.execute("INSERT INTO items (name) VALUES ('mine')"), 5)
        elapsed = time.monotonic() - start
        await conn.rollback()
        # The connection went back to failing at once (busy_timeout=0) for the inline try.
        assert (await (await conn.execute("PRAGMA busy_timeout")).fetchone()) == (0,)
    finally:
        await conn.close()
    assert 0.15 <= elapsed < 2, elapsed
    assert ticker.ticks >= 10


async def test_inline_connection_commits_once_the_lock_is_released(
    path: str, engine: AsyncEngine, writer: sqlite3.Connection
) -> None:
    conn = sqlite_inline.connect(path, busy_timeout_ms=5_000)
    release = threading.Timer(0.1, writer.rollback)
    release.start()
    try:
        await conn.execute("INSERT INTO items (name) VALUES ('mine')")
        await conn.commit()
    finally:
        release.join()
        await conn.close()
    assert await _names(engine) == ["mine"]


def _main_file_rows(path: str, *, polling: bool = False) -> int | None:
    """Rows in the database file itself, ignoring the WAL (None: the table is not there yet;
    `polling`: also when the read met a checkpoint writing the file: `immutable` reads take
    no lock, so they may see its pages half-copied, "database disk image is malformed")."""
    uri = f"file:{pathname2url(path)}?mode=ro&immutable=1"
    conn = sqlite3.connect(uri, uri=True)
    try:
        return conn.execute("SELECT count(*) FROM items").fetchone()[0]
    except sqlite3.OperationalError as error:
        assert "no such table" in str(error)
        return None
    except sqlite3.DatabaseError as error:
        if not polling or "malformed" not in str(error):
            raise
        return None
    finally:
        conn.close()


def _wal_size(path: str) -> int:
    return Path(f"{path}-wal").stat().st_size


async def _fill_wal(engine: AsyncEngine, rows: int) -> None:
    """Create the table and write `rows` rows of 1.5 kB in one transaction."""
    async with engine.begin() as conn:
        await conn.execute(text(CREATE))
    values = [{"name": f"n{i}", "payload": "x" * 1500} for i in range(rows)]
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO items (name, payload) VALUES (:name, :payload)"), values
        )


async def test_checkpointer_copies_the_wal_into_the_database_file(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Keep the background thread out of the way; this test calls checkpoint() itself.
    monkeypatch.setattr(sqlite_inline, "CHECKPOINT_EVERY_SECONDS", 3600.0)
    engine = db.create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.begin() as conn:
            assert (await conn.execute(text("PRAGMA wal_autocheckpoint"))).scalar() == 0
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        # ~6 MB: well past SQLite's default autocheckpoint of 1000 pages.
        await _fill_wal(engine, 4000)
        assert _wal_size(path) > 4_000_000
        assert _main_file_rows(path) is None  # nothing checkpointed automatically

        assert sqlite_inline.Checkpointer(path).checkpoint() == "PASSIVE"

        assert _main_file_rows(path) == 4000
        async with engine.connect() as conn:
            count = (await conn.execute(text("SELECT count(*) FROM items"))).scalar()
        assert count == 4000
    finally:
        await engine.dispose()


async def test_background_checkpointer_runs_on_its_own(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_inline, "CHECKPOINT_EVERY_SECONDS", 0.05)
    engine = db.create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.begin() as conn:
            await conn.execute(text(CREATE))
            await conn.execute(text("INSERT INTO items (name) VALUES ('a')"))
        for _ in range(150):  # up to ~3 s; it should take about one 50 ms period
            if _main_file_rows(path, polling=True) == 1:
                break
            await asyncio.sleep(0.02)
        assert _main_file_rows(path) == 1
    finally:
        await engine.dispose()


async def test_a_long_wal_is_truncated(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Steady writes never let SQLite restart the WAL by itself: past the limit it is cut."""
    monkeypatch.setattr(sqlite_inline, "CHECKPOINT_EVERY_SECONDS", 3600.0)
    monkeypatch.setattr(sqlite_inline, "TRUNCATE_AFTER_FRAMES", 200)
    engine = db.create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await _fill_wal(engine, 1000)
        assert _wal_size(path) > 1_000_000
        assert sqlite_inline.Checkpointer(path).checkpoint() == "TRUNCATE"
        assert _wal_size(path) == 0
        assert _main_file_rows(path) == 1000
        # The engine's connection carries on writing into the fresh WAL.
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO items (name) VALUES ('after')"))
        assert len(await _names(engine)) == 1001
    finally:
        await engine.dispose()


async def test_a_reader_pinning_the_wal_delays_truncation_without_stalling_writes(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long reader elsewhere (a backup, another process) keeps the WAL: the checkpointer
    waits only briefly with the write lock held, then leaves the WAL alone for a while."""
    monkeypatch.setattr(sqlite_inline, "CHECKPOINT_EVERY_SECONDS", 3600.0)
    monkeypatch.setattr(sqlite_inline, "TRUNCATE_AFTER_FRAMES", 200)
    engine = db.create_engine(f"sqlite+aiosqlite:///{path}")
    reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        await _fill_wal(engine, 1000)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM items").fetchone()  # holds its snapshot
        checkpointer = sqlite_inline.Checkpointer(path)
        started = time.monotonic()
        assert checkpointer.checkpoint() == "PASSIVE"  # could not truncate
        assert time.monotonic() - started < 1.0
        started = time.monotonic()
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO items (name) VALUES ('during')"))
        assert time.monotonic() - started < 0.5
        # Backing off: the next tick does not take the write lock again.
        assert checkpointer.checkpoint() == "PASSIVE"
        reader.execute("COMMIT")
        monkeypatch.setattr(checkpointer, "_truncate_after", 0.0)
        assert checkpointer.checkpoint() == "TRUNCATE"
        assert _wal_size(path) == 0
    finally:
        reader.close()
        await engine.dispose()


def test_checkpointer_never_creates_a_database(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    with pytest.raises(sqlite3.OperationalError):
        sqlite_inline.Checkpointer(str(missing)).checkpoint()
    assert not missing.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("query", ["", "?mode=rwc", "?cache=private&mode=rwc"])
def test_neither_checkpoints_nor_pings_create_a_database_named_by_a_uri(
    tmp_path: Path, query: str
) -> None:
    """A `file:` URI (DATABASE_URL `?uri=true`), with or without a mode of its own, is opened
    read-write but never created: a deleted file stays gone, and the health check sees it."""
    database = f"file:{pathname2url(str(tmp_path / 'missing.db'))}{query}"
    with pytest.raises(sqlite3.OperationalError):
        sqlite_inline.Checkpointer(database, uri=True).checkpoint()
    with pytest.raises(sqlite3.OperationalError):
        sqlite_inline.ping_file(database, uri=True, timeout=1.0)
    assert list(tmp_path.iterdir()) == []


def _checkpoint_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "sqlite-checkpoint"}


async def test_checkpointer_runs_from_first_connection_until_dispose_and_again(path: str) -> None:
    before = _checkpoint_threads()
    engine = db.create_engine(f"sqlite+aiosqlite:///{path}")
    assert not (_checkpoint_threads() - before)  # nothing to checkpoint before a connection
    async with engine.begin() as conn:
        await conn.execute(text(CREATE))
    started = _checkpoint_threads() - before
    assert len(started) == 1
    (thread,) = started
    assert thread.is_alive()
    await engine.dispose()
    assert not thread.is_alive()
    assert not (_checkpoint_threads() - before)
    # An engine used after dispose opens a new connection; its WAL needs checkpoints again.
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO items (name) VALUES ('x')"))
    assert len(_checkpoint_threads() - before) == 1
    await engine.dispose()
    assert not (_checkpoint_threads() - before)


async def test_in_memory_engine_works_and_starts_no_checkpointer() -> None:
    before = _checkpoint_threads()
    engine = db.create_engine("sqlite+aiosqlite:///:memory:")
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar() == 1
        assert not (_checkpoint_threads() - before)
    finally:
        await engine.dispose()


CANCELLED_WAIT = """
import asyncio, sqlite3, sys
from storage import sqlite_inline

async def main(path):
    setup = sqlite3.connect(path)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    setup.commit()
    setup.close()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t VALUES (1)")
    conn = await sqlite_inline.connect_async(path, busy_timeout_ms=5000)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        await asyncio.wait_for(conn.execute("INSERT INTO t VALUES (2)"), 0.2)
    except TimeoutError:
        pass
    waited = loop.time() - started
    await conn.close()
    other.rollback()
    print("closed after", round(waited, 3))
    assert waited < 1.0, waited

asyncio.run(main(sys.argv[1]))
"""


def test_cancelled_lock_wait_lets_go_of_the_connection(tmp_path: Path) -> None:
    """A wait cancelled by a timeout ends its thread before anyone closes the connection
    (closing it under the thread crashed the interpreter). Own process: a crash is a fail."""
    done = subprocess.run(
        [sys.executable, "-c", CANCELLED_WAIT, str(tmp_path / "c.db")],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "closed after" in done.stdout


def test_on_disk() -> None:
    assert sqlite_inline.on_disk(":memory:", uri=False) is False
    assert sqlite_inline.on_disk("", uri=False) is False
    assert sqlite_inline.on_disk("file:x?mode=memory", uri=True) is False
    assert sqlite_inline.on_disk("file::memory:?cache=shared", uri=True) is False
    assert sqlite_inline.on_disk("/tmp/helpdesk.db", uri=False) is True
    assert sqlite_inline.on_disk("helpdesk.db", uri=False) is True
    assert sqlite_inline.on_disk("file:/tmp/helpdesk.db?mode=rwc", uri=True) is True
