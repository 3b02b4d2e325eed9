"""What `storage.migrate` raises about a schema, importable without alembic (check-config
catches them without a database to look at)."""

from __future__ import annotations


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


class SchemaForeign(SchemaMismatch):
    """Never migrated, yet holding tables named like this release's: another application's
    database (or one whose revision table was dropped). Migrating would fail half-way."""


class MigrationBusy(Exception):
    """Another process held the migration lock longer than this one would wait."""
