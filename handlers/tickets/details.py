"""The extra sections `ticket show` adds to the ticket card: time, resolution, CSAT, deliveries."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cards.model import Element, Facts, Text
from handlers import psa
from handlers.durations import format_duration
from handlers.formatting import when
from storage import outbox
from storage import tickets as repo
from storage.models import CsatSurvey, IdentityCheck, Ticket

KIND_NAMES = {
    "message": "ticket card / notice",
    "dm": "direct message",
    "update": "message update",
    "page.pagerduty": "PagerDuty page",
    "page.opsgenie": "Opsgenie alert",
}


async def details(session: AsyncSession, ticket: Ticket) -> list[Element]:
    """PSA sync, time entries with their total, resolution, identity checks, CSAT and delivery
    states."""
    rows = await outbox.states_for(session, ticket.id)
    out: list[Element] = await psa.show_lines(session, ticket, rows)
    entries = await repo.time_entries_for(session, ticket.id)
    if entries:
        total = timedelta(minutes=sum(e.minutes for e in entries))
        out.append(Text(f"Time entries (total {format_duration(total)})", muted=True))
        out.append(
            Facts(
                [
                    (
                        f"{when(e.at)} {e.actor_id}",
                        format_duration(timedelta(minutes=e.minutes))
                        + (f" - {e.note}" if e.note else ""),
                    )
                    for e in entries
                ]
            )
        )
    if ticket.status == "closed":
        facts = [
            ("Closed", when(ticket.closed_at)),
            ("Resolution category", ticket.resolution_category or "-"),
        ]
        if ticket.kb_article:
            facts.append(("KB article", ticket.kb_article))
        out += [Text("Resolution", muted=True), Text(ticket.resolution_note), Facts(facts)]
    # Only tickets that went through a check have check rows; only closed ones a survey.
    checks = (
        (
            await session.execute(
                select(IdentityCheck)
                .where(IdentityCheck.ticket_id == ticket.id)
                .order_by(IdentityCheck.id)
            )
        )
        .scalars()
        .all()
        if ticket.identity_state != "not_required"
        else []
    )
    if checks:
        out.append(Text("Identity checks", muted=True))
        out.append(
            Facts(
                [
                    (
                        f"{when(c.created_at)} to {c.manager_email or 'no manager'}",
                        c.state
                        + (
                            f" by {c.answered_by} at {when(c.answered_at)}" if c.answered_by else ""
                        ),
                    )
                    for c in checks
                ]
            )
        )
    survey = (
        (
            await session.execute(select(CsatSurvey).where(CsatSurvey.ticket_id == ticket.id))
        ).scalar_one_or_none()
        if ticket.status == "closed"
        else None
    )
    if survey is not None:
        rating = f"{survey.rating}/5" if survey.rating else "not answered yet"
        out.append(
            Facts(
                [("CSAT rating", rating)]
                + ([("CSAT comment", survey.comment)] if survey.comment else [])
            )
        )
    if rows:
        out.append(Text("Deliveries", muted=True))
        out.append(
            Facts(
                [
                    (_kind(r, ticket), _state(r.status, r.attempts, r.last_error, r.due_at))
                    for r in rows
                ]
            )
        )
    return out


def _kind(row: outbox.DeliveryState, ticket: Ticket) -> str:
    if row.kind in psa.KINDS:
        return psa.kind_label(row.kind, ticket.psa_system)
    return KIND_NAMES.get(row.kind, row.kind) + (f" ({row.purpose})" if row.purpose else "")


def _state(status: str, attempts: int, error: str, due: object) -> str:
    if status == "delivered":
        return f"delivered (attempt {attempts})"
    if status == "dead":
        return f"failed for good after {attempts} attempt(s): {error}"
    if status == "cancelled":
        return f"not sent: {error}"
    if attempts:
        return f"retrying, {attempts} failed attempt(s), last error: {error}"
    return f"queued for {when(due)}"  # type: ignore[arg-type]
