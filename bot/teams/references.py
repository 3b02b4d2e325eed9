"""Teams conversation references kept in the database, written only when they change."""

from __future__ import annotations

import hashlib
import json
import logging
from collections import OrderedDict
from typing import Any

from botbuilder.core import TurnContext
from botbuilder.schema import Activity

from bot.logs import Every
from storage import conversations
from storage.errors import is_unavailable
from storage.inbound import SessionFactory

log = logging.getLogger(__name__)
PLATFORM = "teams"
MAX_CACHED = 10_000


def user_key(user_id: str) -> str:
    return f"user:{user_id}"


def aad_key(aad_object_id: str) -> str:
    """A person's 1:1 chat, found by their AAD object id (directories know people by it)."""
    return f"aad:{aad_object_id.lower()}"


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
    stored under `user:<id>` so DMs find it, and under `aad:<AAD object id>` so a person a
    directory knows only by that id (Graph) is reached in the chat they already have.
    """
    conversation = activity.conversation
    if conversation is None or not conversation.id or not activity.service_url:
        return []
    reference = TurnContext.get_conversation_reference(activity).serialize()
    reference.pop("activityId", None)
    tenant = _tenant(activity)
    if tenant and isinstance(reference.get("conversation"), dict):
        # Kept for opening chats later (Teams needs the tenant; botbuilder's schema reads
        # only `tenantID`, so the `tenantId` Teams sends is otherwise lost).
        reference["conversation"].setdefault("tenantID", tenant)
    if conversation.conversation_type == "personal":
        pairs = [(conversation.id, reference)]
        sender = activity.from_property
        if sender is not None and sender.id:
            pairs.append((user_key(sender.id), reference))
            if sender.aad_object_id:
                pairs.append((aad_key(sender.aad_object_id), reference))
        return pairs
    reference.pop("user", None)
    return [(conversation.id, reference)]


def _tenant(activity: Activity) -> str | None:
    channel_data = activity.channel_data if isinstance(activity.channel_data, dict) else {}
    tenant = channel_data.get("tenant")
    found = (tenant.get("id") if isinstance(tenant, dict) else None) or getattr(
        activity.conversation, "tenant_id", None
    )
    return str(found) if found else None


class SeenUsers:
    """Teams user ids and AAD object ids of the people this process has heard from (kept in
    memory: directories look people up inside callers' database sessions, so no I/O here)."""

    def __init__(self) -> None:
        self._aad_of: OrderedDict[str, str] = OrderedDict()  # user id -> AAD object id
        self._user_of: OrderedDict[str, str] = OrderedDict()  # AAD object id -> user id

    def note(self, user_id: str, aad_object_id: str) -> None:
        aad = aad_object_id.lower()
        for index, key, value in ((self._aad_of, user_id, aad), (self._user_of, aad, user_id)):
            index[key] = value
            index.move_to_end(key)
            while len(index) > MAX_CACHED:
                index.popitem(last=False)

    def aad_of(self, user_id: str) -> str | None:
        return self._aad_of.get(user_id)

    def user_of(self, aad_object_id: str) -> str | None:
        return self._user_of.get(aad_object_id.lower())

    @property
    def anyone(self) -> bool:
        """True once somebody has talked to the bot in Teams (so Teams can be reached)."""
        return bool(self._aad_of)


class ReferenceStore:
    """Reads and upserts references; remembers what it wrote so unchanged ones cost nothing."""

    def __init__(self, sessions: SessionFactory) -> None:
        self.sessions = sessions
        self.seen = SeenUsers()
        self._written: OrderedDict[str, str] = OrderedDict()  # key -> digest of stored JSON
        # conversation id -> the fields the references were built from, last time
        self._seen: OrderedDict[str, tuple[Any, ...]] = OrderedDict()
        # `user:<id>` / `aad:<id>` key -> the id of that person's 1:1 chat with the bot, as far
        # as this process has seen it: a DM and the chat are one Teams conversation, so a
        # Retry-After for either holds both (see TeamsNotifier.places).
        self._chats: OrderedDict[str, str] = OrderedDict()
        self._outage = Every(10.0)  # paces the line said while the database is down

    def note_chat(self, key: str, conversation_id: str) -> None:
        """Remember that `key` (user_key / aad_key) names the 1:1 chat `conversation_id`."""
        self._chats[key] = conversation_id
        self._chats.move_to_end(key)
        while len(self._chats) > MAX_CACHED:
            self._chats.popitem(last=False)

    def chat_of(self, key: str) -> str | None:
        """The 1:1 chat `key` (user_key / aad_key) names, if this process knows it."""
        return self._chats.get(key)

    def _note_chats(self, pairs: list[tuple[str, dict[str, Any]]]) -> None:
        for key, reference in pairs:
            if key.startswith(("user:", "aad:")):
                conversation = reference.get("conversation")
                if isinstance(conversation, dict) and conversation.get("id"):
                    self.note_chat(key, str(conversation["id"]))

    async def remember(self, activity: Activity) -> None:
        """Store the activity's references when they differ from what this process wrote."""
        sender = activity.from_property
        if sender is not None and sender.id and sender.aad_object_id:
            self.seen.note(sender.id, sender.aad_object_id)
        signature = _signature(activity)
        conversation_id = getattr(activity.conversation, "id", None)
        if conversation_id and getattr(activity.conversation, "conversation_type", None) == (
            "personal"
        ):
            if sender is not None and sender.id:
                self.note_chat(user_key(sender.id), conversation_id)
                if sender.aad_object_id:
                    self.note_chat(aad_key(sender.aad_object_id), conversation_id)
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
        self._note_chats(pairs)
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
        except Exception as exc:
            # Proactive messages fall back to the configured service URL; the turn goes on.
            if not is_unavailable(exc):
                log.warning("teams: could not store conversation reference", exc_info=True)
            elif (held := self._outage.due("database")) is not None:
                # Tried again with the chat's next activity; the outage itself is said by the
                # database monitor. One line now and then, not a traceback per activity.
                more = f" ({held} more since the last line)" if held else ""
                log.warning(
                    "teams: conversation references cannot be stored while the database "
                    "cannot be reached (%s)%s",
                    type(exc).__name__,
                    more,
                )
            return False
        for key, _, digest in todo:
            self._written[key] = digest
            self._written.move_to_end(key)
        while len(self._written) > MAX_CACHED:
            self._written.popitem(last=False)
        return True

    async def get(self, key: str) -> dict[str, Any] | None:
        async with self.sessions() as session:
            found = await conversations.get_reference(session, platform=PLATFORM, key=key)
        if found:
            self._note_chats([(key, found)])
        return found

    async def latest(self) -> dict[str, Any] | None:
        """The most recently stored reference (its service URL and tenant serve for opening
        a chat with someone the bot has no conversation with yet)."""
        async with self.sessions() as session:
            return await conversations.latest_reference(session, platform=PLATFORM)
