"""SLA matrix (client -> tier -> priority) and the priority rules of SPEC."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from handlers.config import SlaConfig

PRIORITY_MEANING = {
    "P1": "system down or multi-user impact",
    "P2": "single user blocked",
    "P3": "degraded",
    "P4": "request",
}


@dataclass(frozen=True)
class SlaDue:
    tier: str
    respond_by: datetime
    resolve_by: datetime


def due_times(sla: SlaConfig, *, client: str, priority: str, opened_at: datetime) -> SlaDue:
    """Respond-by and resolve-by for a ticket of `client` at `priority` opened at `opened_at`."""
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
