"""SLA matrix (client -> tier -> priority), the priority rules of SPEC, and the clock's rules:
when a target is met, missed or still pending, and when its warning and breach are due."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from handlers.config import SlaConfig

PRIORITY_MEANING = {
    "P1": "system down or multi-user impact",
    "P2": "single user blocked",
    "P3": "degraded",
    "P4": "request",
}
Target = Literal["respond", "resolve"]
TARGETS: tuple[Target, ...] = ("respond", "resolve")
Outcome = Literal["met", "missed", "pending"]


@dataclass(frozen=True)
class SlaDue:
    tier: str
    respond_by: datetime
    resolve_by: datetime


def due_times(sla: SlaConfig, *, client: str, priority: str, opened_at: datetime) -> SlaDue:
    """Respond-by and resolve-by for a ticket of `client` at `priority` opened at `opened_at`
    (calendar time, to the second: `1d` is 24 h)."""
    tier = sla.tier_for(client)
    target = sla.tiers[tier][priority]  # type: ignore[index]
    return SlaDue(
        tier=tier, respond_by=opened_at + target.respond, resolve_by=opened_at + target.resolve
    )


def priority_warning(*, priority: str, users_affected: int) -> str:
    """Non-empty when more than one user is affected below P1 (accepted, but flagged)."""
    if users_affected > 1 and priority != "P1":
        return (
            f"{users_affected} users are affected: the SLA matrix calls multi-user impact P1 "
            f"({PRIORITY_MEANING['P1']}), not {priority} ({PRIORITY_MEANING[priority]})."
        )
    return ""


def outcome(met: bool | None, due: datetime, now: datetime) -> Outcome:
    """A target's state: stored once known; while unknown, missed as soon as it is overdue."""
    if met is not None:
        return "met" if met else "missed"
    return "missed" if now > due else "pending"


@dataclass(frozen=True)
class Alarm:
    """One SLA message: a warning before a target, or its breach (thread, or channel)."""

    target: Target
    stage: Literal["warning", "breach"]
    place: Literal["thread", "channel"]
    due_at: datetime


def breaches(target: Target, *, due: datetime, now: datetime) -> list[Alarm]:
    """A breach is said in the ticket's thread and in its channel, at once when overdue."""
    return [Alarm(target, "breach", place, max(due, now)) for place in ("thread", "channel")]


def alarms(target: Target, *, due: datetime, warn_before: timedelta, now: datetime) -> list[Alarm]:
    """What to queue now for a running target due at `due`: its warning, or its breach.

    The warning comes `warn_before` ahead (none when that is 0, or when the target is already
    overdue); the breach is queued when the warning goes out (one pending row per running
    target at a time). A warning time already past goes at once: the target is closer than
    `warn_before` from the start (as short as that, or shorter), or it moved closer (a raise
    to P1).
    """
    if warn_before > timedelta(0) and due > now:
        return [Alarm(target, "warning", "thread", max(due - warn_before, now))]
    return breaches(target, due=due, now=now)
