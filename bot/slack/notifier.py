"""Delivers Slack messages, DMs and message updates from the outbox.

Every message the bot posts carries `metadata` naming its outbox row. A row whose earlier
attempt may have arrived without being recorded (its worker died, the database went away, the
call timed out) is looked up first in the channel (`conversations.history`) or thread
(`conversations.replies`); when found, it is recorded as delivered instead of being posted
again. A refusal with Retry-After blocks the place it was for (bot.places): the channel for a
post, the method for anything else.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import places
from bot.notifiers import DeliveryError, retry_after_seconds
from bot.slack.errors import slack_error
from cards import slack as blockkit
from cards.model import Card, Mention, Text, plain, read_kept_text
from storage.models import OutboxMessage

log = logging.getLogger(__name__)
# Errors where retrying the same call cannot succeed.
PERMANENT = {
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "token_revoked",
    "invalid_blocks",
    "invalid_arguments",
    "msg_too_long",
    "msg_blocks_too_long",  # undocumented: too much block text in all (bolt-js #2509)
    "no_text",
    "user_not_found",
    # conversations.open to someone it can never reach: deactivated (left), hidden from the
    # bot by an admin, or a bot.
    "user_disabled",
    "user_not_visible",
    "cannot_dm_bot",
    "cant_update_message",
    "message_not_found",
    "is_archived",
    "missing_scope",
}
# Errors meaning "you cannot post here": fall back to a DM to `fallback_user`. Besides a
# channel the bot is not in (or cannot see: a DM or group DM between people, a private or
# Slack Connect channel), one that refuses the bot's posts: read-only or thread-only,
# posting restricted to admins (an announcement channel where the technician may post),
# archived while the form was open, or not granted to the app (chat.postMessage's errors).
NOT_HERE = {
    "not_in_channel",
    "channel_not_found",
    "is_archived",
    "restricted_action",
    "restricted_action_read_only_channel",
    "restricted_action_thread_only_channel",
    "restricted_action_non_threadable_channel",
    "no_permission",
    "team_access_not_granted",
}
METADATA_TYPE = "helpdesk_outbox"
# How far back the look-up for an earlier attempt reads (pages of 200 messages).
LOOKUP_PAGES = 5
# How many pages of conversations.list (1000 channels each) a channel given by #name is
# looked for in, before its look-up (conversations.history takes only ids).
LIST_PAGES = 10


def _mention(payload: dict[str, Any]) -> Mention | None:
    """Who the message starts with a mention of (handlers.notify.MENTION), if anyone."""
    lead = payload.get("mention")
    if not isinstance(lead, dict) or not lead.get("slack_id"):
        return None
    return Mention(name=str(lead.get("name") or ""), slack_id=str(lead["slack_id"]))


def _content(payload: dict[str, Any], *, channel: str = "") -> dict[str, Any]:
    card = Card.from_dict(payload["card"]) if payload.get("card") else None
    if card is None:
        text = read_kept_text(payload)
        card = Card(title="", body=[Text(text)], fallback=plain(text))
    # A note for the technician in a thread they may not follow starts with a mention of
    # them, the only thing that notifies them there; in a DM (`D…`) they are notified anyway.
    mention = None if channel.startswith("D") else _mention(payload)
    if mention is None:
        return blockkit.render_message(card)
    # Its own block: the message's own blocks stay as they were (a typed paragraph is
    # plain_text, where a mention would be only a name).
    rendered = blockkit.render_message(replace(card, body=[Text(mention), *card.body]))
    rendered["text"] = f"{blockkit.mrkdwn(mention)} {rendered['text']}"
    return rendered


def _marker(message: OutboxMessage) -> dict[str, Any]:
    """What identifies the row's message: its id and when it was queued (ids are only
    unique within one database)."""
    created: datetime = message.created_at
    return {"outbox_id": message.id, "queued": created.isoformat()}


def metadata(message: OutboxMessage) -> dict[str, Any]:
    return {"event_type": METADATA_TYPE, "event_payload": _marker(message)}


async def not_held(held: places.Places | None, names: tuple[str, ...]) -> None:
    """Raise a DeliveryError with the Retry-After left when any of `names` is in a window
    (this process's, or one another process wrote): for a call a row makes beyond its own
    places (a fallback DM), which the worker did not check before the send."""
    if held is None:
        return
    await held.learn(names)
    for place in names:
        if (left := held.blocked_for(place)) > 0:
            raise DeliveryError(
                f"slack: waiting for {place}'s Retry-After ({left:.0f} s left)",
                retry_after=left,
                place=place,
            )


def lookup_places(message: OutboxMessage, thread: Any) -> tuple[str, ...]:
    """The look-up of a row in doubt (`_find`): its method's Retry-After window holds the
    row too. Left out, a look-up refused with 429 held only its own row: the next row in
    doubt, to any channel, called the method again inside the window."""
    if not message.in_doubt:
        return ()
    method = "conversations.replies" if thread else "conversations.history"
    if str(message.payload.get("channel", "")).startswith("#"):
        # A channel given by #name is found by its id first (`SlackNotifier._channel_id`).
        return (places.slack_method("conversations.list"), places.slack_method(method))
    return (places.slack_method(method),)


def _channel_name(channel: str) -> str:
    """`#Incidents` -> `incidents` (Slack's channel names are lower case)."""
    return channel.removeprefix("#").lower()


def _error(exc: SlackApiError, place: str) -> DeliveryError:
    error = str(exc.response.get("error", "unknown_error"))
    if exc.response.status_code == 429:
        retry_after = retry_after_seconds(exc.response.headers.get("Retry-After")) or 1.0
        return DeliveryError(f"slack: {error}", retry_after=retry_after, place=place)
    return DeliveryError(f"slack: {slack_error(exc.response)}", permanent=error in PERMANENT)


class SlackNotifier:
    def __init__(self, client: AsyncWebClient, *, places: places.Places | None = None) -> None:
        self.client = client
        # The worker's Retry-After windows: a DM instead of a refused channel post goes to
        # places the row's own (`places()`) do not name, so it asks here itself.
        self._places = places
        # Channel ids by name (`#incidents` -> C0...), learned from posts and look-ups.
        self._channel_ids: dict[str, str] = {}

    def places(self, message: OutboxMessage) -> tuple[str, ...]:
        payload = message.payload
        if message.kind == "update":
            return (places.slack_method("chat.update"),)
        lookup = lookup_places(message, payload.get("thread") if message.kind != "dm" else None)
        if message.kind == "dm":
            user = str(payload.get("user", ""))
            return (places.slack_method("conversations.open"), places.slack_dm(user), *lookup)
        return (places.slack_post(str(payload.get("channel", ""))), *lookup)

    async def deliver(self, message: OutboxMessage) -> dict[str, Any]:
        payload = message.payload
        try:
            if message.kind == "update":
                return await self._update(payload)
            if message.kind == "dm":
                return await self._dm(str(payload["user"]), message)
            return await self._post(message)
        except DeliveryError:
            raise
        except aiohttp.ClientConnectorError as exc:
            raise DeliveryError(f"slack: {type(exc).__name__}: {exc}") from exc
        except (OSError, TimeoutError, aiohttp.ClientError) as exc:
            # The request may have reached Slack before the answer was lost.
            raise DeliveryError(f"slack: {type(exc).__name__}: {exc}", uncertain=True) from exc

    async def _post(self, message: OutboxMessage) -> dict[str, Any]:
        payload = message.payload
        channel, thread = str(payload["channel"]), payload.get("thread")
        place = places.slack_post(channel)
        try:
            if message.in_doubt and (found := await self._find(message, channel, thread)):
                return found
            return await self._send(message, channel, thread)
        except SlackApiError as exc:
            fallback = payload.get("fallback_user")
            if exc.response.get("error") in NOT_HERE and fallback:
                log.info("cannot post in %s; sending to the technician instead", channel)
                await self._not_held(str(fallback))
                return await self._dm(str(fallback), message)
            raise _error(exc, place) from exc

    async def _not_held(self, user: str) -> None:
        """Raise when a DM to `user` would go inside a Retry-After window (conversations.open
        or the DM itself): the row waits it out. Sent anyway, the fallback DM called
        conversations.open inside the window another DM's 429 had just given (SPEC: other
        methods, that method)."""
        await not_held(
            self._places, (places.slack_method("conversations.open"), places.slack_dm(user))
        )

    async def _send(self, message: OutboxMessage, channel: str, thread: Any) -> dict[str, Any]:
        response = await self.client.chat_postMessage(
            channel=channel,
            thread_ts=thread,
            metadata=metadata(message),
            **_content(message.payload, channel=channel),
        )
        if channel.startswith("#"):
            self._channel_ids[_channel_name(channel)] = str(response["channel"])
        return {"channel": response["channel"], "ts": response["ts"]}

    async def _channel_id(self, channel: str) -> str | None:
        """The id of the channel `#name` (chat.postMessage takes a name; the look-up's
        methods take only ids): learned from an earlier post, else found with
        conversations.list among the public channels and the private ones the bot is in.
        None when it is not there (then nothing of the bot's can be in it either)."""
        name = _channel_name(channel)
        if (known := self._channel_ids.get(name)) is not None:
            return known
        cursor: str | None = None
        for _ in range(LIST_PAGES):
            page = await self.client.conversations_list(
                types="public_channel,private_channel",
                exclude_archived=True,
                limit=1000,
                cursor=cursor,
            )
            for listed in page.get("channels") or []:
                if str(listed.get("name", "")).lower() == name and listed.get("id"):
                    self._channel_ids[name] = str(listed["id"])
                    return self._channel_ids[name]
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        return None

    async def _dm(self, user: str, message: OutboxMessage) -> dict[str, Any]:
        try:
            opened = await self.client.conversations_open(users=user)
        except SlackApiError as exc:
            raise _error(exc, places.slack_method("conversations.open")) from exc
        channel = opened["channel"]["id"]
        try:
            if message.in_doubt and (found := await self._find(message, channel, None)):
                return {**found, "dm": True}
            sent = await self._send(message, channel, None)
        except SlackApiError as exc:
            raise _error(exc, places.slack_dm(user)) from exc
        return {**sent, "dm": True}

    async def _update(self, payload: dict[str, Any]) -> dict[str, Any]:
        # An edit is idempotent: doing it twice shows the same message.
        try:
            response = await self.client.chat_update(
                channel=payload["channel"], ts=payload["ts"], **_content(payload)
            )
        except SlackApiError as exc:
            raise _error(exc, places.slack_method("chat.update")) from exc
        return {"channel": response["channel"], "ts": response["ts"]}

    async def _find(
        self, message: OutboxMessage, channel: str, thread: Any
    ) -> dict[str, Any] | None:
        """The message an earlier attempt of this row posted, if Slack has it."""
        marker = _marker(message)
        oldest = f"{message.created_at.timestamp() - 60:.6f}"
        cursor: str | None = None
        method = "conversations.replies" if thread else "conversations.history"
        try:
            if channel.startswith("#"):
                # A name: SPEC lets `slack.incident_channel` be one; history needs the id.
                method = "conversations.list"
                if (found_id := await self._channel_id(channel)) is None:
                    log.info(
                        "outbox row %s: no channel %s for the bot, so no earlier attempt is "
                        "there; posting it",
                        message.id,
                        channel,
                    )
                    return None
                channel = found_id
                method = "conversations.replies" if thread else "conversations.history"
            for _ in range(LOOKUP_PAGES):
                common: dict[str, Any] = {
                    "channel": channel,
                    "oldest": oldest,
                    "limit": 200,
                    "include_all_metadata": True,
                    "cursor": cursor,
                }
                if thread:
                    page = await self.client.conversations_replies(ts=str(thread), **common)
                else:
                    page = await self.client.conversations_history(**common)
                for found in page.get("messages") or []:
                    meta = found.get("metadata") or {}
                    if (
                        meta.get("event_type") == METADATA_TYPE
                        and meta.get("event_payload") == marker
                    ):
                        log.info(
                            "outbox row %s was already posted (ts %s): not posting it again",
                            message.id,
                            found.get("ts"),
                        )
                        return {"channel": channel, "ts": found["ts"], "found": True}
                cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
                if not cursor:
                    break
        except SlackApiError as exc:
            if exc.response.status_code == 429:
                raise _error(exc, places.slack_method(method)) from exc
            if exc.response.get("error") in NOT_HERE and not channel.startswith("#"):
                raise
            # No history scope (or no channels:read / groups:read to find a #name), or the
            # like: better a possible repeat than a lost message.
            log.warning(
                "could not check whether outbox row %s was already posted (%s); posting it",
                message.id,
                exc.response.get("error"),
            )
        return None
