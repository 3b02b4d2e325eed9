"""How long a person may still wait for the directory in this turn (set by the front doors).

Each look-up has its own limit (Graph: 10 s of Retry-After waits; LDAP: its timeouts); a turn
that makes several look-ups is also held to the deadline its front door set, so the person is
answered in time even when every look-up is slow.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_deadline: ContextVar[float | None] = ContextVar("directory_deadline", default=None)


@contextmanager
def person_waiting(seconds: float) -> Iterator[None]:
    """Directory calls made inside (and in tasks started inside) end within `seconds`."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def time_left(limit: float) -> float:
    """Seconds a directory call may still take: `limit`, or less when the turn's deadline is
    nearer (never negative)."""
    deadline = _deadline.get()
    if deadline is None:
        return limit
    return max(0.0, min(limit, deadline - time.monotonic()))
