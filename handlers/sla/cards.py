"""What the SLA clock says: the status lines of `show` and the card, warnings and breaches."""

from __future__ import annotations

from datetime import datetime, timedelta

from cards.model import Inline, Rich, Typed
from handlers.durations import format_duration
from handlers.formatting import named, someone, technician, when
from handlers.sla.rules import TARGETS, Target, outcome
from handlers.types import REPLY_CHAIN, channel_of
from storage.models import Ticket

NAMES = {"respond": "Respond", "resolve": "Resolve"}


def due_text(due: datetime, now: datetime) -> str:
    """`14:02 UTC` on the day it is due, else with its date."""
    if due.date() == now.date():
        return due.strftime("%H:%M UTC")
    return when(due)


def due_of(ticket: Ticket, target: Target) -> datetime:
    return ticket.respond_by if target == "respond" else ticket.resolve_by


def met_of(ticket: Ticket, target: Target) -> bool | None:
    return ticket.respond_met if target == "respond" else ticket.resolve_met


def status_line(ticket: Ticket, target: Target, now: datetime) -> str:
    """`Respond: missed (due 14:02 UTC)`."""
    due = due_of(ticket, target)
    state = outcome(met_of(ticket, target), due, now)
    return f"{NAMES[target]}: {state} (due {due_text(due, now)})"


def status_lines(ticket: Ticket, now: datetime) -> list[Inline]:
    """Both targets, then who responded first and how (once someone has)."""
    lines: list[Inline] = [status_line(ticket, target, now) for target in TARGETS]
    if ticket.first_response_at is not None:
        lines.append(first_response_line(ticket))
    return lines


def first_response_line(ticket: Ticket) -> Inline:
    by = ticket.first_response_by or "-"
    via = ticket.first_response_channel.split(":", 1)
    # Another technician than the ticket's: only their platform id is kept, a mention on
    # Slack (it shows their name there).
    who: Inline = technician(ticket) if by == ticket.technician_id else someone(via[0], by, None)
    conversation = via[1] if len(via) > 1 else ""
    if via[0] == "teams":
        where = "Teams" + (f", in {teams_place(conversation, ticket)}" if conversation else "")
    else:
        where = via[0] + (f" ({conversation})" if conversation else "")
    return Rich(f"First response: {when(ticket.first_response_at)} by ", who, f" via {where}")


def teams_place(conversation: str, ticket: Ticket) -> str:
    """A Teams conversation as a person reads it: its id (`a:1Xk…`, `19:…@thread.tacv2`) means
    nothing to them."""
    if ticket.source_platform == "teams" and channel_of(conversation) == channel_of(
        ticket.source_channel or ""
    ):
        return "the ticket's conversation"
    if conversation.startswith("a:"):
        return "a 1:1 chat with the bot"
    if conversation.endswith("@thread.tacv2") or REPLY_CHAIN in conversation:
        return "a channel"
    return "another chat"


def _left(due: datetime, now: datetime) -> str:
    """What is left, to the nearest minute (`15m`), in seconds under a minute."""
    seconds = max(round((due - now).total_seconds()), 0)
    if seconds < 60:
        return f"{seconds}s"
    return format_duration(timedelta(minutes=round(seconds / 60)))


def untaken_text(ticket: Ticket) -> str:
    """Added to what is said for the technician of a ticket nobody has taken yet."""
    return f" No technician has taken {ticket.number} yet."


def warning_text(ticket: Ticket, target: Target, now: datetime, *, untaken: bool = False) -> str:
    """Said in the ticket's thread `sla.warn_before` ahead of the target (`untaken`: a ticket
    a non-technician opened that no technician has taken yet)."""
    due = due_of(ticket, target)
    head = f"SLA warning: {ticket.number} ({ticket.priority}) is due to "
    tail = untaken_text(ticket) if untaken else ""
    if target == "respond":
        return (
            f"{head}get its first response by {due_text(due, now)} ({_left(due, now)} left) and "
            f"has none yet. Any action on it counts: a card button, time, verify, escalate.{tail}"
        )
    return f"{head}be resolved by {due_text(due, now)} ({_left(due, now)} left).{tail}"


def breach_thread_text(
    ticket: Ticket, target: Target, now: datetime, *, untaken: bool = False
) -> str:
    """Said in the ticket's thread when a target is missed."""
    due = due_of(ticket, target)
    what = "no first response" if target == "respond" else "not resolved"
    return (
        f"SLA breach: {ticket.number} ({ticket.priority}) missed its {target} target "
        f"(due {due_text(due, now)}): {what} yet." + (untaken_text(ticket) if untaken else "")
    )


def breach_channel_text(
    ticket: Ticket, target: Target, now: datetime, *, untaken: bool = False
) -> Rich:
    """A new message in the ticket channel, naming the ticket (it is read outside the thread).
    The summary and client are shown as typed; the technician is named without a mention (the
    thread's breach has notified them), or said to be none yet (`untaken`)."""
    due = due_of(ticket, target)
    client = Rich(", ", Typed(ticket.client)) if ticket.client else ""
    who: Inline = (
        " - no technician has taken it yet"
        if untaken
        else Rich(" - technician ", named(technician(ticket)))
    )
    return Rich(
        f"SLA breach on {ticket.number} ({ticket.priority}",
        client,
        f"): {target} target missed (due {due_text(due, now)}). ",
        Typed(ticket.summary[:200]),
        who,
        ".",
    )
