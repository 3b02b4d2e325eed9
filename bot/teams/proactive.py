"""Sending outside the inbound turn: continue a stored conversation or open a 1:1 chat.

botbuilder runs the callback inside its turn pipeline, where an exception would go to
`on_turn_error` (and be swallowed); the callback here keeps it and re-raises it to the caller.
Messages are posted with the connector directly, so a proactive post is a new message (or a
reply to the given thread) and never a "reply" to botbuilder's made-up continuation id.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from copy import copy
from typing import Any, TypeVar

from botbuilder.core import CloudAdapterBase, TurnContext
from botbuilder.schema import (
    Activity,
    ChannelAccount,
    ConversationAccount,
    ConversationParameters,
    ConversationReference,
)
from botframework.connector.aio import ConnectorClient

T = TypeVar("T")
Work = Callable[[TurnContext], Awaitable[T]]


def connector_of(ctx: TurnContext) -> ConnectorClient:
    return ctx.turn_state[CloudAdapterBase.BOT_CONNECTOR_CLIENT_KEY]


async def post(
    ctx: TurnContext, activity: Activity, *, conversation_id: str, reply_to: str | None = None
) -> str:
    """Post `activity` to `conversation_id` (as a reply to `reply_to`); returns its id."""
    outgoing = copy(activity)
    outgoing.channel_id = ctx.activity.channel_id
    outgoing.service_url = ctx.activity.service_url
    outgoing.conversation = ConversationAccount(id=conversation_id)
    outgoing.from_property = ctx.activity.recipient
    outgoing.recipient = ctx.activity.from_property
    outgoing.reply_to_id = reply_to
    conversations = connector_of(ctx).conversations
    if reply_to:
        response = await conversations.reply_to_activity(conversation_id, reply_to, outgoing)
    else:
        response = await conversations.send_to_conversation(conversation_id, outgoing)
    return str(getattr(response, "id", "") or "")


async def _run(
    start: Callable[[Callable[[TurnContext], Awaitable[None]]], Awaitable[Any]], work: Work[T]
) -> T:
    box: dict[str, Any] = {}

    async def callback(ctx: TurnContext) -> None:
        try:
            box["result"] = await work(ctx)
        except Exception as exc:
            box["error"] = exc

    await start(callback)
    if "error" in box:
        raise box["error"]
    if "result" not in box:
        raise RuntimeError("the proactive turn did not run")
    return box["result"]  # type: ignore[no-any-return]


async def continue_conversation(
    adapter: CloudAdapterBase, reference: ConversationReference, app_id: str, work: Work[T]
) -> T:
    """Run `work` in a proactive turn for `reference` and return what it returns."""
    return await _run(lambda cb: adapter.continue_conversation(reference, cb, app_id), work)


def personal_chat_parameters(
    *, bot_id: str, user_id: str, tenant_id: str | None, aad_object_id: str | None = None
) -> ConversationParameters:
    member = ChannelAccount(id=user_id, aad_object_id=aad_object_id)
    return ConversationParameters(
        is_group=False,
        bot=ChannelAccount(id=bot_id),
        members=[member],
        tenant_id=tenant_id,
        channel_data={"tenant": {"id": tenant_id}} if tenant_id else None,
    )


async def open_personal_chat(
    adapter: CloudAdapterBase,
    app_id: str,
    *,
    service_url: str,
    channel_id: str,
    parameters: ConversationParameters,
    work: Work[T],
) -> T:
    """Create (or find) the 1:1 chat with the member in `parameters` and run `work` there;
    `ctx.activity.conversation.id` is the chat's id."""
    return await _run(
        lambda cb: adapter.create_conversation(
            app_id, cb, parameters, channel_id=channel_id, service_url=service_url
        ),
        work,
    )


def personal_reference(ctx: TurnContext, *, user_id: str, tenant_id: str | None) -> dict[str, Any]:
    """The reference of a chat opened by `open_personal_chat`, for the reference store."""
    activity = ctx.activity
    reference = ConversationReference(
        bot=activity.recipient,
        user=ChannelAccount(id=user_id),
        conversation=ConversationAccount(
            id=activity.conversation.id, conversation_type="personal", tenant_id=tenant_id
        ),
        channel_id=activity.channel_id,
        service_url=activity.service_url,
    )
    return dict(reference.serialize())
