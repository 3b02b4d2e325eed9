"""Whether the database answers: a small probe, kept current for `/healthz` and for people.

While the database cannot be reached, `/ticket new` says so at once instead of opening a form
that could not be saved, and the log says it about once every 10 s (host and port, never the
password), not a traceback per request. The probe pings every few seconds (every second while
the database is away, so its return is noticed quickly); any request that meets the outage
(refused, reset) marks it at once. A failed ping drops the pooled connections not in use:
after a fail-over they would never answer, and each would cost its next caller a timeout.

A request that only ran out of time (its answer budget, the pool's wait) is not an outage by
itself: on a busy PostgreSQL server an intake can wait seconds for the ticket counter's row
lock that other intakes hold, and marking the database down then turned everyone away for up
to a probe interval, and dropped the idle connections, for a database that was answering. Such
a timeout asks for a ping now instead; the ping decides (a silent partition fails it within
PING_TIMEOUT).

The ping goes through the pool, so that a pooled connection a partition left silent is found
(its pre-ping gets no answer). But when every pooled connection is checked out (some thirty
intakes waiting on that row lock at once: busy, not down) a pooled ping only waited for one
to come back, ran out of PING_TIMEOUT and reported the database down: `/healthz` 503 and
everyone turned away while it answered. Then it runs on a connection of its own, outside the
pool (connect, SELECT 1, close, within PING_TIMEOUT; `storage.db.ping`). That connection goes
to the same address, so a server that is gone or a partition fails it too, also when the
pooled connections are all in use because they hang on that partition: an outage is still
reported within SPEC's bounds. After a fail-over it succeeds while the old connections wait
for their own timeouts, which is right: the database answers. One ping at a time: callers
meanwhile (the probe, every `/healthz`, the requests' timeouts) share its outcome, so at most
one connection is opened outside the pool.

SQLite on disk is pinged by reading the file on a connection of its own, on a thread, and
judged by that thread's outcome: the engine's one connection can be busy for seconds while the
event loop is starved (a loaded box), and a ping queued behind it, or a request past its answer
budget, said "the database cannot be reached" and turned `/ticket new` away although the file
was fine. For the same reason a timeout alone does not mark SQLite down (the next ping decides);
its errors (a file gone or unreadable, a disk error, a lock held too long) do, at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.logs import Every
from storage import db
from storage.errors import is_timeout_only

log = logging.getLogger(__name__)
PING_TIMEOUT = 3.0  # plus up to 2 s for the driver to drop a silent connection: < 10 s
INTERVAL_UP = 5.0
INTERVAL_DOWN = 1.0


def describe(error: BaseException) -> str:
    """One line about a database failure (never a URL: it could carry the password)."""
    orig = getattr(error, "orig", None) or error
    text = str(orig).splitlines()[0][:200] if str(orig) else ""
    name = type(orig).__name__
    return f"{name}: {text}" if text else name


class DatabaseMonitor:
    def __init__(
        self, engine: AsyncEngine, *, location: str, sqlite_file: tuple[str, bool] | None = None
    ) -> None:
        self.engine = engine
        self.sqlite_file = sqlite_file
        self._idle = db.IdleConnections(engine)
        # PostgreSQL: where a ping goes when every pooled connection is in use (`db.ping`).
        self._outside = db.unpooled(engine) if sqlite_file is None else None
        self.location = location
        self.available = True
        self._every = Every(10.0)
        self._task: asyncio.Task[None] | None = None
        # The ping under way, which every caller meanwhile awaits (`check`).
        self._pinging: asyncio.Task[bool] | None = None
        self._stopped = False

    async def check(self) -> bool:
        """Ping now; True when the database answered within PING_TIMEOUT. A ping already under
        way (the probe's, another `/healthz`, one a request's timeout asked for) is awaited
        instead of starting another: a burst of `/healthz` costs one connection, not one
        each (when the pool is exhausted, each would be a new one of its own)."""
        pinging = self._pinging
        if pinging is None or pinging.done():
            pinging = self._pinging = asyncio.get_running_loop().create_task(self._check())
        # Shielded: a caller that gives up (a client gone) does not cancel the others' ping.
        return await asyncio.shield(pinging)

    async def _check(self) -> bool:
        try:
            if self.sqlite_file is not None:
                database, uri = self.sqlite_file
                await db.ping_sqlite_file(database, uri=uri, timeout=PING_TIMEOUT)
            else:
                await db.ping(self.engine, timeout=PING_TIMEOUT, outside=self._outside)
        except Exception as exc:
            # The pooled connections may be as dead as this one (a partition, a fail-over):
            # those not in use are dropped, so the return is not met by stale ones.
            self._idle.drop()
            if self.sqlite_file is not None and is_timeout_only(exc):
                self._slow(exc)  # see the module docstring: the next ping decides
            else:
                self._down(exc)
            return False
        self.recovered()
        return True

    def trouble(self, error: BaseException) -> None:
        """The database failed someone: it is down until a ping says otherwise. A timeout
        alone is only slowness until a ping says more (see the module docstring)."""
        if is_timeout_only(error):
            self._slow(error)
            if self.sqlite_file is None:
                self._ping_now()
            return
        self._down(error)

    def _slow(self, error: BaseException) -> None:
        log.debug("the database was slow to answer (%s): left to a ping", describe(error))

    def _ping_now(self) -> None:
        """A ping started by a request's timeout (not awaited by it), unless one is under way."""
        if self._stopped or (self._pinging is not None and not self._pinging.done()):
            return  # stopped: nobody would await it, and the engine is being disposed
        with contextlib.suppress(RuntimeError):  # no running loop: the probe will ping
            self._pinging = asyncio.get_running_loop().create_task(self._check())

    def _down(self, error: BaseException) -> None:
        self.available = False
        held = self._every.due("database")
        if held is not None:
            more = f" ({held} more failure(s) since the last line)" if held else ""
            log.warning(
                "the database cannot be reached (%s): %s%s", self.location, describe(error), more
            )

    def recovered(self) -> None:
        if not self.available:
            log.info("the database answers again (%s)", self.location)
        self.available = True
        self._every.clear("database")

    def start(self) -> None:
        self._stopped = False
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._probe())

    async def stop(self) -> None:
        self._stopped = True
        if self._pinging is not None:
            self._pinging.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pinging
            self._pinging = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _probe(self) -> None:
        while True:
            await asyncio.sleep(INTERVAL_UP if self.available else INTERVAL_DOWN)
            await self.check()
