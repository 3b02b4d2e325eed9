"""The escalation form (SPEC labels) and the card the queue is shown."""

from __future__ import annotations

from typing import Any

from cards.model import (
    ActionId,
    Card,
    Element,
    Facts,
    Form,
    Inline,
    Rich,
    Select,
    Text,
    TextInput,
    Typed,
)
from handlers.config import HelpdeskConfig
from handlers.escalation.rules import FACTS, is_required
from handlers.formatting import requester
from handlers.working import users_affected
from storage.models import Ticket

MAX_TEXT = 3000


def queue_names(config: HelpdeskConfig) -> list[str]:
    """Every queue the config knows: `escalation.queues` values and `queues` keys."""
    return sorted({*config.escalation.queues.values(), *config.queues})


def escalation_form(
    config: HelpdeskConfig, number: str, *, error_text: str = "", asset: str = "", queue: str = ""
) -> Card:
    """The form, prefilled from the ticket; Asset link is required when the ticket has one."""
    prefill = {"error_text": error_text, "asset_link": asset}
    body: list[Element] = [
        TextInput(
            id=fact.id,
            label=fact.label,
            required=is_required(fact, asset=asset),
            multiline=fact.id != "asset_link",
            max_length=MAX_TEXT,
            value=prefill.get(fact.id, ""),
        )
        for fact in FACTS
    ]
    body.append(
        Select(
            id="queue",
            label="Queue",
            required=True,
            value=queue,
            options=[(q, q) for q in queue_names(config)],
        )
    )
    return Card(
        title=f"Escalate {number}",
        body=body,
        form=Form(
            action=ActionId.ESCALATE_SUBMIT, submit_title="Escalate", context={"ticket": number}
        ),
        fallback=f"Escalate {number}",
    )


def rebuild_escalation_form(deps: Any, data: dict[str, str]) -> Card:
    """The escalation form again from a submission (Teams shows errors on it)."""
    return escalation_form(deps.config, data.get("ticket", ""))


def escalation_card(ticket: Ticket, facts: dict[str, str], *, queue: str, by: Inline) -> Card:
    """What the queue is shown: the ticket, who escalated it, and every fact as typed."""
    body: list[Element] = [
        Facts(
            [
                ("Ticket", ticket.number),
                ("Priority", ticket.priority),
                ("Queue", Typed(queue)),
                ("Requester", requester(ticket)),
                ("Escalated by", by),
                # As the ticket card says it: a P1's own and its filed reports' (SPEC).
                ("Users affected", users_affected(ticket)),
                ("Asset link", Typed(facts["asset_link"]) if facts.get("asset_link") else "-"),
            ]
        )
    ]
    for fact in FACTS:
        if fact.id != "asset_link":
            body += [Text(fact.label, muted=True), Text(Typed(facts.get(fact.id, "")))]
    return Card(
        title=Rich(f"Escalated {ticket.number} ({ticket.priority}): ", Typed(ticket.summary)),
        body=body,
        fallback=f"{ticket.number} escalated to {queue}: {ticket.summary}",
    )
