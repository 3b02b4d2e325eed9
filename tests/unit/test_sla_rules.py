"""The SLA clock's pure rules: outcomes, and what is queued for a running target."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from handlers.config import HelpdeskConfig
from handlers.sla import due_times, outcome
from handlers.sla.cards import due_text
from handlers.sla.rules import Alarm, alarms

DUE = datetime(2026, 3, 2, 14, 2, tzinfo=UTC)
WARN = timedelta(minutes=15)


def test_outcome_is_stored_once_known_and_missed_once_overdue() -> None:
    assert outcome(True, DUE, DUE + timedelta(days=1)) == "met"
    assert outcome(False, DUE, DUE - timedelta(days=1)) == "missed"
    assert outcome(None, DUE, DUE) == "pending"
    assert outcome(None, DUE, DUE + timedelta(seconds=1)) == "missed"


def test_due_text_is_the_time_today_and_the_date_otherwise() -> None:
    assert due_text(DUE, DUE - timedelta(hours=3)) == "14:02 UTC"
    assert due_text(DUE, DUE - timedelta(days=1)) == "2026-03-02 14:02 UTC"


def test_a_running_target_queues_its_warning_or_its_breach() -> None:
    now = DUE - timedelta(hours=2)
    assert alarms("respond", due=DUE, warn_before=WARN, now=now) == [
        Alarm("respond", "warning", "thread", DUE - WARN)
    ]
    # No warnings configured (0s): the breach straight away, in the thread and the channel.
    breach = [Alarm("resolve", "breach", place, DUE) for place in ("thread", "channel")]
    assert alarms("resolve", due=DUE, warn_before=timedelta(0), now=now) == breach
    # A target closer than the warning (shorter than warn_before from creation, or moved
    # closer by a raise): the warning at once, never left out.
    close = DUE - timedelta(minutes=5)
    assert alarms("respond", due=DUE, warn_before=WARN, now=close) == [
        Alarm("respond", "warning", "thread", close)
    ]
    # Already overdue (a late raise): the breach at once.
    late = DUE + timedelta(hours=1)
    assert alarms("resolve", due=DUE, warn_before=WARN, now=late) == [
        Alarm("resolve", "breach", place, late) for place in ("thread", "channel")
    ]


def test_targets_in_seconds_count_to_the_second() -> None:
    targets = {f"P{p}": {"respond": "20s", "resolve": "1h30s"} for p in range(1, 5)}
    config = HelpdeskConfig.model_validate(
        {"sla": {"default_tier": "fast", "tiers": {"fast": targets}, "warn_before": "5s"}}
    )
    opened = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)
    due = due_times(config.sla, client="anyone", priority="P3", opened_at=opened)
    assert (due.respond_by, due.resolve_by) == (
        opened + timedelta(seconds=20),
        opened + timedelta(hours=1, seconds=30),
    )
    assert config.sla.warn_before == timedelta(seconds=5)
    assert HelpdeskConfig().sla.warn_before == timedelta(minutes=15)  # the default
