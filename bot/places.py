"""Where sends are held back: Retry-After windows and pacing, per place, in one object.

A place is where a platform throttles: a Slack channel for `chat.postMessage` (and a DM by its
user), a Slack Web API method for everything else, a Teams conversation, a pager, a PSA. When a
send to a place is refused with a Retry-After, nothing else goes to that place before the
window has passed: not the refused message, not other queued messages, not the bot's own
report about the delay. Posts to one Slack channel are also paced to about one per second,
with short bursts (Slack's documented limit), so a burst of P1 notices does not earn a string
of refusals. Every sender in the process (the outbox worker, Teams answers in the turn) asks
here first.

Windows are shared between processes through the database (storage.windows): a refusal's
window is written there, and a send first reads the windows of its places (one indexed read),
so a window one `serve` or `worker` learns holds every other process back too. Memory stays
the fast path for this process's own windows and for pacing (which is per process). When the
database cannot be read or written the windows in memory still hold (logged once per outage).
Shared windows are wall-clock UTC: processes on several hosts need their clocks in sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Hashable, Iterable
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from handlers.types import channel_of
from storage import sqlite_reader, windows
from storage.errors import is_unavailable
from storage.models import utcnow
from storage.outbox import retry_wait

log = logging.getLogger(__name__)
T = TypeVar("T")

# A read or write of the shared windows that has not answered by then is given up (memory
# only); after a failure the database is left alone for a while, so an outage costs no wait
# per send.
SHARED_TIMEOUT = 2.0
SHARED_PAUSE = 5.0

# Slack: "one message per second per channel, short bursts allowed".
SLACK_POST_INTERVAL = 1.0
SLACK_POST_BURST = 3


def slack_post(channel: str) -> str:
    return f"slack:post:{channel}"


def slack_dm(user: str) -> str:
    return f"slack:dm:{user}"


def slack_method(method: str) -> str:
    return f"slack:method:{method}"


def teams_conversation(conversation: str) -> str:
    # Teams limits a bot per thread ("a 1:1 chat, group chat or channel"): a reply chain in a
    # channel (`19:…@thread.tacv2;messageid=…`) is held with its channel.
    return f"teams:conversation:{channel_of(conversation)}"


def teams_user(user: str) -> str:
    return f"teams:user:{user}"


# A Retry-After as a window: at most an hour, as the outbox's own retries (a server asking
# for a week must not hold a place that long in every process and across restarts).
window_seconds = retry_wait


class SharedWindows:
    """The windows every process on the database sees (storage.windows), in seconds left."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        wall: Callable[[], datetime] = utcnow,
        clock: Callable[[], float] = time.monotonic,
        timeout: float = SHARED_TIMEOUT,
        pause: float = SHARED_PAUSE,
    ) -> None:
        self.engine = engine
        # A SQLite file is read through a read-only connection of its own (storage.sqlite_reader).
        self._reader = sqlite_reader.of(engine)
        # Real time, not a test's clock: a Retry-After is in real seconds.
        self._wall = wall
        self._clock = clock
        self._timeout = timeout
        self._pause = pause
        self._down_until: float | None = None  # set while the database does not answer
        # Calls given up on, ending in the background (see `_bounded`).
        self._abandoned: set[asyncio.Task[object]] = set()

    async def read(
        self,
        places: tuple[str, ...],
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> dict[str, float]:
        """Seconds left per place in a window some process wrote (open places left out);
        empty when the database cannot tell (memory only, then). `timeout`: a shorter bound
        than the configured one (an answer a person is waiting for)."""
        if not places or self._resting():
            return {}
        try:
            now = self._wall()
            if self._reader is not None:
                found = windows.open_windows_sqlite(self._reader, places=places, now=now)
            else:

                async def query() -> dict[str, datetime]:
                    async with self.engine.connect() as conn:
                        return await windows.open_windows(conn, places=places, now=now)

                bound = self._timeout if timeout is None else min(timeout, self._timeout)
                found = await self._bounded(query(), bound)
        except sqlite3.OperationalError as exc:
            # Busy for a moment, or the table is not there yet: this process's own windows.
            log.debug("Retry-After windows not read from SQLite: %s", exc)
            return {}
        except Exception as exc:
            self._failed("read", exc)
            return {}
        self._answered()
        return {place: (until - now).total_seconds() for place, until in found.items()}

    async def write(self, place: str, seconds: float) -> None:
        """Tell every process that nothing goes to `place` for `seconds`."""
        if self._resting():
            return

        async def hold() -> None:
            async with self.engine.begin() as conn:
                now = self._wall()
                until = now + timedelta(seconds=max(seconds, 0.0))
                await windows.hold(conn, place=place, until=until, now=now)

        try:
            await self._bounded(hold(), self._timeout)
        except Exception as exc:
            self._failed("written", exc)
            return
        self._answered()

    async def _bounded(self, work: Coroutine[object, object, T], seconds: float) -> T:
        """`work`, given up after `seconds` (TimeoutError) without waiting for it to end: a
        connection left silent by a partition takes the driver a few more seconds to drop
        once cancelled (2 s allowed were 4 s), and a person may be waiting for this send. The
        cancelled call ends in the background."""
        task = asyncio.ensure_future(work)
        try:
            done, _ = await asyncio.wait({task}, timeout=seconds)
        except asyncio.CancelledError:
            task.cancel()  # whoever waited is gone: the call goes too
            raise
        if task in done:
            return task.result()
        task.cancel()
        self._abandoned.add(task)
        task.add_done_callback(self._abandoned.discard)
        # Its end (cancelled, or an error from the dropped connection) is not "never retrieved".
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        raise TimeoutError(f"no answer within {seconds:.1f} s")

    def _resting(self) -> bool:
        return self._down_until is not None and self._clock() < self._down_until

    def _failed(self, doing: str, error: BaseException) -> None:
        # Never raised to the sender: a window that cannot be shared must not keep a delivery's
        # outcome from being recorded (the send was refused cleanly; it is not in doubt).
        if self._down_until is None:
            log.warning(
                "Retry-After windows cannot be %s in the database (%s); "
                "this process goes by its own until it answers",
                doing,
                type(error).__name__,
                exc_info=None if is_unavailable(error) else error,
            )
        self._down_until = self._clock() + self._pause

    def _answered(self) -> None:
        if self._down_until is not None:
            self._down_until = None
            log.info("Retry-After windows are shared through the database again")


class Places:
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        shared: SharedWindows | None = None,
    ) -> None:
        self._clock = clock
        self._shared = shared
        self._until: dict[str, float] = {}
        # Pacing, as a generic cell rate algorithm: the theoretical arrival time per place.
        self._arrival: dict[str, float] = {}
        # Slots handed out to rows that were put back to wait for them.
        self._slots: dict[Hashable, float] = {}
        # One send at a time per place: a lock, and how many sends hold or await it (the lock
        # is dropped when that falls to 0, so places sent to once are not kept for good).
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def block(self, place: str, seconds: float) -> None:
        """Nothing goes to `place` for `seconds` (a Retry-After); a longer window wins."""
        until = self._clock() + window_seconds(seconds)
        if until > self._until.get(place, 0.0):
            self._until[place] = until

    async def refused(self, place: str, seconds: float) -> None:
        """A send to `place` was refused with a Retry-After of `seconds`: nothing goes there
        from this process or any other until it has passed."""
        self.block(place, seconds)
        if self._shared is not None:
            await self._shared.write(place, window_seconds(seconds))

    async def learn(
        self,
        places: Iterable[str],
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> None:
        """Take in the windows other processes learned for `places` (one database read, given
        up after `timeout` when that is shorter than the configured bound)."""
        if self._shared is None:
            return
        for place, left in (await self._shared.read(tuple(places), timeout=timeout)).items():
            self.block(place, left)

    def blocked_for(self, place: str) -> float:
        """Seconds left in `place`'s Retry-After window (0 when open)."""
        until = self._until.get(place)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            del self._until[place]
            return 0.0
        return left

    def wait_for(self, places: Iterable[str], *, key: Hashable = None) -> float:
        """0 when a send to all of `places` may go now; else the seconds to wait.

        A paced send that has to wait is given a slot (its key remembers it), so sends queued
        together go one after the other instead of all coming back at the same moment."""
        places = tuple(places)
        if len(self._arrival) + len(self._until) + len(self._slots) > 10_000:
            self.forget_idle()
        wait = max((self.blocked_for(p) for p in places), default=0.0)
        if wait > 0:
            return wait
        now = self._clock()
        slot = self._slots.get(key) if key is not None else None
        if slot is not None:
            if slot > now:
                return slot - now
            del self._slots[key]
            return 0.0  # its turn: the slot was reserved when it was put back
        go_at = now
        for place in places:
            if _paced(place):
                arrival = max(self._arrival.get(place, now), now)
                go_at = max(go_at, arrival - (SLACK_POST_BURST - 1) * SLACK_POST_INTERVAL)
        for place in places:
            if _paced(place):
                arrival = max(self._arrival.get(place, go_at), go_at)
                self._arrival[place] = arrival + SLACK_POST_INTERVAL
        if go_at <= now:
            return 0.0
        if key is not None:
            self._slots[key] = go_at
        return go_at - now

    @contextlib.asynccontextmanager
    async def sending(self, places: Iterable[str]) -> AsyncIterator[None]:
        """One send at a time per place, so a Retry-After is known before the next one."""
        names = sorted(set(places))
        locks = []
        for name in names:
            lock, users = self._locks.get(name) or (asyncio.Lock(), 0)
            self._locks[name] = (lock, users + 1)
            locks.append(lock)
        try:
            async with contextlib.AsyncExitStack() as stack:
                for lock in locks:
                    await stack.enter_async_context(lock)
                yield
        finally:
            for name in names:
                lock, users = self._locks[name]
                if users > 1:
                    self._locks[name] = (lock, users - 1)
                else:
                    del self._locks[name]

    def forget_idle(self) -> None:
        """Drop places whose window and pacing are long over (keeps the maps small)."""
        now = self._clock()
        self._until = {p: u for p, u in self._until.items() if u > now}
        self._arrival = {p: a for p, a in self._arrival.items() if a > now}
        self._slots = {k: t for k, t in self._slots.items() if t > now - 300}


def _paced(place: str) -> bool:
    return place.startswith(("slack:post:", "slack:dm:"))
