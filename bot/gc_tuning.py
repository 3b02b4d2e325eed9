"""The garbage collector, set for a long-running server process (`serve`, `worker`).

CPython collects its youngest generation every 700 net allocations of container objects. One
intake allocates thousands (the decoded modal, the interaction, the card and its Block Kit,
SQLAlchemy's per-statement objects, the outbox payload), so a couple of young collections ran
per job, each walking whatever the jobs in flight hold at that moment; and every full
collection walked the whole start-up heap too (modules, settings, compiled statements: some
166,000 objects in `serve`), a pause of several milliseconds for every request in flight.
Once the process has started, what it built is moved out of the collector's way
(`gc.freeze`), and the young generation is collected every GEN0 allocations. Reference cycles
are still collected, a little later: memory held by them for that long is small (a few
thousand objects). Measured in bench/README.md (sixteenth session).
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)
GEN0 = 10_000


def tune() -> None:
    """Call once the process has started (its services up), before it serves."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0, gen1, gen2)
    log.debug(
        "gc: %d start-up objects frozen, young generation every %d", gc.get_freeze_count(), GEN0
    )
