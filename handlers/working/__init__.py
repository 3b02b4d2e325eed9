"""Working the ticket to the end: the requester confirms the fix, duplicate reports are filed
under the P1, the Tier 1 scope and its nudge, files shared on a ticket, the remote session.

`service` holds the intake hooks (scope, remote link, the open P1 a ticket repeats, the
nudge), `confirm` the requester's confirmation, `linking` the reports filed under a P1,
`attachments` files and thread messages, `cards` what they show, `rules` the pure rules.
"""

from handlers.working.attachments import on_message
from handlers.working.cards import (
    card_buttons,
    card_elements,
    card_facts,
    card_links,
    fix_line,
    users_affected,
)
from handlers.working.confirm import broken, comment, confirm_command, retire_on_close, works
from handlers.working.details import show_lines
from handlers.working.linking import (
    add_button,
    close_filed,
    closing_with,
    drop_p1_matches,
    filed_addresses,
    link_command,
)
from handlers.working.rules import ticket_numbers
from handlers.working.service import intake_facts, nudge_given_up, on_ticket_opened

__all__ = [
    "add_button",
    "broken",
    "card_buttons",
    "card_elements",
    "card_facts",
    "card_links",
    "close_filed",
    "closing_with",
    "comment",
    "confirm_command",
    "drop_p1_matches",
    "filed_addresses",
    "fix_line",
    "intake_facts",
    "link_command",
    "nudge_given_up",
    "on_message",
    "on_ticket_opened",
    "retire_on_close",
    "show_lines",
    "ticket_numbers",
    "users_affected",
    "works",
]
