"""Closing a ticket: time entries, the closure form, the resolution-note rules.

`service` holds the use cases, `rules` says whether a resolution note is good enough, `cards`
is the closure form.
"""

from handlers.closure.cards import rebuild_closure_form
from handlers.closure.rules import note_problem
from handlers.closure.service import (
    add_time,
    close_button,
    close_command,
    entry_minutes,
    submit,
    time_command,
)

__all__ = [
    "add_time",
    "close_button",
    "close_command",
    "entry_minutes",
    "note_problem",
    "rebuild_closure_form",
    "submit",
    "time_command",
]
