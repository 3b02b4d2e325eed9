"""Dialect-specific statements (ON CONFLICT), built once per dialect and reused.

A statement object memoises its cache key, so running the same object again skips
SQLAlchemy's per-call construction and cache-key walk; on the hot path that walk cost more
than the SQLite statement itself.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

_BUILT: dict[tuple[Any, ...], Any] = {}


def table_of(model: Any) -> Table:
    """A mapped class's Table (typed: `__table__` is only a FromClause to mypy)."""
    return cast(Table, model.__table__)


def dialect(session: AsyncSession) -> str:
    return session.bind.dialect.name if session.bind else "sqlite"


def _insert(session: AsyncSession, table: Table) -> Any:
    return (pg_insert if dialect(session) == "postgresql" else sqlite_insert)(table)


def insert_new(session: AsyncSession, table: Table, key: str) -> Any:
    """`INSERT ... ON CONFLICT (key) DO NOTHING RETURNING key`: a row back only if inserted."""
    return insert_new_on(dialect(session), table, key)


def insert_new_on(dialect_name: str, table: Table, key: str) -> Any:
    """`insert_new` for a dialect by name (for code that holds a Connection, not a session)."""
    name = ("insert_new", dialect_name, table.name, key)
    stmt = _BUILT.get(name)
    if stmt is None:
        insert = pg_insert if dialect_name == "postgresql" else sqlite_insert
        stmt = insert(table).on_conflict_do_nothing(index_elements=[key]).returning(table.c[key])
        _BUILT[name] = stmt
    return stmt


def upsert(
    session: AsyncSession, table: Table, keys: tuple[str, ...], update: tuple[str, ...]
) -> Any:
    """`INSERT ... ON CONFLICT (keys) DO UPDATE SET <update> = excluded.<update>`."""
    name = ("upsert", dialect(session), table.name, keys, update)
    stmt = _BUILT.get(name)
    if stmt is None:
        stmt = _insert(session, table)
        stmt = stmt.on_conflict_do_update(
            index_elements=list(keys), set_={col: stmt.excluded[col] for col in update}
        )
        _BUILT[name] = stmt
    return stmt
