"""Which escalation facts a queue can act on (SPEC "Escalation facts"), field by field.

Whether a text is an answer at all is `handlers.answers`' call (the same rules as the closure
note); this module says which facts are required, how many words each needs, and what to write
instead, so each refusal names its field and its reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cards.model import Inline, Rich, Typed
from handlers.answers import MIN_WORDS, Problem, is_placeholder, problem, shown


@dataclass(frozen=True)
class Fact:
    """One escalation fact: its form id and label, how many words it needs, what it asks for."""

    id: str
    label: str
    min_words: int
    asks: str


FACTS = (
    Fact(
        "repro_steps",
        "Reproduction steps",
        MIN_WORDS,
        "the steps that make it happen, e.g. 'Connect to VPN from home, open Outlook, "
        "error 809 appears'",
    ),
    Fact("error_text", "Error text", 1, "the exact error message or code the user sees"),
    Fact(
        "already_tried",
        "Already tried",
        MIN_WORDS,
        "what was tried and what happened, e.g. 'Reinstalled the VPN client, same error'",
    ),
    Fact("asset_link", "Asset link", 1, "the RMM link or name of the affected device"),
    Fact(
        "user_impact",
        "User impact",
        1,
        "who is affected and how, e.g. '12 people in Berlin cannot work remotely'",
    ),
)


def _tickets_as_words(value: str, ticket_prefix: str) -> str:
    """`value` with this help desk's ticket numbers read as the word "ticket": pointing at a
    ticket (`See ticket HD-1.`, `same as HD-7`) tells the queue nothing the ticket does not,
    so such a text is the plea `see ticket` (another prefix's `E-809` stays an error code)."""
    number = re.compile(rf"(?<![A-Za-z0-9-]){re.escape(ticket_prefix)}-\d+\b", re.IGNORECASE)
    return number.sub(" ticket ", value)


def fact_problem(fact: Fact, value: str, *, required: bool, ticket_prefix: str) -> Inline | None:
    """Why `value` will not do for `fact` (None: it will). An optional fact is taken as typed
    (an Asset link of "n/a" for a ticket with no asset says just that)."""
    verdict = problem(_tickets_as_words(value, ticket_prefix), min_words=fact.min_words)
    if verdict is None or not required:
        return None
    if verdict is Problem.EMPTY:
        return f"{fact.label} is required to escalate: {fact.asks}."
    if verdict is Problem.PLACEHOLDER:
        return Rich(
            "'",
            Typed(shown(value)),
            f"' is a placeholder, not a fact the queue can act on: write {fact.asks}.",
        )
    return f"Too short for the queue to act on (at least {fact.min_words} words): {fact.asks}."


def has_asset(asset: str) -> bool:
    """Whether the ticket's Asset (as typed at intake) names one: not empty, and not a
    placeholder such as `n/a` or `-`, which says there is none. Its link is required only
    then: the form is prefilled with the asset, and a prefill the form itself refuses as a
    placeholder left no way to escalate but inventing a device."""
    return bool(asset.strip()) and not is_placeholder(asset)


def is_required(fact: Fact, *, asset: str) -> bool:
    """Every fact is required, except Asset link for a ticket with no asset."""
    return fact.id != "asset_link" or has_asset(asset)


def fact_problems(data: dict[str, str], *, asset: str, ticket_prefix: str) -> dict[str, Inline]:
    """Every fact that will not do, by form id, with its reason (`asset`: the ticket's;
    `ticket_prefix`: this help desk's, whose ticket numbers are no facts)."""
    errors: dict[str, Inline] = {}
    for fact in FACTS:
        required = is_required(fact, asset=asset)
        value = data.get(fact.id, "")
        if reason := fact_problem(fact, value, required=required, ticket_prefix=ticket_prefix):
            errors[fact.id] = reason
    return errors


def _flat(value: object) -> str:
    return " ".join(str(value or "").split())


def same_handoff(earlier: dict[str, object], facts: dict[str, str], *, queue: str) -> bool:
    """True when an accepted escalation (`earlier`, its audit data) sent `queue` these very
    facts (whitespace aside): a second press of Escalate, not new information."""
    if _flat(earlier.get("queue")) != _flat(queue):
        return False
    return all(_flat(earlier.get(fact.id)) == _flat(facts.get(fact.id)) for fact in FACTS)
