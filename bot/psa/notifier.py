"""Delivers PSA outbox rows (`psa.create`, `psa.note`, ...) through the configured connector."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.notifiers import DeliveryError
from handlers import psa
from handlers.psa import PsaConnector, PsaError
from storage.models import OutboxMessage

log = logging.getLogger(__name__)
# Refused credentials: the row waits this long (one write at a time tests them meanwhile).
AUTH_RETRY = 300.0


class PsaNotifier:
    def __init__(self, connector: PsaConnector, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.connector = connector
        self.sessions = sessions

    def __repr__(self) -> str:
        return f"PsaNotifier({self.connector!r})"

    async def deliver(self, message: OutboxMessage) -> dict[str, Any]:
        try:
            return await psa.perform(
                self.connector,
                kind=message.kind,
                payload=message.payload,
                attempts=message.attempts,
            )
        except PsaError as exc:
            try:
                await psa.record_failure(self.sessions, message=message, error=exc)
            except Exception:
                log.exception("could not record the PSA failure of outbox row %s", message.id)
            retry_after = AUTH_RETRY if exc.kind == "auth" else exc.retry_after
            raise DeliveryError(str(exc), retry_after=retry_after, permanent=exc.permanent) from exc
