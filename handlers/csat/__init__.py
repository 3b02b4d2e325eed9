"""CSAT: the survey and the personal follow-up queued on closure, and the requester's answer."""

from handlers.csat.service import (
    comment,
    on_survey_delivered,
    rate,
    schedule_followup,
    schedule_survey,
    survey_address,
    survey_facts,
    tell_technician_or_closer,
)

__all__ = [
    "comment",
    "on_survey_delivered",
    "rate",
    "schedule_followup",
    "schedule_survey",
    "survey_address",
    "survey_facts",
    "tell_technician_or_closer",
]
