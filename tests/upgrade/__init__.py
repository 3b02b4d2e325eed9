"""Databases written by earlier releases, rebuilt with their own migrations for upgrade tests.

`release_0001.json` holds the rows the first release (commit 30e55dd, revision 0001) left after
a day of work, dumped by `make_release_0001.py` from that release running against its own fakes.
`build_release_0001` puts them into an empty database migrated to revision 0001 only.
"""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import DateTime, MetaData, Table, select
from sqlalchemy.engine import Connection

from storage import db
from storage.migrate import alembic_config

FIXTURE = Path(__file__).with_name("release_0001.json")
VERSION_TABLE = "alembic_version"


@lru_cache(maxsize=1)
def release_0001() -> dict[str, Any]:
    """The first release's rows, by table."""
    data: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    assert data["revision"] == "0001"
    return data


def _typed(table: Table, row: dict[str, Any]) -> dict[str, Any]:
    return {
        key: datetime.fromisoformat(value)
        if value is not None and isinstance(table.c[key].type, DateTime)
        else value
        for key, value in row.items()
    }


def comparable(value: Any) -> Any:
    """A stored value as the fixture spells it (SQLite hands datetimes back naive: UTC)."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    return value


def reflect(conn: Connection) -> MetaData:
    meta = MetaData()
    with warnings.catch_warnings():
        # SQLite's reflection skips an index on an expression (ix_tickets_requester_email_open):
        # the tables and their rows are what is read here.
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression")
        meta.reflect(conn)
    return meta


def rows_of(conn: Connection, table: Table, columns: list[str] | None = None) -> list[dict]:
    """Every row of `table` (only `columns`, when given), by primary key, as the fixture has it."""
    order = list(table.primary_key.columns) or list(table.columns)
    picked = [table.c[c] for c in columns] if columns else list(table.columns)
    result = conn.execute(select(*picked).order_by(*order)).mappings().all()
    return [{k: comparable(v) for k, v in row.items()} for row in result]


def _load(conn: Connection) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "0001")
    meta = reflect(conn)
    tables = release_0001()["tables"]
    for table in meta.sorted_tables:
        if rows := tables.get(table.name):
            conn.execute(table.insert(), [_typed(table, r) for r in rows])
            if conn.dialect.name == "postgresql" and "id" in table.c:
                # Rows came with their ids: move the sequence past them, as the release had.
                conn.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                    f"(SELECT max(id) FROM {table.name}))"
                )


async def build_release_0001(url: str) -> None:
    """Migrate the empty database at `url` to revision 0001 and fill it as the release left it."""
    engine = db.create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_load)
    finally:
        await engine.dispose()


async def snapshot(url: str) -> dict[str, Any]:
    """Every table's columns, indexes and rows: equal snapshots, unchanged database."""
    engine = db.create_engine(url)

    def read(conn: Connection) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for table in reflect(conn).sorted_tables:
            out[table.name] = {
                "columns": sorted((c.name, str(c.type), c.nullable) for c in table.columns),
                "indexes": sorted(str(ix.name) for ix in table.indexes),
                "rows": rows_of(conn, table),
            }
        return out

    try:
        async with engine.connect() as conn:
            return await conn.run_sync(read)
    finally:
        await engine.dispose()
