"""Two processes migrating one fresh database at once (SPEC "Running": SQLite is migrated by
`serve` and `worker` on start, and the Procfile starts them together): one migrates, the other
waits for it and finds the schema current. Found by a review: the loser crashed (exit 1, a
traceback: `table alembic_version already exists` on SQLite, a `pg_type` unique violation on
PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from storage import db
from storage.migrate import (
    ADVISORY_LOCK_KEY,
    MigrationBusy,
    current_revisions,
    head_revisions,
    upgrade,
)
from tests.unit.test_cli import ROOT

REPETITIONS = 3


async def _migrate(url: str, cwd: Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "migrate", cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": url, "LOG_LEVEL": "INFO"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode if process.returncode is not None else -1, out.decode()


async def _both_migrate(url: str, cwd: Path) -> None:
    results = await asyncio.gather(_migrate(url, cwd), _migrate(url, cwd))
    for code, out in results:
        assert code == 0, out
        assert "Traceback" not in out, out
    engine = db.create_engine(url)
    try:
        assert await current_revisions(engine) == head_revisions()
    finally:
        await engine.dispose()
    logs = "\n".join(out for _, out in results)
    assert logs.count("database schema upgraded from revision none") == 1, logs
    assert "nothing to do" in logs, logs


async def test_two_migrations_at_once_on_a_fresh_sqlite_file(tmp_path: Path) -> None:
    for i in range(REPETITIONS):
        await _both_migrate(f"sqlite+aiosqlite:///{tmp_path / f'fresh-{i}.db'}", tmp_path)


async def test_two_migrations_at_once_on_a_fresh_postgresql_database(
    pg_migrated: str, tmp_path: Path
) -> None:
    admin = create_async_engine(pg_migrated, isolation_level="AUTOCOMMIT")
    try:
        for _ in range(REPETITIONS):
            name = f"helpdesk_race_{secrets.token_hex(4)}"
            async with admin.connect() as conn:
                await conn.execute(text(f'CREATE DATABASE "{name}"'))
            try:
                url = make_url(pg_migrated).set(database=name)
                await _both_migrate(url.render_as_string(hide_password=False), tmp_path)
            finally:
                async with admin.connect() as conn:
                    await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


# -- the lock itself, in one process ----------------------------------------------------------


async def _hold_the_lock(url: str, conn: AsyncConnection) -> None:
    if db.is_sqlite(url):
        await conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK_KEY})


async def test_a_migration_waits_for_the_one_holding_the_lock(empty_url: str) -> None:
    holder = db.create_engine(empty_url)
    engine = db.create_engine(empty_url)
    try:
        async with holder.connect() as conn:
            await _hold_the_lock(empty_url, conn)
            waiting = asyncio.ensure_future(upgrade(engine))
            await asyncio.sleep(1.0)
            assert not waiting.done(), waiting.result()
            await conn.rollback()  # the other process is done
            before, after = await asyncio.wait_for(waiting, 30)
        assert (before, after) == ((), head_revisions())
        assert await upgrade(engine) == (head_revisions(), head_revisions())
    finally:
        await engine.dispose()
        await holder.dispose()


async def test_a_lock_held_too_long_is_one_line_not_a_traceback(empty_url: str) -> None:
    url = empty_url + ("?timeout=0.2" if db.is_sqlite(empty_url) else "")
    holder = db.create_engine(url)
    engine = db.create_engine(url)
    try:
        async with holder.connect() as conn:
            await _hold_the_lock(url, conn)
            with pytest.raises(MigrationBusy, match="another process"):
                await upgrade(engine, lock_wait=0.5)
        assert await current_revisions(engine) == ()
    finally:
        await engine.dispose()
        await holder.dispose()
