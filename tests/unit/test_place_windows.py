"""Retry-After windows shared through the database (storage.windows, bot.places)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.places import Places, SharedWindows, slack_post, teams_conversation, teams_user
from storage import db, windows
from storage.errors import DatabaseUnavailable
from storage.models import PlaceWindow, utcnow

C1, C2 = slack_post("C0INCIDENT"), teams_conversation("19:incident@thread.tacv2")


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = db.create_engine(db_url)
    yield engine
    await engine.dispose()


class Flaky:
    """An engine whose database can be taken away."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine, self.down, self.calls = engine, False, 0

    def connect(self) -> Any:
        return self._check() or self.engine.connect()

    def begin(self) -> Any:
        return self._check() or self.engine.begin()

    def _check(self) -> None:
        self.calls += 1
        if self.down:
            raise DatabaseUnavailable("connection refused")


async def test_the_longer_window_wins_whoever_writes_last(engine: AsyncEngine) -> None:
    now = utcnow()
    async with engine.begin() as conn:
        await windows.hold(conn, place=C1, until=now + timedelta(seconds=30), now=now)
    async with engine.begin() as conn:
        await windows.hold(conn, place=C1, until=now + timedelta(seconds=5), now=now)
        await windows.hold(conn, place=C2, until=now + timedelta(seconds=5), now=now)
    async with engine.begin() as conn:
        found = await windows.open_windows(conn, places=[C1, C2, "slack:post:C0OTHER"], now=now)
    assert found == {C1: now + timedelta(seconds=30), C2: now + timedelta(seconds=5)}
    async with engine.begin() as conn:
        await windows.hold(conn, place=C2, until=now + timedelta(seconds=60), now=now)
        found = await windows.open_windows(conn, places=[C2], now=now)
    assert found == {C2: now + timedelta(seconds=60)}


async def test_windows_that_are_over_are_not_found_and_are_dropped(engine: AsyncEngine) -> None:
    now = utcnow()
    async with engine.begin() as conn:
        await windows.hold(conn, place=C1, until=now + timedelta(seconds=2), now=now)
    later = now + timedelta(seconds=3)
    async with engine.begin() as conn:
        assert await windows.open_windows(conn, places=[C1], now=later) == {}
        # Writing any window drops the ones that are over.
        await windows.hold(conn, place=C2, until=later + timedelta(seconds=1), now=later)
    async with engine.connect() as conn:
        places = (await conn.execute(select(PlaceWindow.place))).scalars().all()
    assert places == [C2]


async def test_a_window_one_process_learns_holds_the_other(engine: AsyncEngine) -> None:
    a, b = Places(shared=SharedWindows(engine)), Places(shared=SharedWindows(engine))
    await a.refused(C1, 8)
    assert a.wait_for([C1]) > 7
    assert b.wait_for([C1]) == 0  # not learned yet
    await b.learn([C1, C2])
    assert 7 < b.blocked_for(C1) <= 8
    assert b.blocked_for(C2) == 0
    # A shorter window later does not shorten it.
    await b.refused(C1, 1)
    c = Places(shared=SharedWindows(engine))
    await c.learn([C1])
    assert c.blocked_for(C1) > 7


async def test_an_outage_keeps_the_windows_in_memory_and_is_logged_once(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.places")
    flaky = Flaky(engine)
    clock = [100.0]
    shared = SharedWindows(flaky, clock=lambda: clock[0], pause=5.0)  # type: ignore[arg-type]
    places = Places(clock=lambda: clock[0], shared=shared)
    flaky.down = True
    await places.refused(C1, 30)  # cannot be written: this process still holds it
    assert places.blocked_for(C1) == 30
    await places.learn([C1])
    assert places.blocked_for(C1) == 30
    assert flaky.calls == 1  # the database is left alone for a while after a failure
    clock[0] += 6
    await places.learn([C1])
    await places.learn([C1])
    assert flaky.calls == 2
    assert places.blocked_for(C1) == 24
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert warnings[0].exc_info is None
    flaky.down = False
    clock[0] += 6
    await places.refused(C2, 10)
    assert "again" in caplog.records[-1].getMessage()
    async with engine.connect() as conn:
        count = await conn.scalar(select(func.count()).select_from(PlaceWindow))
    assert count == 1


async def test_an_unreachable_database_is_memory_only() -> None:
    engine = db.create_engine("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    try:
        places = Places(shared=SharedWindows(engine))
        await places.refused(C1, 10)
        await places.learn([C1, C2])
        assert 9 < places.blocked_for(C1) <= 10
        assert places.blocked_for(C2) == 0
    finally:
        await engine.dispose()


async def test_on_a_sqlite_file_a_read_does_not_wait_for_the_engines_connection(
    engine: AsyncEngine, db_url: str
) -> None:
    """SQLite has one pooled connection, held by whatever transaction runs (an intake): the
    read before a delivery goes through a read-only connection of its own, at once, instead
    of queueing behind it (bench.intake: +15 ms p50 when it queued)."""
    if not db_url.startswith("sqlite"):
        pytest.skip("PostgreSQL reads through its pool, which has room")
    await Places(shared=SharedWindows(engine)).refused(C1, 8)
    other = Places(shared=SharedWindows(engine, timeout=0.5))
    async with engine.begin():  # the only connection, held
        started = time.monotonic()
        await other.learn([C1])
        assert time.monotonic() - started < 0.1
    assert 7 < other.blocked_for(C1) <= 8


async def test_a_huge_or_broken_retry_after_is_an_hour_at_most(engine: AsyncEngine) -> None:
    """`Retry-After: 1e12` (or a week) must neither break the recording of the failed send
    (OverflowError in the window's timestamp) nor hold the place in every process, across
    restarts, for longer than the outbox's own longest retry (MAX_RETRY_AFTER, an hour)."""
    from bot.notifiers import retry_after_seconds
    from bot.places import window_seconds
    from storage.outbox import MAX_RETRY_AFTER

    a = Places(shared=SharedWindows(engine))
    huge = retry_after_seconds("1e12")
    assert huge is not None
    await a.refused(C1, huge)  # must not raise
    await a.refused(C2, 7 * 86400)
    fresh = Places(shared=SharedWindows(engine))  # a restarted process
    await fresh.learn((C1, C2))
    assert MAX_RETRY_AFTER - 5 < fresh.blocked_for(C1) <= MAX_RETRY_AFTER
    assert MAX_RETRY_AFTER - 5 < fresh.blocked_for(C2) <= MAX_RETRY_AFTER
    assert window_seconds(float("nan")) == 0.0 and window_seconds(-3) == 0.0
    assert window_seconds(float("inf")) == MAX_RETRY_AFTER


async def test_a_window_store_error_does_not_reach_the_sender(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    """Any failure to share a window (not only an outage) is logged and the process goes by
    its own windows: the sender's failed attempt is still recorded as a clean refusal."""

    class Broken:
        url = None

        def begin(self) -> Any:
            raise RuntimeError("a bug in the store")

        def connect(self) -> Any:
            raise RuntimeError("a bug in the store")

    places = Places(shared=SharedWindows(Broken()))  # type: ignore[arg-type]
    await places.refused(C1, 5)  # must not raise
    await places.learn([C1])
    assert 4 < places.blocked_for(C1) <= 5
    assert any("cannot be written" in r.getMessage() for r in caplog.records)


async def test_places_sent_to_once_are_not_kept_for_good() -> None:
    """A new Teams chat per requester (or per DM) is a new place: one send-lock each was kept
    for the life of the process (only Slack pacing ever triggered a clean-up, and Teams places
    are not paced), so memory grew with every ticket. Locks live while a send holds or awaits
    them; one send at a time per place still holds."""
    places = Places()
    for n in range(3000):
        chat = teams_conversation(f"a:1chat-{n}")
        async with places.sending([teams_user(f"29:1user-{n}"), chat]):
            assert places.wait_for([chat]) == 0
    assert len(places._locks) == 0

    # Still one at a time per place, also for a send that was waiting when the lock was let go.
    order: list[str] = []
    first_in = asyncio.Event()
    release = asyncio.Event()

    async def send(name: str, *, hold: bool = False) -> None:
        async with places.sending([C2]):
            order.append(f"{name} in")
            if hold:
                first_in.set()
                await release.wait()
            await asyncio.sleep(0)
            order.append(f"{name} out")

    first = asyncio.create_task(send("a", hold=True))
    await first_in.wait()
    second = asyncio.create_task(send("b"))
    await asyncio.sleep(0)
    release.set()
    await asyncio.sleep(0)  # the lock is let go; "b" has not run yet
    third = asyncio.create_task(send("c"))
    await asyncio.gather(first, second, third)
    assert order == ["a in", "a out", "b in", "b out", "c in", "c out"]
    assert len(places._locks) == 0
