"""How long a person may still wait for the directory in this turn (set by the front doors).

Each look-up has its own limit (Graph: 10 s of Retry-After waits; LDAP: its timeouts); a turn
that makes several look-ups is also held to the deadline its front door set, so the person is
answered in time even when every look-up is slow. The turn also knows whether it is waiting
for the directory right now: a front door whose answer is due keeps waiting (and answers later)
for the directory, but gives up on anything else (a database that does not answer).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

_deadline: ContextVar[float | None] = ContextVar("directory_deadline", default=None)


@dataclass
class Turn:
    """One person's turn: how many directory calls it is waiting on right now."""

    directory_calls: int = 0

    @property
    def waiting_for_directory(self) -> bool:
        return self.directory_calls > 0


_turn: ContextVar[Turn | None] = ContextVar("directory_turn", default=None)


@contextmanager
def person_waiting(seconds: float) -> Iterator[Turn]:
    """Directory calls made inside (and in tasks started inside) end within `seconds`; the
    turn yielded says while they are under way (it is shared with those tasks)."""
    turn = Turn()
    token = _deadline.set(time.monotonic() + seconds)
    turn_token = _turn.set(turn)
    try:
        yield turn
    finally:
        _turn.reset(turn_token)
        _deadline.reset(token)


@contextmanager
def directory_call() -> Iterator[None]:
    """Marks the current turn as waiting for the directory while the block runs."""
    turn = _turn.get()
    if turn is not None:
        turn.directory_calls += 1
    try:
        yield
    finally:
        if turn is not None:
            turn.directory_calls -= 1


def time_left(limit: float) -> float:
    """Seconds a directory call may still take: `limit`, or less when the turn's deadline is
    nearer (never negative)."""
    deadline = _deadline.get()
    if deadline is None:
        return limit
    return max(0.0, min(limit, deadline - time.monotonic()))
