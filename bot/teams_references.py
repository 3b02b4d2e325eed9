"""Teams conversation references kept in the database, written only when they change."""

from __future__ import annotations

import hashlib
import json
import logging
from collections import OrderedDict
from typing import Any

from botbuilder.core import TurnContext
from botbuilder.schema import Activity
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage import conversations

log = logging.getLogger(__name__)
PLATFORM = "teams"
MAX_CACHED = 10_000


def user_key(user_id: str) -> str:
    return f"user:{user_id}"


def _digest(reference: dict[str, Any]) -> str:
    raw = json.dumps(reference, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def references_for(activity: Activity) -> list[tuple[str, dict[str, Any]]]:
    """(key, reference) pairs to store for an inbound activity.

    The activity id is left out (a proactive message is not a reply), and so is the sender
    of a group or channel message (it changes with every speaker); a 1:1 chat is also
    stored under `user:<id>` so DMs find it.
    """
    conversation = activity.conversation
    if conversation is None or not conversation.id or not activity.service_url:
        return []
    reference = TurnContext.get_conversation_reference(activity).serialize()
    reference.pop("activityId", None)
    if conversation.conversation_type == "personal":
        pairs = [(conversation.id, reference)]
        sender = activity.from_property
        if sender is not None and sender.id:
            pairs.append((user_key(sender.id), reference))
        return pairs
    reference.pop("user", None)
    return [(conversation.id, reference)]


class ReferenceStore:
    """Reads and upserts references; remembers what it wrote so unchanged ones cost nothing."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self._written: OrderedDict[str, str] = OrderedDict()

    async def remember(self, activity: Activity) -> None:
        """Store the activity's references when they differ from what this process wrote."""
        try:
            pairs = references_for(activity)
        except Exception:
            log.warning("teams: activity has no usable conversation reference", exc_info=True)
            return
        await self.save(pairs)

    async def save(self, pairs: list[tuple[str, dict[str, Any]]]) -> None:
        todo = [(key, ref, _digest(ref)) for key, ref in pairs]
        todo = [item for item in todo if self._written.get(item[0]) != item[2]]
        if not todo:
            return
        try:
            async with self.sessions() as session, session.begin():
                for key, ref, _ in todo:
                    await conversations.save_reference(
                        session, platform=PLATFORM, key=key, reference=ref
                    )
        except Exception:
            # Proactive messages fall back to the configured service URL; the turn goes on.
            log.warning("teams: could not store conversation reference", exc_info=True)
            return
        for key, _, digest in todo:
            self._written[key] = digest
            self._written.move_to_end(key)
        while len(self._written) > MAX_CACHED:
            self._written.popitem(last=False)

    async def get(self, key: str) -> dict[str, Any] | None:
        async with self.sessions() as session:
            return await conversations.get_reference(session, platform=PLATFORM, key=key)
