"""Who a directory person is in Slack and Teams, for sources that know no chat ids (Graph).

Microsoft Graph knows users by object id, UPN and mail. The chat platforms answer the rest
(SPEC, after "Directory file"): a Slack user's profile e-mail (`users.info`) and the Slack
user for an e-mail (`users.lookupByEmail`); in Teams, activities carry the sender's AAD
object id (so the senders the bot has heard from tell which Teams user id goes with it), and
anyone else is reached by AAD object id (Teams opens a 1:1 chat given the tenant and that id).
Implementations do no database I/O: a directory may be asked inside a caller's session. The
front doors build the platform parts (`bot.slack.people`, `bot.teams.people`); a directory
only sees this interface.
"""

from __future__ import annotations

from typing import Protocol


class SlackPeople(Protocol):
    async def email_of(self, user_id: str) -> str | None:
        """The Slack user's profile e-mail, None when Slack has none."""
        ...

    async def user_for(self, email: str) -> str | None:
        """The Slack user id with this e-mail, None when nobody in the workspace has it."""
        ...


class TeamsPeople(Protocol):
    async def user_for(self, aad_object_id: str) -> str | None:
        """How to reach this AAD object id on Teams: their user id (29:...) when the bot has
        heard from them, else the AAD object id itself (a chat is opened), else None."""
        ...

    async def aad_of(self, user_id: str) -> str | None:
        """The AAD object id of a Teams user id the bot has heard from."""
        ...


class ChatLinks:
    """The platform parts that are configured; each answer is None where a part is absent."""

    def __init__(
        self, *, slack: SlackPeople | None = None, teams: TeamsPeople | None = None
    ) -> None:
        self.slack = slack
        self.teams = teams

    async def slack_email(self, user_id: str) -> str | None:
        """A Slack user's profile e-mail."""
        return await self.slack.email_of(user_id) if self.slack and user_id else None

    async def slack_user(self, email: str) -> str | None:
        """The Slack user id for an e-mail."""
        return await self.slack.user_for(email) if self.slack and email else None

    async def teams_user(self, aad_object_id: str) -> str | None:
        """The Teams id to reach an AAD object id at (the AAD id itself when no chat exists)."""
        return await self.teams.user_for(aad_object_id) if self.teams and aad_object_id else None

    async def teams_aad(self, user_id: str) -> str | None:
        """The AAD object id of a Teams user id, when the bot has seen it."""
        return await self.teams.aad_of(user_id) if self.teams and user_id else None
