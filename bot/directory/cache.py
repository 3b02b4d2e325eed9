"""A small TTL cache for directory look-ups (Graph, LDAP)."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class TtlCache(Generic[V]):
    """A small in-memory cache whose entries (including misses) expire after `ttl` seconds."""

    def __init__(
        self, ttl: float, *, max_size: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl
        self._max_size = max_size
        self._clock = clock
        self._entries: dict[Hashable, tuple[float, V]] = {}

    def get(self, key: Hashable) -> tuple[bool, V | None]:
        """(True, value) when a fresh entry exists, else (False, None)."""
        hit, value, _ = self.get_until(key)
        return hit, value

    def get_until(self, key: Hashable) -> tuple[bool, V | None, float]:
        """(True, value, when it expires) when a fresh entry exists, else (False, None, 0)."""
        entry = self._entries.get(key)
        if entry is None:
            return False, None, 0.0
        if entry[0] <= self._clock():
            del self._entries[key]
            return False, None, 0.0
        return True, entry[1], entry[0]

    def expiry(self) -> float:
        """When an entry stored now would expire (now + ttl)."""
        return self._clock() + self._ttl

    def put(self, key: Hashable, value: V, *, until: float | None = None) -> None:
        """Store `value` under `key` until the TTL runs out, or until `until` when that is
        sooner (a value derived from another cached one expires no later than it)."""
        if self._ttl <= 0:
            return
        expires = self.expiry() if until is None else min(self.expiry(), until)
        if expires <= self._clock():
            return
        if len(self._entries) >= self._max_size:
            now = self._clock()
            self._entries = {k: e for k, e in self._entries.items() if e[0] > now}
            if len(self._entries) >= self._max_size:
                self._entries.pop(next(iter(self._entries)))
        self._entries[key] = (expires, value)

    def clear(self) -> None:
        """Forget everything."""
        self._entries.clear()
