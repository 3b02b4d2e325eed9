"""P1 incidents: the incident-channel notice and the pages (`service`), and what they say
(`cards`)."""

from handlers.incidents.service import on_p1, on_ticket_closed, raise_p1_command

__all__ = ["on_p1", "on_ticket_closed", "raise_p1_command"]
