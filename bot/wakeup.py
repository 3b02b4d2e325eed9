"""Waking the outbox worker when another process queued rows, instead of waiting for a poll.

In one process a commit wakes the worker directly (storage.outbox.on_enqueue_commit). A web
process and separate workers (the Procfile's split) need a signal across processes:
- PostgreSQL: the queuing transaction sends NOTIFY (storage.outbox); each worker holds one
  connection that LISTENs, reconnecting when it is lost. A P1 closed a moment after it was
  opened is therefore paged (or not) by what the worker sees right away, not half a second on.
- SQLite (one host): `PRAGMA data_version` changes whenever another connection commits; the
  worker reads it every 100 ms (an in-memory counter: no disk I/O) and wakes when it moved.
The worker's regular poll stays as the fallback for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.logs import Every
from storage import db
from storage.errors import is_unavailable
from storage.outbox import WAKEUP_CHANNEL

log = logging.getLogger(__name__)
SQLITE_CHECK = 0.1
LISTEN_KEEPALIVE = 5.0


class Wakeup:
    def __init__(self, engine: AsyncEngine, database_url: str, wake: Callable[[], None]) -> None:
        self.engine = engine
        self.wake = wake
        self.sqlite = db.is_sqlite(database_url)
        self._task: asyncio.Task[None] | None = None
        self._every = Every(10.0)

    def start(self) -> None:
        if self._task is None:
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._watch() if self.sqlite else self._listen())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _watch(self) -> None:
        """SQLite: wake when another connection committed since the last look."""
        seen: int | None = None
        while True:
            await asyncio.sleep(SQLITE_CHECK)
            try:
                version = await self._data_version()
            except Exception as exc:
                self._trouble(exc)
                continue
            if seen is not None and version != seen:
                self.wake()
            seen = version

    async def _data_version(self) -> int:
        """SQLite's data_version, read through the engine's connection (whose own commits do
        not move it) and handed back before anything else runs: `async with` would close it
        in a task of its own (SQLAlchemy's cancel-safe close), and every intake and delivery
        that came meanwhile would wait for that task on the engine's one connection (seen:
        about a dozen waits per look at c=8). An inline SQLite close cannot be interrupted:
        it never yields."""
        conn = await self.engine.connect()
        try:
            return int((await conn.execute(text("PRAGMA data_version"))).scalar_one())
        finally:
            await conn.close()

    async def _listen(self) -> None:
        """PostgreSQL: LISTEN on one connection of our own; reconnect when it is lost."""
        while True:
            try:
                async with self.engine.connect() as conn:
                    raw = await conn.get_raw_connection()
                    listener = raw.driver_connection
                    assert listener is not None
                    await listener.add_listener(WAKEUP_CHANNEL, lambda *_: self.wake())
                    self.wake()  # whatever was queued while we were not listening
                    log.debug("outbox wake-up: listening on %s", WAKEUP_CHANNEL)
                    while True:
                        await asyncio.sleep(LISTEN_KEEPALIVE)
                        # A silent connection would miss notifications: ping it.
                        await asyncio.wait_for(listener.fetchval("SELECT 1"), LISTEN_KEEPALIVE)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._trouble(exc)
                await asyncio.sleep(1.0)

    def _trouble(self, error: BaseException) -> None:
        if not is_unavailable(error):
            log.warning("outbox wake-up failed: %s", type(error).__name__)
            return
        held = self._every.due("wakeup")
        if held is not None:
            log.info("outbox wake-up: the database cannot be reached; polling meanwhile")
