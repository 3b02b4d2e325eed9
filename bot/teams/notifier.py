"""Delivers Teams messages, DMs and message updates from the outbox (proactive sends)."""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp
from botbuilder.core import CloudAdapterBase, TurnContext
from botbuilder.schema import (
    Activity,
    ChannelAccount,
    ConversationAccount,
    ConversationReference,
)
from msrest.exceptions import ClientRequestError, HttpOperationError

from bot import places
from bot.notifiers import DeliveryError, retry_after_seconds
from bot.settings import Settings
from bot.teams import proactive, replies
from bot.teams.references import ReferenceStore, aad_key, user_key
from cards.model import Card, read_kept_text
from handlers.notify import MENTION, TECHNICIAN_CHAT
from handlers.types import channel_of
from storage.models import OutboxMessage

log = logging.getLogger(__name__)
CHANNEL_ID = "msteams"
RETRYABLE = {408, 412, 429, 502, 503, 504}
PERMANENT = {401, 403, 404, 413}
# A send that did not reach the connector, or whose answer never came back.
TRANSPORT_ERRORS = (aiohttp.ClientError, ClientRequestError, OSError, TimeoutError)
# No reference and no configured service URL: someone may talk to the bot meanwhile.
NO_ROUTE_RETRY = 300.0


def _content(payload: dict[str, Any], *, mention: dict[str, str] | None = None) -> Activity:
    if payload.get("card"):
        activity = replies.card_activity(Card.from_dict(payload["card"]))
    else:
        activity = replies.text_activity(read_kept_text(payload))
    image = payload.get("image")
    if isinstance(image, dict):  # the chart of an answer sent later (the report)
        activity.attachments = [*(activity.attachments or []), replies.png_attachment(image)]
    if mention is not None:
        replies.with_mention(activity, user_id=mention["teams_id"], name=mention["name"])
    return activity


def _mention(payload: dict[str, Any], reference: ConversationReference) -> dict[str, str] | None:
    """Who a message for `reference`'s conversation starts with a mention of
    (handlers.notify.MENTION: the technician, by their Teams id): a note in a channel's reply
    chain or a group chat notifies nobody who does not follow it, the technician included,
    unless it mentions them. None in a 1:1 chat (they are notified anyway, as Slack's DMs)."""
    lead = payload.get(MENTION)
    if not isinstance(lead, dict) or not lead.get("teams_id"):
        return None
    conversation = reference.conversation
    personal = getattr(conversation, "conversation_type", None) == "personal"
    # A reference built from the configured service URL has no type: a 1:1 chat's id is `a:…`.
    if personal or str(getattr(conversation, "id", "") or "").startswith("a:"):
        return None
    return {"teams_id": str(lead["teams_id"]), "name": str(lead.get("name") or "technician")}


def _retry_after(headers: Any) -> float | None:
    return retry_after_seconds(headers.get("Retry-After") if headers is not None else None)


def _error_body(response: Any) -> dict[str, Any]:
    text = getattr(response, "text", None)
    try:
        raw = text() if callable(text) else text
        data = json.loads(raw or "{}")
    except (ValueError, TypeError):
        return {}
    if not isinstance(data, dict):
        return {}
    error = data.get("error")
    if isinstance(error, dict):
        return error
    # The connector's own 401 is ASP.NET's {"message": "Authorization has been denied ..."}.
    message = data.get("message")
    return {"message": message} if isinstance(message, str) else {}


def transport_error(exc: BaseException) -> DeliveryError:
    """A send that failed on the way (TRANSPORT_ERRORS) -> a retryable DeliveryError."""
    if isinstance(exc, aiohttp.ClientConnectorError):  # never reached the connector
        return DeliveryError(f"teams: {type(exc).__name__}: {exc}")
    # Teams has no look-up: a message whose answer was lost may repeat once.
    return DeliveryError(f"teams: {type(exc).__name__}: {exc}", uncertain=True)


def delivery_error(exc: HttpOperationError, place: str | None = None) -> DeliveryError:
    """Connector HTTP error -> DeliveryError (retryable or permanent, Retry-After kept and
    applied to `place`: the conversation the send was for)."""
    response = exc.response
    status = getattr(response, "status_code", None) or getattr(response, "status", None) or 0
    error = _error_body(response)
    code = str(error.get("code") or "")
    inner = error.get("innerHttpError")
    inner = inner if isinstance(inner, dict) else {}
    sub_code = str(error.get("subCode") or inner.get("subCode") or "")
    label = "/".join(part for part in (code, sub_code) if part) or "error"
    message = str(error.get("message") or exc.message or "")[:300]
    permanent = status in PERMANENT or (400 <= status < 500 and status not in RETRYABLE)
    retry_after = None if permanent else _retry_after(getattr(response, "headers", None))
    if retry_after is None and status == 429:
        retry_after = 1.0  # throttled without a Retry-After: still hold the place a moment
    return DeliveryError(
        f"teams: HTTP {status} {label}: {message}",
        retry_after=retry_after,
        permanent=permanent,
        place=place if retry_after is not None else None,
    )


class TeamsNotifier:
    def __init__(
        self, adapter: CloudAdapterBase, references: ReferenceStore, settings: Settings
    ) -> None:
        self.adapter = adapter
        self.references = references
        self.app_id = settings.app_id
        self.service_url = settings.config.teams.service_url
        self.tenant_id = settings.config.teams.tenant_id or settings.app_tenant_id or None
        self.bot_id = f"28:{settings.app_id}" if settings.app_id else "28:helpdesk-bot"

    def _chat(self, payload: dict[str, Any]) -> str | None:
        """The DM's 1:1 chat, when this process knows it (by user id, else AAD object id)."""
        chat = self.references.chat_of(user_key(str(payload.get("user", ""))))
        aad = str(payload.get("aad_object_id") or "")
        return chat or (self.references.chat_of(aad_key(aad)) if aad else None)

    def places(self, message: OutboxMessage) -> tuple[str, ...]:
        payload = message.payload
        if message.kind == "dm":
            # A DM goes to the person's 1:1 chat: a Retry-After given there (to an answer in
            # the chat, or to another row for it) holds the DM too.
            user = places.teams_user(str(payload.get("user", "")))
            chat = self._chat(payload)
            return (user, places.teams_conversation(chat)) if chat else (user,)
        return (places.teams_conversation(str(payload.get("channel", ""))),)

    def repeats_in_doubt(self, message: OutboxMessage) -> bool:
        """Teams has no look-up of an earlier send: a message or DM sent again may be there
        twice. An update replaces the card it names, however often it is sent."""
        return message.kind != "update"

    async def deliver(self, message: OutboxMessage) -> dict[str, Any]:
        payload = message.payload
        try:
            if message.kind == "update":
                return await self._update(payload)
            if message.kind == "dm" and payload.get(TECHNICIAN_CHAT):
                return await self._to_technician(str(payload["user"]), payload)
            if message.kind == "dm":
                return await self._dm(str(payload["user"]), payload)
            return await self._post(payload)
        except HttpOperationError as exc:
            # A throttled DM holds its chat (the conversation Teams throttles), once known.
            place = self.places(message)[-1]
            raise delivery_error(exc, place) from exc
        except PermissionError as exc:  # msal could not get a token (AAD down, bad secret)
            raise DeliveryError(f"teams: no access token: {exc}") from exc
        except TRANSPORT_ERRORS as exc:
            raise transport_error(exc) from exc

    async def _reference(self, conversation_id: str) -> ConversationReference:
        stored = await self.references.get(conversation_id)
        if stored:
            return ConversationReference().deserialize(stored)
        if not self.service_url:
            raise DeliveryError(
                f"teams: no conversation reference for {conversation_id} yet and "
                "teams.service_url is not configured",
                retry_after=NO_ROUTE_RETRY,
            )
        return ConversationReference(
            channel_id=CHANNEL_ID,
            service_url=self.service_url,
            conversation=ConversationAccount(id=conversation_id, tenant_id=self.tenant_id),
            bot=ChannelAccount(id=self.bot_id),
        )

    async def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        channel = str(payload["channel"])
        thread = payload.get("thread")
        reference = await self._reference(channel)
        activity = _content(payload, mention=_mention(payload, reference))
        # A channel's reply chain is a conversation of its own (`19:…;messageid=<root>`):
        # what is sent there lands in the chain. A new post in the channel (`top_level`) goes
        # to the channel's own id, through the chain's stored reference (same service URL).
        target = channel_of(channel) if payload.get("top_level") else channel

        async def work(ctx: TurnContext) -> str:
            return await proactive.post(
                ctx, activity, conversation_id=target, reply_to=str(thread) if thread else None
            )

        try:
            activity_id = await proactive.continue_conversation(
                self.adapter, reference, self.app_id, work
            )
        except HttpOperationError as exc:
            fallback = payload.get("fallback_user")
            status = getattr(exc.response, "status_code", None)
            if fallback and status in (403, 404):
                log.info(
                    "teams: cannot post in %s (%s); sending to the technician instead",
                    channel,
                    status,
                )
                return await self._dm(str(fallback), payload)
            raise
        # "ts" is the thread key the core stores for a ticket (same as Slack's message ts).
        return {"channel": target, "activity_id": activity_id, "ts": activity_id}

    async def _to_technician(self, user: str, payload: dict[str, Any]) -> dict[str, Any]:
        """A note for the ticket's technician (handlers.notify.tell_technician_in_chat) in their
        1:1 chat. When the ticket's conversation is that chat it is a reply to the card there;
        when the chat cannot be opened or written for good (403/404: the app is not installed
        for them) it goes to the ticket's conversation, as private answers with nothing
        confidential do. Refused for the moment, it is retried to the chat."""
        channel = payload.get("channel")
        conversation = (await self.references.get(user_key(user)) or {}).get("conversation")
        if channel and isinstance(conversation, dict) and conversation.get("id") == channel:
            return await self._post(payload)
        try:
            return await self._dm(user, payload)
        except HttpOperationError as exc:
            status = getattr(exc.response, "status_code", None)
            if not channel or status not in (403, 404):
                raise
            log.info(
                "teams: cannot write to the technician's 1:1 chat (%s); posting in the ticket's "
                "conversation %s instead",
                status,
                channel,
            )
            return await self._post(payload)

    async def _dm(self, user: str, payload: dict[str, Any]) -> dict[str, Any]:
        """DM `user`: a Teams user id, or (for someone a directory knows only by it, such as a
        manager read from Graph) an AAD object id. The 1:1 chat the bot has with them is used;
        without one it is opened (Teams needs the tenant id and the user's id or AAD id)."""
        activity = _content(payload)
        aad = str(payload.get("aad_object_id") or "") or None
        stored = await self.references.get(user_key(user))
        if not stored and aad:
            stored = await self.references.get(aad_key(aad))
        if stored:
            reference = ConversationReference().deserialize(stored)
            conversation_id = reference.conversation.id

            async def work(ctx: TurnContext) -> str:
                return await proactive.post(ctx, activity, conversation_id=conversation_id)

            activity_id = await proactive.continue_conversation(
                self.adapter, reference, self.app_id, work
            )
            return {"channel": conversation_id, "activity_id": activity_id, "dm": True}
        service_url, tenant_id = await self._route()
        parameters = proactive.personal_chat_parameters(
            bot_id=self.bot_id, user_id=user, tenant_id=tenant_id, aad_object_id=aad
        )

        async def open_and_post(ctx: TurnContext) -> tuple[str, str, dict[str, Any]]:
            chat = ctx.activity.conversation.id
            self.references.note_chat(user_key(user), chat)
            sent = await proactive.post(ctx, activity, conversation_id=chat)
            reference = proactive.personal_reference(ctx, user_id=user, tenant_id=tenant_id)
            return chat, sent, reference

        chat, activity_id, reference = await proactive.open_personal_chat(
            self.adapter,
            self.app_id,
            service_url=service_url,
            channel_id=CHANNEL_ID,
            parameters=parameters,
            work=open_and_post,
        )
        # Also under the chat's id: a later edit of this DM (`update`) finds its route there.
        await self.references.save([(user_key(user), reference), (chat, reference)])
        return {"channel": chat, "activity_id": activity_id, "dm": True}

    async def _route(self) -> tuple[str, str | None]:
        """Service URL and tenant for opening a chat: configured, else those of the latest
        conversation the bot took part in (one tenant's users share them)."""
        service_url, tenant_id = self.service_url, self.tenant_id
        if not service_url or not tenant_id:
            latest = await self.references.latest() or {}
            conversation = latest.get("conversation") or {}
            service_url = service_url or latest.get("serviceUrl")
            tenant_id = tenant_id or conversation.get("tenantID")
        if not service_url:
            raise DeliveryError(
                "teams: no 1:1 chat with this person yet, teams.service_url is not configured "
                "and nobody has talked to the bot yet",
                retry_after=NO_ROUTE_RETRY,
            )
        return str(service_url), str(tenant_id) if tenant_id else None

    async def _update(self, payload: dict[str, Any]) -> dict[str, Any]:
        channel = str(payload["channel"])
        activity_id = str(payload["activity_id"])
        activity = _content(payload)

        async def work(ctx: TurnContext) -> str:
            activity.id = activity_id
            activity.conversation = ConversationAccount(id=channel)
            activity.from_property = ctx.activity.recipient
            connector = proactive.connector_of(ctx)
            await connector.conversations.update_activity(channel, activity_id, activity)
            return activity_id

        await proactive.continue_conversation(
            self.adapter, await self._reference(channel), self.app_id, work
        )
        return {"channel": channel, "activity_id": activity_id}
