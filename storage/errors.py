"""Telling "the database cannot be reached" apart from every other database error."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from sqlalchemy import exc as sa_exc

# asyncpg's connection-level failures, by name (storage imports no driver module directly).
_DRIVER_NAMES = frozenset(
    {
        "ConnectionDoesNotExistError",
        "ConnectionFailureError",
        "CannotConnectNowError",
        "InterfaceError",
        "InternalClientError",
        "AdminShutdownError",
        "CrashShutdownError",
        "TooManyConnectionsError",
        "QueryCanceledError",  # statement_timeout: the server gave up on a silent client
    }
)


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [current.__cause__, current.__context__, getattr(current, "orig", None)]


def is_unavailable(error: BaseException) -> bool:
    """True when `error` says the database could not be reached or did not answer in time
    (refused, reset, timed out, a pool with no connection to give, SQLite locked too long),
    as opposed to a bug or a constraint violation."""
    for found in _chain(error):
        if isinstance(found, DatabaseUnavailable):
            return True
        if isinstance(found, sa_exc.DBAPIError) and found.connection_invalidated:
            return True
        if isinstance(found, sa_exc.TimeoutError | TimeoutError | OSError):
            return True
        if isinstance(found, sqlite3.OperationalError) and "locked" in str(found):
            return True
        if type(found).__name__ in _DRIVER_NAMES:
            return True
    return False


def is_timeout_only(error: BaseException) -> bool:
    """True when `error` is a timeout (ours or the pool's) with no SQLite error in its chain:
    something was slow, not failing (see bot.db_health on SQLite)."""
    found = list(_chain(error))
    if any(isinstance(e, sqlite3.Error) for e in found):
        return False
    return any(isinstance(e, TimeoutError | sa_exc.TimeoutError) for e in found)


class DatabaseUnavailable(Exception):
    """The database did not answer; nothing was stored. The message is for the log."""
