"""What the PSA sync shows: the ticket card's PSA fact and tier, and what technicians are told."""

from __future__ import annotations

from datetime import datetime

from cards.model import Inline, Rich, Typed
from handlers.formatting import when
from handlers.psa import rules
from storage.models import Ticket

RESOLVED_TIER = ("psa", "psa-none", "psa-error")


def psa_number(ticket: Ticket) -> Inline:
    """The PSA's number for the ticket, as the PSA gave it: shown literally."""
    return Typed(ticket.psa_number or "")


def card_facts(ticket: Ticket) -> list[tuple[Inline, Inline]]:
    """`ServiceNow: INC0010001` once the PSA has the ticket, `pending` until then."""
    if not ticket.psa_system:
        return []
    return [
        (rules.name_of(ticket.psa_system), psa_number(ticket) if ticket.psa_number else "pending")
    ]


def tier_label(ticket: Ticket) -> Inline:
    """The ticket's tier and where it came from (`gold tier, from sla.clients`): the tier's
    name (a config value) and the contract's (from the PSA) shown literally."""
    name = rules.name_of(ticket.psa_system)
    contract = rules.CONTRACTS.get(ticket.psa_system, "contract")
    source = ticket.tier_source
    tier = Typed(ticket.tier)
    if source == "config":
        return Rich(tier, " tier, from sla.clients")
    if source == "pending":
        return Rich(tier, f" tier for now: asking {name} for the client's {contract}")
    if source == "psa":
        return Rich(tier, f" tier, from the {name} {contract} ", Typed(ticket.tier_contract))
    if source == "psa-none":
        return Rich(tier, f" tier, the default: no active {name} {contract} is in psa.tiers")
    if source == "psa-error":
        return Rich(tier, f" tier, the default: the {name} {contract} could not be read")
    if source == "default":
        return Rich(tier, " tier, the default")
    return Rich(tier, " tier")


def card_outdated(ticket: Ticket) -> bool:
    """A card rendered when the ticket was opened no longer shows what the PSA has said."""
    return bool(ticket.psa_system) and (
        ticket.psa_number is not None or ticket.tier_source in RESOLVED_TIER
    )


def outage_text(ticket: Ticket, *, error: str, since: datetime) -> Inline:
    """Told once per outage: the PSA refuses the credentials, nothing is lost (`error`: what
    the PSA answered, shown literally)."""
    name = rules.name_of(ticket.psa_system)
    return Rich(
        f"{name} refuses the bot's credentials (",
        Typed(error),
        f"), so {ticket.number} and other tickets "
        f"are not reaching {name} since {when(since)}. Nothing is lost: every write is kept "
        f"and sent once {name} accepts the credentials again (fix the PSA_* settings and "
        "restart the bot, or restore the integration account). Keep working tickets in chat; "
        "this is said once per outage.",
    )


def refused_text(ticket: Ticket, *, what: str, error: str) -> Inline:
    """A write the PSA will never take (`error`: what the PSA answered)."""
    name = rules.name_of(ticket.psa_system)
    return Rich(
        f"{name} refused the {what} for {ticket.number} and it will not be retried: ",
        Typed(error),
        f". Enter it in {name} by hand.",
    )


def doubt_text(ticket: Ticket, *, what: Inline, closure: bool = False) -> Inline:
    """A write that may or may not have reached the PSA and could not be looked up (once);
    `what` may quote a typed note."""
    name = rules.name_of(ticket.psa_system)
    where: Inline = (
        Rich(f"{ticket.number} (", psa_number(ticket), ")") if ticket.psa_number else ticket.number
    )
    return Rich(
        "The ",
        what,
        f" for {ticket.number} may or may not have reached {name}: it was sent but "
        f"no answer came back, and the bot has no way to check {name} for it. It is not sent "
        "again, so it cannot appear twice. Check ",
        where,
        f" in {name} and add it by hand if it is missing.",
        f" The ticket was not resolved in {name} either: resolve it there." if closure else "",
    )


def slow_text(ticket: Ticket, *, attempts: int, error: str) -> Inline:
    """A create that keeps failing (said once; `error`: what the PSA answered)."""
    name = rules.name_of(ticket.psa_system)
    return Rich(
        f"{ticket.number} has not reached {name} after {attempts} attempts (",
        Typed(error),
        "); still retrying. The ticket works in chat meanwhile.",
    )


def arrived_text(ticket: Ticket) -> Inline:
    """The create that was reported failing went through."""
    name = rules.name_of(ticket.psa_system)
    return Rich(f"{ticket.number} has reached {name} now as ", psa_number(ticket), ".")
