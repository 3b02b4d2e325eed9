"""The prune of handled delivery ids (bot.retention, storage.inbound.prune) on both databases:
ids older than storage.inbound.KEEP go, in bounded batches, also with several processes
pruning at once; recent ones stay and still stop a repeat."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import event, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.retention import DeliveryPrune
from storage import db, inbound
from storage import tickets as repo
from storage.models import InboundDelivery, utcnow

KEEP = inbound.KEEP


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = db.create_engine(db_url)
    yield engine
    await engine.dispose()


async def store(engine: AsyncEngine, ages: dict[str, timedelta], now: datetime) -> None:
    """Delivery ids as if handled `ages[key]` before `now`."""
    async with engine.begin() as conn:
        await conn.execute(
            insert(InboundDelivery), [{"key": k, "at": now - age} for k, age in ages.items()]
        )


async def keys(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        found = await conn.execute(select(InboundDelivery.key).order_by(InboundDelivery.key))
        return [k for (k,) in found]


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bot.retention"]


async def test_ids_older_than_the_bound_are_pruned_and_recent_ones_kept(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.retention")
    now = utcnow()
    await store(
        engine,
        {
            "slack:view:V-YEAR:h": timedelta(days=400),
            "slack:command:t-old": KEEP + timedelta(minutes=1),
            "teams:a:1:edge": KEEP - timedelta(minutes=1),
            "slack:event:Ev-hour": timedelta(hours=1),
            "teams:a:1:now": timedelta(0),
        },
        now,
    )
    prune = DeliveryPrune(engine, clock=lambda: now)
    assert await prune.run() == 2
    assert await keys(engine) == ["slack:event:Ev-hour", "teams:a:1:edge", "teams:a:1:now"]
    [line] = lines(caplog)
    assert "pruned 2 delivery id(s)" in line
    # What is kept still stops a repeat; what went would be taken as new.
    sessions = db.session_factory(engine)
    async with sessions() as session, session.begin():
        assert not await repo.claim_delivery(session, "teams:a:1:edge")
        assert await inbound.seen(session, "slack:event:Ev-hour")
        assert not await inbound.seen(session, "slack:command:t-old")
    # Nothing old left: nothing deleted, nothing logged.
    assert await prune.run() == 0
    assert len(lines(caplog)) == 1


async def test_a_run_deletes_oldest_first_in_batches_of_its_own_transactions(
    engine: AsyncEngine,
) -> None:
    now = utcnow()
    old = {f"k{n:02}": KEEP + timedelta(hours=n + 1) for n in range(25)}
    await store(engine, {**old, "fresh": timedelta(minutes=5)}, now)
    commits: list[int] = []
    event.listen(engine.sync_engine, "commit", lambda conn: commits.append(1))

    async with engine.begin() as conn:
        assert await inbound.prune(conn, before=now - KEEP, limit=10) == 10
    # The ten handled longest ago (k24 ... k15) went first.
    assert await keys(engine) == ["fresh", *(f"k{n:02}" for n in range(15))]

    commits.clear()
    prune = DeliveryPrune(engine, batch=4, max_batches=2, clock=lambda: now)
    assert await prune.run() == 8  # stops after max_batches; the next run goes on
    assert len(commits) == 2
    assert await keys(engine) == ["fresh", *(f"k{n:02}" for n in range(7))]

    commits.clear()
    assert await DeliveryPrune(engine, batch=4, clock=lambda: now).run() == 7
    assert len(commits) == 2  # 4, then 3: a short batch ends the run
    assert await keys(engine) == ["fresh"]


async def test_several_processes_pruning_at_once_delete_each_id_once_and_fail_nothing(
    db_url: str, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.retention")
    now = utcnow()
    await store(engine, {f"old-{n:03}": KEEP + timedelta(seconds=n + 1) for n in range(300)}, now)
    await store(engine, {f"new-{n}": timedelta(hours=n) for n in range(3)}, now)
    # One engine each, as separate processes have.
    engines = [db.create_engine(db_url) for _ in range(3)]
    try:
        runs = [DeliveryPrune(e, batch=20, max_batches=100, clock=lambda: now) for e in engines]
        done = await asyncio.gather(*(run.run() for run in runs))
    finally:
        for each in engines:
            await each.dispose()
    assert sum(done) == 300, done
    assert await keys(engine) == ["new-0", "new-1", "new-2"]
    assert all("pruned" in line for line in lines(caplog)), lines(caplog)
