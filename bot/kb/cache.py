"""Brief caching of KB answers: a repeated search within a minute asks the KB once, and
searches that arrive while the same one is on its way wait for it. A KB that asked the bot to
wait (`Retry-After` on a 429 or 503) is not asked again, by any search, before that; one that
rate limits without saying for how long (IT Glue's 429) is given about 1 s, then 2, 4 … (at most
5 minutes, with jitter) while its 429s come in a row (psa-kb-facts §0)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from bot.directory.cache import TtlCache
from handlers.diagnosis import KbArticle, KbSource, KbUnavailable
from storage.outbox import backoff, retry_wait

ANSWER_TTL = 60.0
MAX_ENTRIES = 1_000


class CachedKb:
    """A KbSource in front of another: answers kept `ttl` seconds (failures are not kept, but
    a `Retry-After`, or the back-off after a 429 without one, is honoured: until it has
    passed, searches fail without asking)."""

    def __init__(
        self,
        source: KbSource,
        *,
        ttl: float = ANSWER_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self._cache: TtlCache[list[KbArticle]] = TtlCache(ttl, max_size=MAX_ENTRIES, clock=clock)
        self._flying: dict[tuple[str, int], asyncio.Future[list[KbArticle]]] = {}
        self._clock = clock
        self._quiet_until = 0.0
        self._quiet_status: int | None = None
        self._limited_in_a_row = 0  # 429s without Retry-After since the last answer

    def __repr__(self) -> str:
        return f"CachedKb({self.source!r})"

    @property
    def name(self) -> str:
        return self.source.name

    async def search(self, query: str, *, limit: int) -> list[KbArticle]:
        key = (" ".join(query.lower().split()), limit)
        hit, cached = self._cache.get(key)
        if hit and cached is not None:
            return list(cached)
        wait = self._quiet_until - self._clock()
        if wait > 0:
            raise KbUnavailable(
                f"{self.name}: not asked again yet after HTTP {self._quiet_status}, "
                f"{wait:.0f} s left",
                status=self._quiet_status,
                retry_after=wait,
            )
        flying = self._flying.get(key)
        if flying is not None:
            try:
                return list(await asyncio.shield(flying))
            except asyncio.CancelledError:
                if not flying.cancelled():
                    raise  # this search itself was cancelled
                # The first asker went away before the answer: ask again.
        future: asyncio.Future[list[KbArticle]] = asyncio.get_running_loop().create_future()
        self._flying[key] = future
        try:
            found = await self.source.search(query, limit=limit)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            if isinstance(exc, KbUnavailable):
                self._hold_off(exc)
            future.set_exception(exc)
            future.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            self._flying.pop(key, None)
        self._limited_in_a_row = 0
        future.set_result(found)
        self._cache.put(key, found)
        return list(found)

    def _hold_off(self, exc: KbUnavailable) -> None:
        """No search goes to the KB before its Retry-After has passed, or, after a 429 without
        one, before a back-off that grows with each 429 in a row."""
        if exc.retry_after:
            wait = retry_wait(exc.retry_after)
        elif exc.status == 429:
            self._limited_in_a_row += 1
            wait = backoff(self._limited_in_a_row)
        else:
            return
        until = self._clock() + wait
        if until > self._quiet_until:
            self._quiet_until, self._quiet_status = until, exc.status
