"""Escalation: the form with the facts a queue needs, and the notice to the queue."""

from handlers.config import unheard_queues
from handlers.escalation.cards import rebuild_escalation_form
from handlers.escalation.service import escalate_button, escalate_command, submit

__all__ = [
    "escalate_button",
    "escalate_command",
    "rebuild_escalation_form",
    "submit",
    "unheard_queues",
]
