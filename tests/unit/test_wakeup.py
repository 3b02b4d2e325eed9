"""bot.wakeup: the SQLite watcher's looks never keep the engine's one connection from others."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text

from bot import wakeup
from storage import db


async def test_the_sqlite_watcher_hands_the_connection_back_before_anything_else_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watcher reads `PRAGMA data_version` every SQLITE_CHECK through the engine's one
    connection. Whatever else runs on the loop (an intake, a delivery) must never find it
    checked out by the watcher: it would wait for it. Sampled at every turn of the loop."""
    monkeypatch.setattr(wakeup, "SQLITE_CHECK", 0.01)
    url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    engine = db.create_engine(url)
    woken: list[int] = []
    watcher = wakeup.Wakeup(engine, url, wake=lambda: woken.append(1))
    pool = engine.sync_engine.pool
    held, turns = 0, 0
    try:
        # The connection is opened once (on a thread: held meanwhile); then looked at.
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        watcher.start()
        deadline = asyncio.get_running_loop().time() + 0.5
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0)
            turns += 1
            held += pool.checkedout()  # type: ignore[attr-defined]
        # It did look (a commit through another connection wakes it).
        other = db.create_engine(url)
        async with other.begin() as conn:
            await conn.execute(text("CREATE TABLE t (x INTEGER)"))
        await other.dispose()
        for _ in range(100):
            if woken:
                break
            await asyncio.sleep(0.01)
    finally:
        await watcher.stop()
        await engine.dispose()
    assert turns > 100
    assert held == 0, f"the watcher held the connection at {held} of {turns} turns"
    assert woken
