"""The closure form and what is said when a ticket is closed (SPEC labels)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from cards.model import (
    ActionId,
    Card,
    Element,
    Form,
    Inline,
    Mention,
    Rich,
    Select,
    Text,
    TextInput,
    Typed,
)
from handlers.closure.rules import EXAMPLE
from handlers.durations import format_duration
from handlers.formatting import named
from storage.models import Ticket

CATEGORIES = [("Incident", "Incident"), ("Request", "Request"), ("Problem", "Problem")]
MAX_TEXT = 3000
MAX_KB = 500


def fix_unconfirmed(number: str) -> str:
    return (
        "Fix not confirmed by the requester: closing records that it was not confirmed "
        f"(`ticket confirm {number}` asks them first)."
    )


def closure_form(
    number: str,
    *,
    logged_minutes: int,
    summary: str = "",
    kb_required: Inline = "",
    kb_suggested: str = "",
    fix: Inline | None = None,
) -> Card:
    """Resolution note, category, time spent (required when no time is logged), KB article
    (required, with the reason, when the ticket is part of a pattern); above them whether the
    requester confirmed the fix (`fix`: None when not known)."""
    logged = (
        f"Time logged so far: {format_duration(timedelta(minutes=logged_minutes))}."
        if logged_minutes
        else "No time is logged yet: enter the time you spent."
    )
    body: list[Element] = [Text(Typed(summary))] if summary else []
    if fix is not None:
        body.append(Text(fix))
    if kb_required:
        body.append(Text(kb_required, about="kb_article"))
    body += [
        Text(logged, muted=True, about="time_spent"),
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
            placeholder="e.g. 45m, 1h30m, 1.5h or 30 min",
        ),
        TextInput(
            id="kb_article",
            label="KB article",
            required=bool(kb_required),
            value=kb_suggested,
            max_length=MAX_KB,
            placeholder="KB0012345 or a link",
        ),
    ]
    context = {"ticket": number, "logged": str(logged_minutes)}
    if kb_required:
        context["kb_required"] = "1"
    return Card(
        title=f"Close {number}",
        body=body,
        form=Form(action=ActionId.CLOSE_SUBMIT, submit_title="Close ticket", context=context),
        fallback=f"Close {number}",
    )


def rebuild_closure_form(_: Any, data: dict[str, str]) -> Card:
    """The closure form again from a submission's context (Teams shows errors on it; a KB
    article required by a pattern is said under its field)."""
    logged = data.get("logged", "0")
    return closure_form(
        data.get("ticket", ""),
        logged_minutes=int(logged)
        if logged.isascii() and logged.isdigit() and len(logged) < 9
        else 0,
        kb_required=KB_REQUIRED if data.get("kb_required") else "",
    )


KB_REQUIRED = "A KB article is required: this ticket is part of a pattern."


def closed_notice(ticket: Ticket, closer: Mention, remarks: list[str] | None = None) -> Rich:
    """The closure as the technician's thread hears it, with what the closer must know
    (`remarks`: an unconfirmed fix, filed reports closed with it or left open). The closer is
    named, not mentioned (the notice mentions the ticket's technician when it is for them);
    the resolution note is shown as typed."""
    return Rich(
        f"{ticket.number} was closed by ",
        named(closer),
        f" ({ticket.resolution_category}): ",
        Typed(ticket.resolution_note),
        *(f"\n{remark}" for remark in remarks or []),
    )
