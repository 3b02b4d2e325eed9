"""P1 incidents: the incident-channel notice and the pages (`service`), and what they say
(`cards`)."""

from handlers.incidents.cards import current_notice
from handlers.incidents.service import (
    PAGER_NAMES,
    cancel_unsent,
    is_first_page,
    on_p1,
    on_ticket_closed,
    page_given_up,
    raise_p1_command,
    refresh_notice,
)

__all__ = [
    "PAGER_NAMES",
    "cancel_unsent",
    "current_notice",
    "is_first_page",
    "on_p1",
    "on_ticket_closed",
    "page_given_up",
    "raise_p1_command",
    "refresh_notice",
]
