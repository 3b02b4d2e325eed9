"""The look-up of resolved tickets behind an error's newest open ones is reused briefly: an
outage's every new report would otherwise look through a thousand tickets (bench.intake_ab:
+12 % CPU per intake when every ticket carries one error and none is resolved)."""

from __future__ import annotations

from storage.error_signatures import RESOLVED_FRESH, RESOLVED_KEPT, Brief, ResolvedMemo


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def brief(n: int) -> Brief:
    return Brief(n, f"HD-{n}", "acme", "closed", "Fixed", "", ("hex:0x80070005",))


def test_reused_while_fresh_for_later_tickets_then_looked_up_again() -> None:
    clock = Clock()
    memo = ResolvedMemo(clock=clock)
    keys = ["hex:0x80070005", "text:abc"]
    assert memo.get(keys, before=50, per=3) is None
    memo.put(keys, before=50, per=3, found=[brief(7)])
    # A later ticket (higher id), the keys in another order: the same answer.
    assert memo.get(list(reversed(keys)), before=60, per=3) == [brief(7)]
    # An earlier ticket (its own closure form, say) could be shown tickets newer than itself.
    assert memo.get(keys, before=40, per=3) is None
    # Another signature set or another count: not this answer.
    assert memo.get(keys[:1], before=60, per=3) is None
    assert memo.get(keys, before=60, per=10) is None
    clock.now += RESOLVED_FRESH
    assert memo.get(keys, before=60, per=3) is None


def test_bounded_expired_ones_dropped_first() -> None:
    clock = Clock()
    memo = ResolvedMemo(clock=clock)
    memo.put(["old"], before=1, per=3, found=[])
    clock.now += RESOLVED_FRESH + 1
    for n in range(RESOLVED_KEPT - 1):
        memo.put([f"k{n}"], before=1, per=3, found=[brief(n)])
    memo.put(["new"], before=1, per=3, found=[])
    assert memo.get(["k0"], before=2, per=3) == [brief(0)]  # kept: only the expired one went
    assert memo.get(["new"], before=2, per=3) == []
    memo.put(["more"], before=1, per=3, found=[])  # full of fresh ones: all dropped
    assert memo.get(["k0"], before=2, per=3) is None
    assert memo.get(["more"], before=2, per=3) == []
