"""Notifiers deliver outbox rows to the outside world (Slack, Teams, PagerDuty, Opsgenie)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from storage.models import OutboxMessage


def retry_after_seconds(value: str | None) -> float | None:
    """`Retry-After` as seconds: delta-seconds, an HTTP date, or an RFC 3339 / ISO 8601
    date-time (Freshservice's swagger types it so; without an offset it is UTC); None when
    absent or unusable (NaN and infinity included: `1e999` parses as an infinite float, which
    no clock or message can use). Callers cap it (storage.outbox.MAX_RETRY_AFTER)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:  # "NaN" parses as a float: not a wait (it broke the timestamp of the next retry)
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        until = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        try:
            until = datetime.fromisoformat(value)
        except ValueError:
            return None
    if until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    return max((until - datetime.now(UTC)).total_seconds(), 0.0)


class DeliveryError(Exception):
    """A failed attempt. `permanent`: retrying cannot help (bad request, no access).
    `uncertain`: it may have arrived anyway (a timeout after the request went out), so the
    row is looked up before it is sent again. `place`: where a Retry-After applies (see
    bot.places), when the refusal was a throttle."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        permanent: bool = False,
        uncertain: bool = False,
        place: str | None = None,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.permanent = permanent
        self.uncertain = uncertain
        self.place = place


class Notifier(Protocol):
    async def deliver(self, message: OutboxMessage) -> dict[str, Any]:
        """Send one row; return what to remember (message ts, activity id...)."""
        ...

    # Optional: `places(message) -> tuple[str, ...]`, where sending the row goes
    # (bot.places), so Retry-After windows and pacing are respected before a send;
    # `repeats_in_doubt(message) -> bool`, True when an earlier attempt of the row cannot be
    # looked up (a Teams message), so a resend in doubt may deliver it twice: after a sender
    # that died, the worker resends it once at most; and `stop()`, called when the worker
    # closes, to end a wait after a send (e.g. Opsgenie's confirmation) at once, so its
    # outcome is recorded before shutdown goes on.


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

    def stop(self) -> None:
        """The worker is closing: notifiers that wait after a send stop waiting."""
        for notifier in {id(n): n for n in self._by_key.values()}.values():
            stop = getattr(notifier, "stop", None)
            if stop is not None:
                stop()

    def places_of(self, message: OutboxMessage) -> tuple[str, ...]:
        places = getattr(self.find(message), "places", None)
        return tuple(places(message)) if places is not None else ()

    def repeats_in_doubt(self, message: OutboxMessage) -> bool:
        repeats = getattr(self.find(message), "repeats_in_doubt", None)
        return bool(repeats(message)) if repeats is not None else False

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
