"""Teams user ids <-> AAD object ids, for directories that know people by AAD id (Graph)."""

from __future__ import annotations

from typing import Any

from bot.teams.references import ReferenceStore, aad_key, user_key


def _user(reference: dict[str, Any] | None) -> dict[str, Any]:
    user = (reference or {}).get("user")
    return user if isinstance(user, dict) else {}


class TeamsPeople:
    """Reads the stored 1:1 conversation references (written as people talk to the bot).

    Someone the bot has no 1:1 chat with is still reachable on Teams by AAD object id (the
    notifier opens the chat), once the bot knows where Teams is: `teams.service_url` is set,
    or somebody has talked to it in Teams.
    """

    def __init__(self, references: ReferenceStore, *, service_url: str | None = None) -> None:
        self.references = references
        self._routable = bool(service_url)

    async def user_for(self, aad_object_id: str) -> str | None:
        """The Teams user id of the person with this AAD object id when they chatted with the
        bot 1:1, else the AAD object id itself when a chat can be opened, else None."""
        found = _user(await self.references.get(aad_key(aad_object_id))).get("id")
        if found:
            return str(found)
        if not self._routable:
            self._routable = await self.references.latest() is not None
        return aad_object_id if self._routable else None

    async def aad_of(self, user_id: str) -> str | None:
        """The AAD object id of a Teams user id the bot has a 1:1 chat with."""
        found = _user(await self.references.get(user_key(user_id))).get("aadObjectId")
        return str(found) if found else None
