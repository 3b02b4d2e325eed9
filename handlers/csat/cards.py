"""What the requester and the technician are shown for CSAT: survey, comment, follow-up."""

from __future__ import annotations

from cards.model import ActionId, Button, Card, Facts, Form, Rich, Text, TextInput, Typed
from handlers.formatting import requester, when
from storage.models import Ticket

MAX_COMMENT = 2000
RATINGS = ("1", "2", "3", "4", "5")
COMMENT_TITLE = "Add a comment"


def survey_card(ticket: Ticket, nonce: str) -> Card:
    """Buttons `1` ... `5`; an optional comment (inline input in Teams, a modal in Slack)."""
    value = {"survey": nonce}
    buttons = [Button(ActionId.CSAT_RATE, r, {**value, "rating": r}) for r in RATINGS]
    buttons.append(Button(ActionId.CSAT_COMMENT, COMMENT_TITLE, value))
    return Card(
        title=f"How did we do on {ticket.number}?",
        body=[
            Text(
                Rich(
                    'Your ticket "',
                    Typed(ticket.summary),
                    '" was closed. Please rate the help you got from 1 (poor) to 5 (excellent).',
                )
            ),
            Facts([("Ticket", ticket.number), ("Resolution", Typed(ticket.resolution_note))]),
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
    person = requester(ticket)
    return Card(
        title=f"Personal follow-up: {ticket.number}",
        body=[
            Text(
                Rich(
                    "Please write to ",
                    person,
                    " personally to check that all is well after "
                    f"{ticket.number} ({' and '.join(reasons)}).",
                )
            ),
            Facts(
                [
                    ("Ticket", ticket.number),
                    ("Summary", Typed(ticket.summary)),
                    ("Requester", person),
                    ("Closed", when(ticket.closed_at)),
                    ("Resolution", Typed(ticket.resolution_note)),
                ]
            ),
        ],
        fallback=f"Personal follow-up due for {ticket.number}: write to {person.plain()}.",
    )
