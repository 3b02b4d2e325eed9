"""Tickets: intake, the ticket card, `show` and `mine`.

`service` holds the use cases, `intake` the intake form and its validation, `cards` the ticket
card, `details` what `show` adds to it.
"""

from handlers.tickets.cards import (
    VERSION_COLUMNS,
    card_version,
    ticket_buttons,
    ticket_card,
    ticket_line,
)
from handlers.tickets.delivery_labels import in_sentence, label_of
from handlers.tickets.intake import categories, intake_card
from handlers.tickets.service import (
    announce,
    create_ticket,
    current_card,
    load,
    mine,
    open_form,
    opened_card,
    remember_card,
    show,
)

__all__ = [
    "VERSION_COLUMNS",
    "announce",
    "card_version",
    "categories",
    "create_ticket",
    "current_card",
    "in_sentence",
    "intake_card",
    "label_of",
    "load",
    "mine",
    "open_form",
    "opened_card",
    "remember_card",
    "show",
    "ticket_buttons",
    "ticket_card",
    "ticket_line",
]
