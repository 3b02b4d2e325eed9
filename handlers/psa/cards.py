"""What the PSA sync shows: the ticket card's PSA fact and tier, and what technicians are told."""

from __future__ import annotations

from datetime import datetime

from handlers.formatting import when
from handlers.psa import rules
from storage.models import Ticket

RESOLVED_TIER = ("psa", "psa-none", "psa-error")


def card_facts(ticket: Ticket) -> list[tuple[str, str]]:
    """`ServiceNow: INC0010001` once the PSA has the ticket, `pending` until then."""
    if not ticket.psa_system:
        return []
    return [(rules.name_of(ticket.psa_system), ticket.psa_number or "pending")]


def tier_label(ticket: Ticket) -> str:
    """The ticket's tier and where it came from (`gold tier, from sla.clients`)."""
    name = rules.name_of(ticket.psa_system)
    contract = rules.CONTRACTS.get(ticket.psa_system, "contract")
    source = ticket.tier_source
    if source == "config":
        return f"{ticket.tier} tier, from sla.clients"
    if source == "pending":
        return f"{ticket.tier} tier for now: asking {name} for the client's {contract}"
    if source == "psa":
        return f"{ticket.tier} tier, from the {name} {contract} {ticket.tier_contract}"
    if source == "psa-none":
        return f"{ticket.tier} tier, the default: no active {name} {contract} is in psa.tiers"
    if source == "psa-error":
        return f"{ticket.tier} tier, the default: the {name} {contract} could not be read"
    if source == "default":
        return f"{ticket.tier} tier, the default"
    return f"{ticket.tier} tier"


def card_outdated(ticket: Ticket) -> bool:
    """A card rendered when the ticket was opened no longer shows what the PSA has said."""
    return bool(ticket.psa_system) and (
        ticket.psa_number is not None or ticket.tier_source in RESOLVED_TIER
    )


def outage_text(ticket: Ticket, *, error: str, since: datetime) -> str:
    """Told once per outage: the PSA refuses the credentials, nothing is lost."""
    name = rules.name_of(ticket.psa_system)
    return (
        f"{name} refuses the bot's credentials ({error}), so {ticket.number} and other tickets "
        f"are not reaching {name} since {when(since)}. Nothing is lost: every write is kept "
        f"and sent once {name} accepts the credentials again (fix the PSA_* settings and "
        "restart the bot, or restore the integration account). Keep working tickets in chat; "
        "this is said once per outage."
    )


def refused_text(ticket: Ticket, *, what: str, error: str) -> str:
    """A write the PSA will never take."""
    name = rules.name_of(ticket.psa_system)
    return (
        f"{name} refused the {what} for {ticket.number} and it will not be retried: {error}. "
        f"Enter it in {name} by hand."
    )


def doubt_text(ticket: Ticket, *, what: str, closure: bool = False) -> str:
    """A write that may or may not have reached the PSA and could not be looked up (once)."""
    name = rules.name_of(ticket.psa_system)
    where = f"{ticket.number} ({ticket.psa_number})" if ticket.psa_number else ticket.number
    text = (
        f"The {what} for {ticket.number} may or may not have reached {name}: it was sent but "
        f"no answer came back, and the bot has no way to check {name} for it. It is not sent "
        f"again, so it cannot appear twice. Check {where} in {name} and add it by hand if it "
        "is missing."
    )
    if closure:
        text += f" The ticket was not resolved in {name} either: resolve it there."
    return text


def slow_text(ticket: Ticket, *, attempts: int, error: str) -> str:
    """A create that keeps failing (said once)."""
    name = rules.name_of(ticket.psa_system)
    return (
        f"{ticket.number} has not reached {name} after {attempts} attempts ({error}); still "
        "retrying. The ticket works in chat meanwhile."
    )


def arrived_text(ticket: Ticket) -> str:
    """The create that was reported failing went through."""
    name = rules.name_of(ticket.psa_system)
    return f"{ticket.number} has reached {name} now as {ticket.psa_number}."
