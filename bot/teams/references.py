"""Teams conversation references kept in the database, written only when they change."""

from __future__ import annotations

import hashlib
import json
import logging
from collections import OrderedDict
from typing import Any

from botbuilder.core import TurnContext
from botbuilder.schema import Activity

from storage import conversations
from storage.inbound import SessionFactory

log = logging.getLogger(__name__)
PLATFORM = "teams"
MAX_CACHED = 10_000


def user_key(user_id: str) -> str:
    return f"user:{user_id}"


def _digest(reference: dict[str, Any]) -> str:
    raw = json.dumps(reference, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def _signature(activity: Activity) -> tuple[Any, ...]:
    """Cheap summary of what a reference is made of (no msrest serialising)."""
    conv, bot, user = activity.conversation, activity.recipient, activity.from_property
    return (
        activity.service_url,
        activity.channel_id,
        activity.locale,
        getattr(conv, "conversation_type", None),
        getattr(conv, "tenant_id", None),
        getattr(conv, "name", None),
        getattr(conv, "is_group", None),
        getattr(bot, "id", None),
        getattr(bot, "name", None),
        getattr(user, "id", None),
        getattr(user, "name", None),
        getattr(user, "aad_object_id", None),
    )


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

    def __init__(self, sessions: SessionFactory) -> None:
        self.sessions = sessions
        self._written: OrderedDict[str, str] = OrderedDict()  # key -> digest of stored JSON
        # conversation id -> the fields the references were built from, last time
        self._seen: OrderedDict[str, tuple[Any, ...]] = OrderedDict()

    async def remember(self, activity: Activity) -> None:
        """Store the activity's references when they differ from what this process wrote."""
        signature = _signature(activity)
        conversation_id = getattr(activity.conversation, "id", None)
        if conversation_id and self._seen.get(conversation_id) == signature:
            return  # the common case: nothing changed, no serialising, no I/O
        try:
            pairs = references_for(activity)
        except Exception:
            log.warning("teams: activity has no usable conversation reference", exc_info=True)
            return
        if await self.save(pairs) and conversation_id:
            self._seen[conversation_id] = signature
            self._seen.move_to_end(conversation_id)
            while len(self._seen) > MAX_CACHED:
                self._seen.popitem(last=False)

    async def save(self, pairs: list[tuple[str, dict[str, Any]]]) -> bool:
        """Upsert the pairs not already written as they are; False if the write failed."""
        todo = [(key, ref, _digest(ref)) for key, ref in pairs]
        todo = [item for item in todo if self._written.get(item[0]) != item[2]]
        if not todo:
            return True
        try:
            async with self.sessions() as session, session.begin():
                for key, ref, _ in todo:
                    await conversations.save_reference(
                        session, platform=PLATFORM, key=key, reference=ref
                    )
        except Exception:
            # Proactive messages fall back to the configured service URL; the turn goes on.
            log.warning("teams: could not store conversation reference", exc_info=True)
            return False
        for key, _, digest in todo:
            self._written[key] = digest
            self._written.move_to_end(key)
        while len(self._written) > MAX_CACHED:
            self._written.popitem(last=False)
        return True

    async def get(self, key: str) -> dict[str, Any] | None:
        async with self.sessions() as session:
            return await conversations.get_reference(session, platform=PLATFORM, key=key)
