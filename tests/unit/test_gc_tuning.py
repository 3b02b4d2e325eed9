"""bot.gc_tuning: a started server's heap is out of the collector's way, its young generation
collected less often."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from bot import gc_tuning


@pytest.fixture
def restored() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_tune_freezes_what_was_built_and_collects_the_young_less_often(restored: None) -> None:
    _, gen1, gen2 = gc.get_threshold()
    built = [[n] for n in range(1000)]  # what start-up made (lists are tracked)
    gc_tuning.tune()
    assert gc.get_freeze_count() >= len(built)
    assert gc.get_threshold() == (gc_tuning.GEN0, gen1, gen2)
    assert gc_tuning.GEN0 > 700  # CPython's default
    # A cycle made afterwards is still collected.
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1
