"""Teams user ids <-> AAD object ids, for directories that know people by AAD id (Graph)."""

from __future__ import annotations

from bot.teams.references import ReferenceStore


class TeamsPeople:
    """What the bot knows from the activities it has received; no I/O (see `SeenUsers`).

    Someone it has not heard from is still reachable on Teams by AAD object id (the notifier
    uses the 1:1 chat stored for that id, or opens one), once the bot knows where Teams is:
    `teams.service_url` is set, or somebody has talked to it in Teams.
    """

    def __init__(self, references: ReferenceStore, *, service_url: str | None = None) -> None:
        self.references = references
        self._service_url = service_url

    async def user_for(self, aad_object_id: str) -> str | None:
        """The Teams user id of the person with this AAD object id when they have talked to
        the bot, else the AAD object id itself when Teams can be reached, else None."""
        seen = self.references.seen
        found = seen.user_of(aad_object_id)
        if found:
            return found
        return aad_object_id if (self._service_url or seen.anyone) else None

    async def aad_of(self, user_id: str) -> str | None:
        """The AAD object id of a Teams user id the bot has heard from."""
        return self.references.seen.aad_of(user_id)
