"""Forms and cards of closure, CSAT and escalation (SPEC labels, one model for both platforms)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from cards.model import ActionId, Button, Card, Element, Facts, Form, Select, Text, TextInput
from handlers.closure_rules import EXAMPLE
from handlers.config import HelpdeskConfig
from handlers.durations import format_duration
from handlers.formatting import person, when
from storage.models import Ticket

CATEGORIES = [("Incident", "Incident"), ("Request", "Request"), ("Problem", "Problem")]
MAX_TEXT = 3000
MAX_KB = 500
MAX_COMMENT = 2000
RATINGS = ("1", "2", "3", "4", "5")
COMMENT_TITLE = "Add a comment"


# -- closure ---------------------------------------------------------------------------------


def closure_form(number: str, *, logged_minutes: int, summary: str = "") -> Card:
    """Resolution note, category, time spent (required when no time is logged), KB article."""
    logged = (
        f"Time logged so far: {format_duration(timedelta(minutes=logged_minutes))}."
        if logged_minutes
        else "No time is logged yet: enter the time you spent."
    )
    body: list[Element] = [Text(summary)] if summary else []
    body += [
        Text(logged, muted=True),
        TextInput(
            id="resolution_note",
            label="Resolution note",
            required=True,
            multiline=True,
            max_length=MAX_TEXT,
            placeholder=f"What you did, to what: {EXAMPLE}",
        ),
        Select(
            id="resolution_category", label="Resolution category", options=CATEGORIES, required=True
        ),
        TextInput(
            id="time_spent",
            label="Time spent",
            required=not logged_minutes,
            max_length=20,
            placeholder="e.g. 45m, 1h30m or 2h",
        ),
        TextInput(
            id="kb_article",
            label="KB article",
            max_length=MAX_KB,
            placeholder="KB0012345 or a link",
        ),
    ]
    return Card(
        title=f"Close {number}",
        body=body,
        form=Form(
            action=ActionId.CLOSE_SUBMIT,
            submit_title="Close ticket",
            context={"ticket": number, "logged": str(logged_minutes)},
        ),
        fallback=f"Close {number}",
    )


def rebuild_closure_form(_: Any, data: dict[str, str]) -> Card:
    """The closure form again from a submission's context (Teams shows errors on it)."""
    logged = data.get("logged", "0")
    return closure_form(
        data.get("ticket", ""), logged_minutes=int(logged) if logged.isdigit() else 0
    )


def closed_notice(ticket: Ticket, closer: str) -> str:
    return (
        f"{ticket.number} was closed by {closer} ({ticket.resolution_category}): "
        f"{ticket.resolution_note}"
    )


# -- CSAT ------------------------------------------------------------------------------------


def survey_card(ticket: Ticket, nonce: str) -> Card:
    """Buttons `1` ... `5`; an optional comment (inline input in Teams, a modal in Slack)."""
    value = {"survey": nonce}
    buttons = [Button(ActionId.CSAT_RATE, r, {**value, "rating": r}) for r in RATINGS]
    buttons.append(Button(ActionId.CSAT_COMMENT, COMMENT_TITLE, value))
    return Card(
        title=f"How did we do on {ticket.number}?",
        body=[
            Text(
                f'Your ticket "{ticket.summary}" was closed. Please rate the help you got '
                "from 1 (poor) to 5 (excellent)."
            ),
            Facts([("Ticket", ticket.number), ("Resolution", ticket.resolution_note)]),
            TextInput(
                id="comment", label="Comment (optional)", multiline=True, max_length=MAX_COMMENT
            ),
        ],
        buttons=buttons,
        fallback=f"How did we do on {ticket.number}? Rate 1 to 5.",
    )


def comment_form(number: str, nonce: str) -> Card:
    return Card(
        title=f"Comment on {number}",
        body=[
            TextInput(
                id="comment", label="Comment", required=True, multiline=True, max_length=MAX_COMMENT
            )
        ],
        form=Form(action=ActionId.CSAT_COMMENT, submit_title="Send", context={"survey": nonce}),
        fallback=f"Comment on {number}",
    )


def followup_card(ticket: Ticket, reasons: list[str]) -> Card:
    requester = person(ticket.requester_name, ticket.requester_email or ticket.requester_id)
    return Card(
        title=f"Personal follow-up: {ticket.number}",
        body=[
            Text(
                f"Please write to {requester} personally to check that all is well after "
                f"{ticket.number} ({' and '.join(reasons)})."
            ),
            Facts(
                [
                    ("Ticket", ticket.number),
                    ("Summary", ticket.summary),
                    ("Requester", requester),
                    ("Closed", when(ticket.closed_at)),
                    ("Resolution", ticket.resolution_note),
                ]
            ),
        ],
        fallback=f"Personal follow-up due for {ticket.number}: write to {requester}.",
    )


# -- escalation ------------------------------------------------------------------------------

ESCALATION_FIELDS = [
    ("repro_steps", "Reproduction steps", True),
    ("error_text", "Error text", True),
    ("already_tried", "Already tried", True),
    ("asset_link", "Asset link", False),
    ("user_impact", "User impact", True),
]


def queue_names(config: HelpdeskConfig) -> list[str]:
    """Every queue the config knows: `escalation.queues` values and `queues` keys."""
    return sorted({*config.escalation.queues.values(), *config.queues})


def escalation_form(
    config: HelpdeskConfig, number: str, *, error_text: str = "", asset: str = "", queue: str = ""
) -> Card:
    prefill = {"error_text": error_text, "asset_link": asset}
    body: list[Element] = [
        TextInput(
            id=ident,
            label=label,
            required=required,
            multiline=ident != "asset_link",
            max_length=MAX_TEXT,
            value=prefill.get(ident, ""),
        )
        for ident, label, required in ESCALATION_FIELDS
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


def escalation_card(ticket: Ticket, facts: dict[str, str], *, queue: str, by: str) -> Card:
    body: list[Element] = [
        Facts(
            [
                ("Ticket", ticket.number),
                ("Priority", ticket.priority),
                ("Queue", queue),
                ("Requester", person(ticket.requester_name, ticket.requester_id)),
                ("Escalated by", by),
                ("Users affected", str(ticket.users_affected)),
                ("Asset link", facts.get("asset_link") or "-"),
            ]
        )
    ]
    for ident, label, _ in ESCALATION_FIELDS:
        if ident != "asset_link":
            body += [Text(label, muted=True), Text(facts.get(ident, ""))]
    return Card(
        title=f"Escalated {ticket.number} ({ticket.priority}): {ticket.summary}",
        body=body,
        fallback=f"{ticket.number} escalated to {queue}: {ticket.summary}",
    )
