"""Slack users <-> e-mail addresses, for directories that know people by e-mail (Graph).

`users.info` gives a user's profile e-mail (scopes `users:read` and `users:read.email`);
`users.lookupByEmail` the user with an e-mail (the same two scopes). Answers are cached; a
user Slack does not know is a None, any other failure a `DirectoryUnavailable` (the person is
told the directory could not be reached rather than that someone is not in it).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.directory.cache import TtlCache
from bot.directory.deadline import directory_call, time_left
from bot.notifiers import retry_after_seconds
from bot.slack.errors import slack_error
from handlers.directory import DirectoryUnavailable

log = logging.getLogger(__name__)
SOURCE = "Slack"
NOT_FOUND = {"user_not_found", "users_not_found"}
CALL_LIMIT = 10.0


class SlackPeople:
    """Slack profile e-mails and the users behind e-mails, cached for `ttl` seconds."""

    def __init__(self, client: AsyncWebClient, *, ttl: float = 300.0) -> None:
        self.client = client
        self._emails: TtlCache[str | None] = TtlCache(ttl)
        self._users: TtlCache[str | None] = TtlCache(ttl)
        self._warned_no_email = False

    async def email_of(self, user_id: str) -> str | None:
        """The profile e-mail of a Slack user (`users.info`)."""
        hit, cached = self._emails.get(user_id)
        if hit:
            return cached
        user = await self._call("users.info", user=user_id)
        email = None
        if user is not None and not user.get("is_bot") and not user.get("deleted"):
            email = str((user.get("profile") or {}).get("email") or "").strip() or None
            if email is None and not self._warned_no_email:
                self._warned_no_email = True
                log.warning(
                    "slack: users.info gave no e-mail for %s: the app needs the "
                    "users:read.email scope (reinstall it from the manifest)",
                    user_id,
                )
        self._emails.put(user_id, email)
        return email

    async def user_for(self, email: str) -> str | None:
        """The Slack user id with this e-mail (`users.lookupByEmail`)."""
        key = email.strip().lower()
        hit, cached = self._users.get(key)
        if hit:
            return cached
        user = await self._call("users.lookupByEmail", email=key)
        found = str(user["id"]) if user and user.get("id") and not user.get("deleted") else None
        self._users.put(key, found)
        return found

    async def _call(self, method: str, **params: str) -> dict[str, Any] | None:
        """The `user` object of a users.* answer; None when Slack knows no such user."""
        with directory_call():
            return await self._call_in_turn(method, **params)

    async def _call_in_turn(self, method: str, **params: str) -> dict[str, Any] | None:
        for attempt in (1, 2):
            limit = time_left(CALL_LIMIT)
            try:
                if method == "users.info":
                    call = self.client.users_info(user=params["user"])
                else:
                    call = self.client.users_lookupByEmail(email=params["email"])
                response = await asyncio.wait_for(call, max(limit, 0.5))
                user = response.get("user")
                return user if isinstance(user, dict) else None
            except SlackApiError as exc:
                error = str(exc.response.get("error") or "")
                if error in NOT_FOUND:
                    return None
                wait = retry_after_seconds(exc.response.headers.get("Retry-After"))
                if error == "ratelimited" and attempt == 1 and wait is not None:
                    if wait <= time_left(CALL_LIMIT) - 1.0:
                        log.info("slack: %s rate limited; retrying in %.1f s", method, wait)
                        await asyncio.sleep(wait)
                        continue
                said = slack_error(exc.response) if error else exc.response.status_code
                log.warning("slack: %s failed: %s", method, said)
                raise DirectoryUnavailable(SOURCE, f"{method}: {error}") from None
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                log.warning("slack: %s failed: %s", method, type(exc).__name__)
                raise DirectoryUnavailable(SOURCE, f"{method}: {type(exc).__name__}") from None
        return None  # pragma: no cover
