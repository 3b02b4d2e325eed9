"""What `ticket show` says about the PSA sync: a `pending` line while anything is not there."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from cards.model import Element, Text
from handlers.formatting import when
from handlers.psa import rules
from storage import psa as psa_repo
from storage.models import Ticket
from storage.outbox import DeliveryState


def _what(rows: Sequence[DeliveryState]) -> str:
    counts = Counter(rules.WHAT.get(r.kind, r.kind) for r in rows)
    return ", ".join(f"{n} {what}s" if n > 1 else what for what, n in counts.items())


async def show_lines(
    session: AsyncSession, ticket: Ticket, rows: Sequence[DeliveryState]
) -> list[Element]:
    """`ServiceNow: pending (...)` while a write has not reached it; failures for good."""
    if not ticket.psa_system:
        return []
    name = rules.name_of(ticket.psa_system)
    mine = [r for r in rows if psa_repo.is_psa_kind(r.kind)]
    pending = [r for r in mine if r.status == "pending"]
    lost = [r for r in mine if r.status in ("dead", "cancelled")]
    out: list[Element] = []
    if pending:
        text = f"{name}: pending ({len(pending)} not sent yet: {_what(pending)})"
        state = await psa_repo.gate(session, ticket.psa_system)
        if state is not None and state.auth_failed_at is not None:
            text += f"; {name} refuses the bot's credentials since {when(state.auth_failed_at)}"
        elif state is not None and state.blocked_until and state.blocked_until > pending[0].due_at:
            text += f"; {name} asked to wait until {when(state.blocked_until)}"
        tried = [r for r in pending if r.attempts and r.last_error]
        if tried:
            text += f"; last answer: {tried[0].last_error[:200]}"
        out.append(Text(text))
    if lost:
        errors = "; ".join(r.last_error[:200] for r in lost if r.last_error)
        out.append(Text(f"{name}: not sent: {_what(lost)}" + (f" ({errors})" if errors else "")))
    for row in mine:
        if row.status == "delivered" and row.went_without:
            what = rules.WHAT.get(row.kind, row.kind)
            out.append(Text(f"{name}: the {what} was sent without {row.went_without[:400]}"))
    return out


def kind_label(kind: str, system: str) -> str:
    """`ServiceNow note` for the deliveries list of `show`."""
    return f"{rules.name_of(system)} {rules.WHAT.get(kind, kind)}"
