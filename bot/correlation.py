"""Correlation ids and ticket numbers carried on every log line of a request or delivery."""

from __future__ import annotations

import contextvars
import secrets

correlation_id: contextvars.ContextVar[str] = contextvars.ContextVar("correlation_id", default="-")
ticket_number: contextvars.ContextVar[str] = contextvars.ContextVar("ticket_number", default="-")


def new_correlation_id() -> str:
    """A short id shown to people in error messages and logged with every line."""
    value = secrets.token_hex(4)
    correlation_id.set(value)
    return value
