"""Dialect-specific statements (ON CONFLICT), built once per dialect and reused.

A statement object memoises its cache key, so running the same object again skips
SQLAlchemy's per-call construction and cache-key walk; on the hot path that walk cost more
than the SQLite statement itself.

SQLAlchemy 2.0 cannot cache the dialects' `insert()` constructs (`inherit_cache = False`: the
ON CONFLICT clause is not part of their cache key), so every execution compiled the statement
again: three compiles per intake (the delivery claim, two deduplicated outbox rows), about a
sixth of the request's CPU. The statements built here are `_Named`: the ON CONFLICT clause is
fixed when the object is built, and its name here (dialect, table, key columns) is added to
the standard INSERT cache key, so each compiles once per engine.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import Insert as PgInsert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.dml import Insert as StandardInsert

_BUILT: dict[tuple[Any, ...], Any] = {}


class _Named:
    """Mixin: the standard INSERT cache key without the (uncacheable) ON CONFLICT clause,
    plus the name this module built the statement under, which determines that clause."""

    inherit_cache = True
    _built_as: tuple[Any, ...] = ()

    def _gen_cache_key(self, anon_map: Any, bindparams: Any) -> tuple[Any, ...] | None:
        key = super()._gen_cache_key(anon_map, bindparams)  # type: ignore[misc]
        return None if key is None or not self._built_as else (*key, self._built_as)


# What the cache key is made of: everything SQLAlchemy's INSERT has but the ON CONFLICT clause.
_KEY_PARTS = [
    (name, kind)
    for name, kind in StandardInsert._traverse_internals
    if name != "_post_values_clause"
]


class _SqliteInsert(_Named, SqliteInsert):
    inherit_cache = True
    _cache_key_traversal = _KEY_PARTS


class _PgInsert(_Named, PgInsert):
    inherit_cache = True
    _cache_key_traversal = _KEY_PARTS


def _named_insert(dialect_name: str, table: Table, name: tuple[Any, ...]) -> Any:
    stmt = (_PgInsert if dialect_name == "postgresql" else _SqliteInsert)(table)
    stmt._built_as = name
    return stmt


def table_of(model: Any) -> Table:
    """A mapped class's Table (typed: `__table__` is only a FromClause to mypy)."""
    return cast(Table, model.__table__)


def dialect(session: AsyncSession) -> str:
    return session.bind.dialect.name if session.bind else "sqlite"


_CONNECTION = "statements.connection"


async def connection(session: AsyncSession) -> AsyncConnection:
    """`await session.connection()`, kept for the rest of the session's transaction.

    Each `session.connection()` is a greenlet round trip even when the transaction already
    has its connection (about 14 us); the intake path asks for it some fifteen times.
    """
    transaction = session.sync_session.get_transaction()
    kept = session.info.get(_CONNECTION)
    if kept is not None and transaction is not None and kept[0] is transaction:
        return cast(AsyncConnection, kept[1])
    conn = await session.connection()  # begins the transaction (and its hooks) if needed
    session.info[_CONNECTION] = (session.sync_session.get_transaction(), conn)
    return conn


def insert_new(
    session: AsyncSession, table: Table, key: str, *, returning: str | None = None
) -> Any:
    """`INSERT ... ON CONFLICT (key) DO NOTHING RETURNING key` (or the `returning` column): a
    row back only if inserted."""
    return insert_new_on(dialect(session), table, key, returning=returning)


def insert_new_on(
    dialect_name: str, table: Table, key: str, *, returning: str | None = None
) -> Any:
    """`insert_new` for a dialect by name (for code that holds a Connection, not a session)."""
    column = returning or key
    name = ("insert_new", dialect_name, table.name, key, column)
    stmt = _BUILT.get(name)
    if stmt is None:
        stmt = _named_insert(dialect_name, table, name)
        stmt = stmt.on_conflict_do_nothing(index_elements=[key]).returning(table.c[column])
        _BUILT[name] = stmt
    return stmt


def upsert(
    session: AsyncSession, table: Table, keys: tuple[str, ...], update: tuple[str, ...]
) -> Any:
    """`INSERT ... ON CONFLICT (keys) DO UPDATE SET <update> = excluded.<update>`."""
    name = ("upsert", dialect(session), table.name, keys, update)
    stmt = _BUILT.get(name)
    if stmt is None:
        stmt = _named_insert(dialect(session), table, name)
        stmt = stmt.on_conflict_do_update(
            index_elements=list(keys), set_={col: stmt.excluded[col] for col in update}
        )
        _BUILT[name] = stmt
    return stmt


def upsert_max_on(dialect_name: str, table: Table, key: str, column: str) -> Any:
    """`INSERT ... ON CONFLICT (key) DO UPDATE SET column = excluded.column` only when that is
    larger than the stored value: the larger value wins, whichever writer came first."""
    name = ("upsert_max", dialect_name, table.name, key, column)
    stmt = _BUILT.get(name)
    if stmt is None:
        stmt = _named_insert(dialect_name, table, name)
        stmt = stmt.on_conflict_do_update(
            index_elements=[key],
            set_={column: stmt.excluded[column]},
            where=table.c[column] < stmt.excluded[column],
        )
        _BUILT[name] = stmt
    return stmt
