"""The ticket card and small text renderings of tickets."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row

from cards.model import ActionId, Button, Card, Element, Facts, Inline, Rich, Text, Typed
from handlers.formatting import requester, technician, when
from handlers.psa import card_facts, tier_label
from handlers.sla import status_lines
from handlers.working import card_buttons, card_elements, card_links, users_affected
from handlers.working import card_facts as scope_facts
from storage.models import Ticket, utcnow
from storage.tickets import TicketLine

# The card's warning when the requester's account is disabled in the directory (see
# handlers/identity: a gated ticket's check asks no manager then).
REQUESTER_DISABLED = (
    "Warning: Requester's account is disabled in the directory (someone who left?). Do not "
    "reset passwords or MFA for it: check with their manager or HR through a channel you "
    "already know."
)


# The Identity fact on a card its non-technician opener reads (the card in their thread or
# chat, their `show`): whether the check is waiting or a manager denied it is for technicians.
# The person typing may be posing as the requester; a card saying "denied" warns them off.
OPENER_IDENTITY = "not confirmed"


def identity_for_opener(ticket: Ticket, fact: Inline | None) -> Inline | None:
    """The card's Identity fact as a non-technician may see it: `not confirmed` for every
    state short of confirmed (required, pending, denied alike), else `fact`."""
    if ticket.identity_state in ("required", "pending", "denied"):
        return OPENER_IDENTITY
    return fact


def ticket_buttons(number: str) -> list[Button]:
    value = {"ticket": number}
    return [
        Button(ActionId.VERIFY, "Verify identity", value),
        Button(ActionId.ESCALATE, "Escalate", value),
        Button(ActionId.CLOSE, "Close", value, style="danger"),
    ]


def ticket_card(
    ticket: Ticket,
    *,
    extra: list[Element] | None = None,
    buttons: bool = True,
    now: datetime | None = None,
    identity: Inline | None = None,
    who: Inline | None = None,
) -> Card:
    """Number, priority, requester, summary, exact error, SLA times and where each target
    stands at `now`, warning; then buttons. `identity`: how the identity was confirmed, when
    the card should say more than its state (`identity.card_fact`). `who`: the technician as
    the card names them (`notify.technician_shown`; default the ticket's).

    What people typed (summary, error, what they were doing, asset, client...) is `Typed`.
    """
    facts: list[tuple[Inline, Inline]] = [
        ("Ticket", ticket.number),
        *card_facts(ticket),
        ("Priority", ticket.priority),
        ("Status", ticket.status),
        ("Requester", requester(ticket)),
        ("Technician", technician(ticket) if who is None else who),
        ("Category", Typed(ticket.category) if ticket.category else "-"),
        *scope_facts(ticket),
        ("Users affected", users_affected(ticket)),
        ("Reproducible", ticket.reproducible),
        ("Respond by", when(ticket.respond_by)),
        ("Resolve by", when(ticket.resolve_by)),
    ]
    if ticket.asset:
        facts.append(("Asset", Typed(ticket.asset)))
    if ticket.client:
        facts.append(("Client", Rich(Typed(ticket.client), " (", tier_label(ticket), ")")))
    if ticket.identity_state != "not_required":
        facts.append(("Identity", identity or ticket.identity_state))
    body: list[Element] = [Facts(facts)]
    if ticket.requester_disabled:
        body.append(Text(REQUESTER_DISABLED))
    body += [Text(line) for line in status_lines(ticket, now or utcnow())]
    if ticket.priority_warning:
        body.append(Text(f"Warning: {ticket.priority_warning}"))
    if ticket.error_text:
        body += [Text("Exact error text", muted=True), Text(Typed(ticket.error_text))]
    if ticket.doing:
        body += [Text("What they were doing", muted=True), Text(Typed(ticket.doing))]
    body += resolution_elements(ticket)
    body += card_elements(ticket)
    body += extra or []
    live = buttons and ticket.status == "open"
    return Card(
        title=Rich(f"{ticket.number} ({ticket.priority}): ", Typed(ticket.summary)),
        body=body,
        buttons=[*ticket_buttons(ticket.number), *card_buttons(ticket)] if live else [],
        fallback=(
            f"{ticket.number} ({ticket.priority}) {ticket.summary} - respond by "
            f"{when(ticket.respond_by)}, resolve by {when(ticket.resolve_by)}"
        ),
        links=card_links(ticket) if live else [],
    )


def resolution_elements(ticket: Ticket) -> list[Element]:
    """A closed ticket's resolution, as its card shows it (and so `show`): the note, when it
    was closed, the resolution category and the KB article. Whoever finds the card in the
    channel later sees how it was fixed without asking."""
    if ticket.status != "closed":
        return []
    facts: list[tuple[Inline, Inline]] = [
        ("Closed", when(ticket.closed_at)),
        ("Resolution category", ticket.resolution_category or "-"),
    ]
    if ticket.kb_article:
        facts.append(("KB article", Typed(ticket.kb_article)))
    return [Text("Resolution", muted=True), Text(Typed(ticket.resolution_note)), Facts(facts)]


# The ticket's columns `card_version` reads (a delivery reads just these, with its UPDATE).
VERSION_COLUMNS = (
    "status",
    "priority",
    "identity_state",
    "requester_disabled",
    "respond_by",
    "resolve_by",
    "tier",
    "tier_source",
    "psa_number",
    "fix_state",
    "filed_under",
    "filed_count",
    "respond_met",
    "resolve_met",
    "p1_match",
    "technician_id",
)


def card_version(ticket: Ticket | Row[Any]) -> str:
    """What the card shows that can change after it was sent (compared to refresh it): the
    ticket's VERSION_COLUMNS, from the ticket or a row of them."""
    return "|".join(
        (
            ticket.status,
            ticket.priority,
            ticket.identity_state,
            str(ticket.requester_disabled),
            ticket.respond_by.isoformat(),
            ticket.resolve_by.isoformat(),
            ticket.tier,
            ticket.tier_source,
            ticket.psa_number or "",
            ticket.fix_state,
            ticket.filed_under or "",
            str(ticket.filed_count),
            str(ticket.respond_met),
            str(ticket.resolve_met),
            ticket.p1_match,
            ticket.technician_id,
        )
    )


def ticket_line(ticket: Ticket | TicketLine) -> Inline:
    due = when(ticket.resolve_by)
    # One line per ticket: a summary's line breaks become spaces (the rest as typed), a long
    # one ends with "…".
    summary = " ".join(ticket.summary.splitlines())
    summary = summary if len(summary) <= 80 else summary[:79].rstrip() + "…"
    return Rich(f"{ticket.number} ({ticket.priority}) ", Typed(summary), f" - resolve by {due}")
