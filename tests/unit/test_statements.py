"""The prebuilt ON CONFLICT statements compile once per engine, and never share a cache entry."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import event, insert

from storage import db, statements
from storage.models import Base, InboundDelivery, OutboxMessage

OUTBOX = statements.table_of(OutboxMessage)
INBOUND = statements.table_of(InboundDelivery)


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_on_conflict_statements_have_distinct_cache_keys(dialect: str) -> None:
    keys = [
        statements.insert_new_on(dialect, OUTBOX, "dedup_key")._generate_cache_key(),
        statements.insert_new_on(dialect, OUTBOX, "id")._generate_cache_key(),
        statements.insert_new_on(dialect, INBOUND, "key")._generate_cache_key(),
        insert(OUTBOX).returning(OUTBOX.c.dedup_key)._generate_cache_key(),
    ]
    assert all(k is not None for k in keys)
    assert len({k.key for k in keys if k is not None}) == len(keys)
    other = "postgresql" if dialect == "sqlite" else "sqlite"
    mine = statements.insert_new_on(dialect, INBOUND, "key")._generate_cache_key()
    theirs = statements.insert_new_on(other, INBOUND, "key")._generate_cache_key()
    assert mine is not None and theirs is not None and mine.key != theirs.key


async def test_insert_new_compiles_once_and_still_skips_duplicates(tmp_path: Path) -> None:
    engine = db.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    compiled: list[str] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _seen(conn, cursor, sql, params, context, executemany):  # type: ignore[no-untyped-def]
        if context is not None and getattr(context, "cache_hit", None) is not None:
            compiled.append(str(context.cache_hit))

    stmt = statements.insert_new_on("sqlite", INBOUND, "key")
    try:
        results = []
        for key in ("a", "b", "a"):
            async with engine.begin() as conn:
                results.append((await conn.execute(stmt, {"key": key})).first() is not None)
    finally:
        await engine.dispose()
    assert results == [True, True, False]
    # The first run compiles (CACHE_MISS); the later ones find it (CACHE_HIT).
    assert "CacheStats.CACHE_MISS" in compiled[0]
    assert all(c == "CacheStats.CACHE_HIT" for c in compiled[1:]), compiled
