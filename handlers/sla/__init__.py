"""The SLA clock: the matrix and priority rules (`rules`), first response, warnings and
breaches as outbox rows with due times (`service`), what they say and how `show` and the card
state each target (`cards`), and the check each row makes just before it is sent
(`deliveries`)."""

from handlers.sla.cards import status_lines
from handlers.sla.deliveries import is_alarm, prepare_alarm
from handlers.sla.rules import PRIORITY_MEANING, SlaDue, due_times, outcome, priority_warning
from handlers.sla.service import (
    alarm_of_key,
    move_targets,
    on_closed,
    record_first_response,
    retarget,
    schedule,
)

__all__ = [
    "PRIORITY_MEANING",
    "SlaDue",
    "alarm_of_key",
    "due_times",
    "is_alarm",
    "move_targets",
    "on_closed",
    "outcome",
    "prepare_alarm",
    "priority_warning",
    "record_first_response",
    "retarget",
    "schedule",
    "status_lines",
]
