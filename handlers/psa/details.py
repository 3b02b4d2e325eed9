"""What `ticket show` says about the PSA sync: a `pending` line while anything is not there."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from cards.model import Element, Inline, Rich, Text, Typed
from handlers.formatting import when
from handlers.psa import rules
from storage import psa as psa_repo
from storage.models import Ticket
from storage.outbox import DeliveryState

# The plural of a write's name where adding "s" is wrong ("2 time entrys").
PLURALS = {"time entry": "time entries", "priority": "priorities"}


def _what(rows: Sequence[DeliveryState]) -> str:
    counts = Counter(rules.WHAT.get(r.kind, r.kind) for r in rows)
    return ", ".join(
        f"{n} {PLURALS.get(what, what + 's')}" if n > 1 else what for what, n in counts.items()
    )


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
        text: list[Inline] = [f"{name}: pending ({len(pending)} not sent yet: {_what(pending)})"]
        state = await psa_repo.gate(session, ticket.psa_system)
        if state is not None and state.auth_failed_at is not None:
            text.append(
                f"; {name} refuses the bot's credentials since {when(state.auth_failed_at)}"
            )
        elif state is not None and state.blocked_until and state.blocked_until > pending[0].due_at:
            text.append(f"; {name} asked to wait until {when(state.blocked_until)}")
        tried = [r for r in pending if r.attempts and r.last_error]
        if tried:
            # What the PSA answered: shown literally.
            text += ["; last answer: ", Typed(tried[0].last_error[:200])]
        out.append(Text(Rich(*text)))
    if lost:
        errors = "; ".join(r.last_error[:200] for r in lost if r.last_error)
        said = Rich("(", Typed(errors), ")") if errors else ""
        out.append(Text(Rich(f"{name}: not sent: {_what(lost)}", " " if errors else "", said)))
    for row in mine:
        if row.status == "delivered" and row.went_without:
            what = rules.WHAT.get(row.kind, row.kind)
            # Why (connector.py): it names what the PSA answered, shown literally.
            without = Typed(row.went_without[:400])
            out.append(Text(Rich(f"{name}: the {what} was sent without ", without)))
    return out


def kind_label(kind: str, system: str) -> str:
    """`ServiceNow note` for the deliveries list of `show`."""
    return f"{rules.name_of(system)} {rules.WHAT.get(kind, kind)}"
