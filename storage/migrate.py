"""Bring a database to the newest Alembic revision, and check which revision it is at.

A database stamped with a revision this release does not know was written by a newer release:
nothing here touches it (running old code on a newer schema is how data gets corrupted).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage.schema_errors import MigrationBusy as MigrationBusy
from storage.schema_errors import SchemaForeign as SchemaForeign
from storage.schema_errors import SchemaMismatch as SchemaMismatch
from storage.schema_errors import SchemaTooNew as SchemaTooNew
from storage.schema_errors import SchemaTooOld as SchemaTooOld

_INI = Path(__file__).with_name("alembic.ini")
log = logging.getLogger(__name__)


def alembic_config(url: str | None = None) -> Config:
    cfg = Config(str(_INI))
    if url:
        cfg.attributes["url"] = url
    return cfg


@lru_cache(maxsize=1)
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revisions() -> tuple[str, ...]:
    """This release's newest revision(s) (one, while the history has no branches)."""
    return tuple(sorted(_script().get_heads()))


def known_revisions() -> frozenset[str]:
    """Every revision this release's migrations know."""
    return frozenset(s.revision for s in _script().walk_revisions())


def _names(revisions: tuple[str, ...]) -> str:
    return ", ".join(revisions) if revisions else "none"


def _current(connection: Connection) -> tuple[str, ...]:
    return tuple(sorted(MigrationContext.configure(connection).get_current_heads()))


def _refuse_newer(found: tuple[str, ...]) -> None:
    unknown = tuple(r for r in found if r not in known_revisions())
    if unknown:
        head = head_revisions()
        raise SchemaTooNew(
            f"the database schema (revision {_names(unknown)}) is newer than this version of "
            f"helpdesk-bot (newest revision {_names(head)}): it was written by a newer release. "
            "Nothing was changed; run that release, or restore a backup taken before it",
            found=found,
            head=head,
        )


def _refuse_foreign(connection: Connection, found: tuple[str, ...]) -> None:
    """A database never migrated (no revision) that already has tables named as this
    release's: not one it created. Migrating it would stop half-way on the first of them."""
    if found:
        return
    from storage.models import Base

    ours = set(Base.metadata.tables)
    taken = sorted(ours.intersection(inspect(connection).get_table_names()))
    if taken:
        shown = ", ".join(taken[:5]) + (", …" if len(taken) > 5 else "")
        raise SchemaForeign(
            f"the database has no helpdesk-bot schema revision but already has tables named as "
            f"its own ({shown}): it is another application's database, or its alembic_version "
            "table was dropped. Nothing was changed; point DATABASE_URL at an empty database or "
            "at the one helpdesk-bot created",
            found=found,
            head=head_revisions(),
        )


def _checked(connection: Connection) -> tuple[str, ...]:
    found = _current(connection)
    _refuse_newer(found)
    _refuse_foreign(connection, found)
    return found


async def current_revisions(engine: AsyncEngine) -> tuple[str, ...]:
    """The revision(s) the database is stamped with (empty: never migrated)."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


async def check_schema(engine: AsyncEngine, *, require_newest: bool) -> tuple[str, ...]:
    """The database's revision(s); SchemaTooNew when this release does not know them, and with
    `require_newest` SchemaTooOld when they are behind its newest revision."""
    async with engine.connect() as conn:
        found = await conn.run_sync(_checked)
    head = head_revisions()
    if require_newest and found != head:
        state = f"revision {_names(found)}" if found else "no revision: never migrated"
        raise SchemaTooOld(
            f"the database schema ({state}) is older than this version of helpdesk-bot needs "
            f"(revision {_names(head)}): run `python -m bot migrate` first",
            found=found,
            head=head,
        )
    return found


# One migration at a time per database: PostgreSQL's advisory lock key (any fixed number; this
# is "helpdesk" in ASCII), and how long a second process waits for the first one's migration.
ADVISORY_LOCK_KEY = 0x68656C7064657368
LOCK_WAIT = 120.0
LOCK_POLL = 0.2


def _sqlite_busy(error: BaseException) -> bool:
    for found in (error, error.__cause__, error.__context__, getattr(error, "orig", None)):
        if isinstance(found, sqlite3.OperationalError) and "locked" in str(found):
            return True
    return False


async def _take_lock(conn: AsyncConnection, *, wait: float) -> None:
    """Hold the migration lock until `conn`'s transaction ends (commit, rollback, or the
    process dying): PostgreSQL's transaction-level advisory lock; on SQLite the write lock
    (`BEGIN IMMEDIATE`, so the whole upgrade is one transaction that readers never see half
    done). A process that finds it taken waits (the lock wait never holds a statement open
    for long), up to `wait` seconds."""
    deadline = time.monotonic() + wait
    told = False
    while True:
        if conn.dialect.name == "postgresql":
            took = await conn.scalar(
                text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
            )
        else:
            try:
                # Waits up to SQLite's busy timeout on a thread (storage.sqlite_inline).
                await conn.exec_driver_sql("BEGIN IMMEDIATE")
                took = True
            except OperationalError as exc:
                if not _sqlite_busy(exc):
                    raise
                took = False
        if took:
            return
        if time.monotonic() >= deadline:
            raise MigrationBusy(
                f"another process has been migrating the database for over {wait:.0f} s "
                "(or holds its write lock): nothing was changed; try again when it is done"
            )
        if not told:
            log.info("another process is migrating the database: waiting for it")
            told = True
        await asyncio.sleep(LOCK_POLL)


async def upgrade(
    engine: AsyncEngine, *, lock_wait: float = LOCK_WAIT
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Run every pending migration on `engine` (idempotent); (revisions before, after).

    One process at a time (see `_take_lock`): a second one started together (the Procfile's
    web and worker on one SQLite file, two `migrate` runs) waits for the first, then finds the
    schema current and changes nothing.

    Raises SchemaTooNew, changing nothing, when the database was written by a newer release.
    """

    def _upgrade(connection: Connection) -> tuple[tuple[str, ...], tuple[str, ...]]:
        before = _checked(connection)
        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "heads")
        return before, _current(connection)

    async with engine.begin() as conn:
        await _take_lock(conn, wait=lock_wait)
        return await conn.run_sync(_upgrade)
