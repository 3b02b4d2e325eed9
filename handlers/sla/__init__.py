"""SLA: the matrix (client -> tier -> priority) and the priority rules (`rules`)."""

from handlers.sla.rules import PRIORITY_MEANING, SlaDue, due_times, priority_warning

__all__ = ["PRIORITY_MEANING", "SlaDue", "due_times", "priority_warning"]
