"""What every use case needs, built once at start-up and passed in (no globals)."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from handlers.config import HelpdeskConfig
from handlers.directory import Directory, DirectoryUnavailable, Person
from handlers.types import Actor, Forbidden
from storage import error_signatures, inbound
from storage.inbound import SessionFactory

if TYPE_CHECKING:
    from handlers.diagnosis import ChangeCalendar, KbSource


def _utcnow() -> datetime:
    return datetime.now(UTC)


_OBSERVED = "helpdesk.observed"


def observe_on_commit(deps: Deps, session: AsyncSession, name: str, **labels: str) -> None:
    """`deps.observe(name, **labels)` once `session`'s transaction has committed: an outcome
    whose change was rolled back (its COMMIT failed, the request was given up) counts nothing,
    as nothing of it was recorded."""
    sync = session.sync_session
    pending: list[tuple[str, dict[str, str]]] | None = sync.info.get(_OBSERVED)
    if pending is None:
        pending = sync.info[_OBSERVED] = []
        waiting = pending

        def committed(_: Session) -> None:
            done, waiting[:] = list(waiting), []
            for event_name, event_labels in done:
                deps.observe(event_name, **event_labels)

        def rolled_back(_: Session, __: object) -> None:
            waiting.clear()

        event.listen(sync, "after_commit", committed)
        event.listen(sync, "after_soft_rollback", rolled_back)
    pending.append((name, labels))


@dataclass
class Deps:
    config: HelpdeskConfig
    # Sessions; the dispatcher hands use cases ones bound to the request (storage.inbound).
    sessions: SessionFactory
    directory: Directory
    clock: Callable[[], datetime] = field(default=_utcnow)
    # Chat platforms this deployment can send direct messages on (Slack only when enabled):
    # a person known only elsewhere cannot be reached (bot.settings.Settings.chat_platforms).
    platforms: tuple[str, ...] = ("slack", "teams")
    # Pagers with credentials configured ("pagerduty", "opsgenie"): P1s page through these.
    pagers: tuple[str, ...] = ()
    # Domain events for metrics (`ticket_opened`, `identity`, `csat`); a no-op by default.
    observe: Callable[..., None] = field(default=lambda *_, **__: None)
    # Whether the database answers (the edge keeps it current), and where a use case that
    # could not reach it reports so.
    database_available: Callable[[], bool] = field(default=lambda: True)
    database_trouble: Callable[[BaseException], None] = field(default=lambda _: None)
    # The knowledge base (`kb.source`) and the change calendar file/URL, when configured.
    kb: KbSource | None = None
    change_calendar: ChangeCalendar | None = None
    # The `event_payload` of the outbox metadata on a Slack message (channel, ts), read back
    # from Slack; None when it has none or cannot be read. Set by the Slack edge.
    slack_message_marker: Callable[[str, str], Awaitable[dict[str, Any] | None]] | None = None
    # Resolved tickets found behind an error's newest open ones, reused briefly (an outage's
    # every new report would look through a thousand of them).
    resolved_memo: error_signatures.ResolvedMemo = field(
        default_factory=error_signatures.ResolvedMemo
    )

    def detached(self) -> Deps:
        """These deps for work that outlives the request that started it (a background look-up
        writing later): its transactions are not the request's one change."""
        return dataclasses.replace(self, sessions=inbound.unbound(self.sessions))

    async def person(self, actor: Actor) -> Person | None:
        """The directory entry of whoever acted, matched by platform id only."""
        return await self.directory.find_by_platform_id(
            actor.platform, actor.id, aad_object_id=actor.aad_object_id
        )

    async def entry_if_known(self, actor: Actor) -> Person | None:
        """`person`, or None when the directory cannot say now: for what is only nicer with
        it (the name, e-mail and ids of a technician taking a ticket nobody has yet)."""
        try:
            return await self.person(actor)
        except DirectoryUnavailable:
            return None

    async def is_technician(self, actor: Actor) -> bool:
        """SPEC: directory `technician: true`; with no technician listed, everyone is one.
        A technician whose account is disabled (left; their chat account may linger) is not."""
        if not await self.directory.has_technicians():
            return True
        found = await self.person(actor)
        return bool(found and found.technician and not found.disabled)

    async def require_technician(self, actor: Actor, doing: str) -> None:
        if not await self.is_technician(actor):
            raise Forbidden(f"Only technicians can {doing}.")
