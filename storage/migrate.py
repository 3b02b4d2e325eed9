"""Bring a database to the newest Alembic revision, and check which revision it is at.

A database stamped with a revision this release does not know was written by a newer release:
nothing here touches it (running old code on a newer schema is how data gets corrupted).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

_INI = Path(__file__).with_name("alembic.ini")


class SchemaMismatch(Exception):
    """The database's schema revision is not one this release can run on."""

    def __init__(self, message: str, *, found: tuple[str, ...], head: tuple[str, ...]) -> None:
        super().__init__(message)
        self.found = found
        self.head = head


class SchemaTooNew(SchemaMismatch):
    """Stamped by a newer release: this one must not touch it."""


class SchemaTooOld(SchemaMismatch):
    """Behind this release's newest revision (or never migrated): run `migrate`."""


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


async def current_revisions(engine: AsyncEngine) -> tuple[str, ...]:
    """The revision(s) the database is stamped with (empty: never migrated)."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


async def check_schema(engine: AsyncEngine, *, require_newest: bool) -> tuple[str, ...]:
    """The database's revision(s); SchemaTooNew when this release does not know them, and with
    `require_newest` SchemaTooOld when they are behind its newest revision."""
    found = await current_revisions(engine)
    _refuse_newer(found)
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


async def upgrade(engine: AsyncEngine) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Run every pending migration on `engine` (idempotent); (revisions before, after).

    Raises SchemaTooNew, changing nothing, when the database was written by a newer release.
    """

    def _upgrade(connection: Connection) -> tuple[tuple[str, ...], tuple[str, ...]]:
        before = _current(connection)
        _refuse_newer(before)
        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "heads")
        return before, _current(connection)

    async with engine.begin() as conn:
        return await conn.run_sync(_upgrade)
