"""Engines and sessions: SQLite (WAL, one writer connection) or PostgreSQL (asyncpg)."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Mapping
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session
from sqlalchemy.pool import ConnectionPoolEntry, NullPool, QueuePool, StaticPool

from storage import inbound, sqlite_inline

log = logging.getLogger(__name__)

# Bounds on every PostgreSQL wait (SPEC: a call with no answer is given up within 10 s).
CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 10.0
POOL_TIMEOUT = 5.0
# PostgreSQL's pool: this many connections kept, this many more opened under load.
POOL_SIZE = 10
MAX_OVERFLOW = 20
IDLE_IN_TRANSACTION = 15.0
# SQLite's busy timeout when the URL sets none: a lock held by another process is waited
# for this long at most.
SQLITE_BUSY_TIMEOUT = 10.0


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    """Build the async engine; SQLite gets WAL, a single connection and inline statements.

    SQLite has one write lock: several pooled connections just fight over it (p99 in the
    hundreds of ms under load), so one connection serialises work without lock waits. Its
    statements run on the event loop's thread (see `storage.sqlite_inline`: aiosqlite's
    thread hops cost far more CPU than the statements), with checkpoints on a thread.
    """
    if is_sqlite(url):
        database, uri, options = _sqlite_args(url)
        # `?timeout=` in the URL is SQLite's busy timeout in seconds, as with aiosqlite.
        busy_ms = int(float(options.get("timeout", SQLITE_BUSY_TIMEOUT)) * 1000)

        async def connect() -> Any:
            return await sqlite_inline.connect_async(database, uri=uri, busy_timeout_ms=busy_ms)

        if not sqlite_inline.on_disk(database, uri=uri):
            # In-memory: one shared connection (the database lives in it), nothing to
            # checkpoint.
            return create_async_engine(url, echo=echo, async_creator=connect, poolclass=StaticPool)
        engine = create_async_engine(
            url,
            echo=echo,
            pool_size=1,
            max_overflow=0,
            pool_timeout=30,
            async_creator=connect,
        )
        checkpointer = sqlite_inline.Checkpointer(database, uri=uri)
        # Runs while the engine has connections: from the first one until dispose (an engine
        # used again after dispose starts it again).
        event.listen(engine.sync_engine, "connect", lambda *_: checkpointer.start())
        event.listen(engine.sync_engine, "engine_disposed", lambda _: checkpointer.stop())
        return engine
    return create_async_engine(
        url,
        echo=echo,
        pool_size=POOL_SIZE,
        max_overflow=MAX_OVERFLOW,
        # A connection left silent by a partition is found out before use and replaced.
        pool_pre_ping=True,
        pool_timeout=POOL_TIMEOUT,
        pool_recycle=1800,
        connect_args=_postgresql_connect_args(),
    )


def _postgresql_connect_args() -> dict[str, Any]:
    return {
        "timeout": CONNECT_TIMEOUT,
        # No database call waits longer than this for an answer (asyncpg gives up and the
        # connection is dropped); the server gives up on our statements too.
        "command_timeout": COMMAND_TIMEOUT,
        "server_settings": {
            "application_name": "helpdesk-bot",
            "statement_timeout": str(int(COMMAND_TIMEOUT * 1000)),
            # A client that vanished mid-transaction (killed, partitioned) must not keep
            # its row locks (the ticket counter) until TCP notices.
            "idle_in_transaction_session_timeout": str(int(IDLE_IN_TRANSACTION * 1000)),
        },
    }


def unpooled(engine: AsyncEngine) -> AsyncEngine | None:
    """An engine for the same PostgreSQL server, with the same bounds, that keeps no
    connection: each `connect()` opens one of its own and closes it at the end (see `ping`).
    None for SQLite."""
    if engine.dialect.name != "postgresql":
        return None
    return create_async_engine(
        engine.url, poolclass=NullPool, connect_args=_postgresql_connect_args()
    )


def pool_exhausted(engine: AsyncEngine) -> bool:
    """Whether every connection the PostgreSQL pool may have is checked out (in use, or being
    opened): a checkout now would wait for one to come back."""
    pool = engine.sync_engine.pool
    if engine.dialect.name != "postgresql" or not isinstance(pool, QueuePool):
        return False
    return pool.checkedout() >= POOL_SIZE + MAX_OVERFLOW


class IdleConnections:
    """The PostgreSQL connections resting in the pool, to drop when the database stops
    answering.

    After a partition or a fail-over the pooled connections may never answer again (no RST
    comes): each would hold up the next caller for a ping timeout before being replaced, one
    after the other. A connection that is not in use serves nobody, so dropping it when a
    probe finds the database away costs at most a reconnect, and the first caller after the
    return gets a fresh connection. Connections in use are left to their own timeouts.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._idle: weakref.WeakSet[ConnectionPoolEntry] = weakref.WeakSet()
        if engine.dialect.name != "postgresql":
            return  # SQLite: one local file, nothing to go silent
        pool = engine.sync_engine.pool
        event.listen(pool, "checkin", self._checked_in)
        event.listen(pool, "checkout", self._checked_out)
        event.listen(pool, "invalidate", self._gone)
        event.listen(pool, "close", self._gone)

    def _checked_in(self, dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        if dbapi_connection is not None:
            self._idle.add(record)

    def _checked_out(self, _dbapi: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        self._idle.discard(record)

    def _gone(self, _dbapi: Any, record: ConnectionPoolEntry, *_: Any) -> None:
        self._idle.discard(record)

    def drop(self) -> int:
        """Close every idle connection at once (no goodbye to a server that may not answer);
        the pool opens new ones on demand. Returns how many were dropped."""
        dropped = 0
        for record in list(self._idle):
            self._idle.discard(record)
            driver = record.driver_connection
            if driver is None:
                continue
            driver.terminate()  # asyncpg: closes the socket without waiting for the server
            # Replaced on its next checkout, without a ping (it would fail anyway).
            record.invalidate(soft=True)
            dropped += 1
        return dropped


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions on their own Session subclass, so commit hooks stay per app (and per test)."""
    session_cls = type("HelpdeskSession", (Session,), {})
    inbound.install(session_cls)
    return async_sessionmaker(engine, expire_on_commit=False, sync_session_class=session_cls)


def sqlite_file(url: str) -> tuple[str, bool] | None:
    """(database, uri) of an SQLite database on disk, as `sqlite_inline` takes them; None for
    another database or an in-memory one."""
    if not is_sqlite(url):
        return None
    database, uri, _ = _sqlite_args(url)
    return (database, uri) if sqlite_inline.on_disk(database, uri=uri) else None


def _sqlite_args(url: str) -> tuple[str, bool, Mapping[str, Any]]:
    """(database, uri, options) of an SQLite URL, as the dialect reads them."""
    return sqlite_inline.url_args(make_url(url))


async def ping_sqlite_file(database: str, *, uri: bool, timeout: float) -> None:  # noqa: ASYNC109
    """Raise if the SQLite file cannot be read (sqlite3.Error), or TimeoutError when reading it
    took longer than `timeout` on its thread. Judged by the thread's outcome, not by when this
    coroutine gets to run again: a busy event loop is not a database that does not answer."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    done = loop.run_in_executor(
        None, lambda: sqlite_inline.ping_file(database, uri=uri, timeout=timeout)
    )
    finished, _ = await asyncio.wait({done}, timeout=timeout)
    if not finished:
        raise TimeoutError(f"the SQLite file was not read within {loop.time() - started:.1f} s")
    done.result()


async def ping(
    engine: AsyncEngine,
    *,
    timeout: float | None = None,  # noqa: ASYNC109
    outside: AsyncEngine | None = None,
) -> None:
    """Raise if the database cannot answer a trivial query (TimeoutError after `timeout`).

    Through `engine`'s pool, so a pooled connection left silent by a partition is found (its
    pre-ping, or the query, gets no answer). When every pooled connection is checked out, a
    checkout would only wait for one to come back: on a busy server that is answering (say
    thirty intakes queued on the ticket counter's row lock) that wait outlasted `timeout`
    and a healthy database was reported down. Then, given `outside` (`unpooled`), the ping
    runs on a connection of its own instead: connect, SELECT 1, close, all within `timeout`.
    It goes to the same address, so a partition or a server that is gone fails it as well.
    A server that refuses a new connection for having too many (its `max_connections`, or
    the role's or database's limit: the pool's own connections may be what fills it) while
    the bot holds connections of its own that work has answered: it is up, and busy.
    """
    global _full_said_at
    target = outside if outside is not None and pool_exhausted(engine) else engine
    async with asyncio.timeout(timeout):
        try:
            async with target.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:
            # Through the pool, only while the bot holds connections that work: with none at
            # all it can serve nothing, and /healthz must say so (SPEC: 503 when the database
            # refuses connections).
            if not server_full(exc) or (target is engine and not _in_use(engine)):
                raise
            now = time.monotonic()
            if _full_said_at is None or now - _full_said_at >= FULL_SAID_EVERY:
                _full_said_at = now
                log.warning(
                    "database ping: the server is up but refuses more connections (%s): raise "
                    "its max_connections or lower the bot's pool",
                    str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
                )


# A server refusing connections for having too many is said once a minute at most.
FULL_SAID_EVERY = 60.0
_full_said_at: float | None = None


def _in_use(engine: AsyncEngine) -> bool:
    pool = engine.sync_engine.pool
    return isinstance(pool, QueuePool) and pool.checkedout() > 0


def server_full(error: BaseException) -> bool:
    """Whether `error` is PostgreSQL refusing a connection for having too many (SQLSTATE
    53300: `max_connections`, or a role's or database's CONNECTION LIMIT)."""
    seen: BaseException | None = error
    for _ in range(8):  # the driver's error, under SQLAlchemy's wrappers
        if seen is None:
            return False
        if getattr(seen, "sqlstate", None) == "53300":
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__
    return False


def server_address(url: str) -> str | None:
    """`host:port` of a database server (PostgreSQL's default port when none is written);
    None for SQLite. Never the password."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return None
    socket_dir = parsed.query.get("host")
    host = parsed.host or (socket_dir if isinstance(socket_dir, str) else None) or "localhost"
    return f"{host}:{parsed.port or 5432}"


def location(url: str) -> str:
    """Where the database is, for log lines: host and port, or the file; never a password."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"SQLite file {parsed.database or ':memory:'}"
    return f"PostgreSQL at {server_address(url)}/{parsed.database}"
