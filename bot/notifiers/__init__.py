"""Notifiers deliver outbox rows to the outside world (Slack, Teams, PagerDuty, Opsgenie)."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from storage.models import OutboxMessage


def retry_after_seconds(value: str | None) -> float | None:
    """`Retry-After` as seconds (delta-seconds or an HTTP date); None when absent or unusable."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max((parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds(), 0.0)
    except (TypeError, ValueError):
        return None


class DeliveryError(Exception):
    """A failed attempt. `permanent` means retrying cannot help (bad request, no access)."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, permanent: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.permanent = permanent


class Notifier(Protocol):
    async def deliver(self, message: OutboxMessage) -> dict[str, Any]:
        """Send one row; return what to remember (message ts, activity id...)."""
        ...


class Notifiers:
    """Routes a row to the notifier for its kind, or for the platform in its payload."""

    def __init__(self) -> None:
        self._by_key: dict[str, Notifier] = {}

    def register(self, key: str, notifier: Notifier) -> None:
        """`key` is a kind (`page.pagerduty`) or `kind:platform` (`message:slack`)."""
        self._by_key[key] = notifier

    def find(self, message: OutboxMessage) -> Notifier | None:
        platform = message.payload.get("platform")
        return self._by_key.get(f"{message.kind}:{platform}") or self._by_key.get(message.kind)

    async def deliver(self, message: OutboxMessage) -> dict[str, Any]:
        notifier = self.find(message)
        if notifier is None:
            # Not configured here (e.g. Slack disabled): keep it queued and say why.
            raise DeliveryError(
                f"no notifier for {message.kind} ({message.payload.get('platform', '-')}) "
                "is configured",
                retry_after=300.0,
            )
        return await notifier.deliver(message)
