"""The Teams ActivityHandler: activities -> neutral Interaction -> core -> Teams replies."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from botbuilder.core import ActivityHandler, CloudAdapterBase, InvokeResponse, TurnContext
from botbuilder.schema import Activity, ChannelAccount

from bot.teams import proactive, replies
from bot.teams.references import ReferenceStore, user_key
from cards import teams as adaptive
from cards.model import ActionId
from handlers import tickets
from handlers.commands import strip_teams_prefix
from handlers.deps import Deps
from handlers.dispatch import answer
from handlers.types import Actor, Conversation, Interaction, Reply

log = logging.getLogger(__name__)
UNKNOWN_ACTION = "That button or form is not available any more. Try `ticket help`."


def _action_id(name: str | None) -> ActionId | None:
    try:
        return ActionId(name) if name else None
    except ValueError:
        return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def tenant_of(activity: Activity) -> str | None:
    tenant = _dict(_dict(activity.channel_data).get("tenant"))
    found = tenant.get("id") or getattr(activity.conversation, "tenant_id", None)
    return str(found) if found else None


def _interaction(activity: Activity, **fields: Any) -> Interaction:
    sender = activity.from_property or ChannelAccount(id="")
    conversation = activity.conversation
    return Interaction(
        actor=Actor(
            "teams", sender.id or "", sender.name or "", aad_object_id=sender.aad_object_id
        ),
        conversation=Conversation(
            "teams", conversation.id, personal=conversation.conversation_type == "personal"
        ),
        delivery_id=f"teams:{conversation.id}:{activity.id}",
        can_reply=True,
        **fields,
    )


class HelpdeskTeamsBot(ActivityHandler):  # type: ignore[misc]
    def __init__(self, deps: Deps, references: ReferenceStore, *, app_id: str) -> None:
        self.deps = deps
        self.references = references
        self.app_id = app_id

    async def on_turn(self, turn_context: TurnContext) -> None:
        await self.references.remember(turn_context.activity)
        await super().on_turn(turn_context)

    # -- messages and Action.Submit -------------------------------------------------------------

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        activity = turn_context.activity
        if isinstance(activity.value, dict) and activity.value:
            name, data = adaptive.submitted_values(activity.value)
            action = _action_id(name)
            if action is None:
                log.info("teams: submit with unknown action %r", name)
                await turn_context.send_activity(replies.text_activity(UNKNOWN_ACTION))
                return
            interaction = _interaction(activity, action=action, data=data)
        else:
            command = strip_teams_prefix(replies.strip_mentions(activity.text or ""))
            if command is None:
                await turn_context.send_activity(replies.text_activity(replies.HINT))
                return
            interaction = _interaction(activity, text=command)
        reply = await answer(self.deps, interaction)
        await self._answer(turn_context, interaction, reply)

    async def _answer(
        self, turn_context: TurnContext, interaction: Interaction, reply: Reply
    ) -> None:
        if reply.duplicate:
            return
        if reply.field_errors or (reply.form_error and interaction.action in replies.FORMS):
            card = replies.error_form(self.deps, interaction.action, interaction.data, reply)
            outgoing: Activity | None = replies.card_activity(card)
        else:
            outgoing = replies.reply_activity(reply)
        if outgoing is None:
            return
        if reply.image is not None:
            png = await asyncio.to_thread(reply.image.render)  # the chart: off the event loop
            attached = replies.image_attachment(reply.image, png)
            outgoing.attachments = [*(outgoing.attachments or []), attached]
        private_elsewhere = (
            reply.private and not reply.as_form and not reply.field_errors and not reply.form_error
        )
        if private_elsewhere and not interaction.conversation.personal:
            if await self._send_personal(turn_context, outgoing):
                return
        sent = await turn_context.send_activity(outgoing)
        await self._remember_card(turn_context, reply, getattr(sent, "id", None))

    async def _remember_card(
        self, turn_context: TurnContext, reply: Reply, message_id: str | None
    ) -> None:
        if reply.ticket_card_of is None or not message_id:
            return
        try:
            await tickets.remember_card(
                self.deps,
                ticket_id=reply.ticket_card_of,
                channel=turn_context.activity.conversation.id,
                message=message_id,
            )
        except Exception:
            # The ticket and its card are out; the card just will not be refreshed later.
            log.exception("teams: could not record where the ticket card %s is", message_id)

    async def _send_personal(self, turn_context: TurnContext, outgoing: Activity) -> bool:
        """Send to the person's 1:1 chat with the bot; False if that cannot be done."""
        activity = turn_context.activity
        sender = activity.from_property
        if sender is None or not sender.id or activity.recipient is None:
            return False
        tenant = tenant_of(activity)
        parameters = proactive.personal_chat_parameters(
            bot_id=activity.recipient.id,
            user_id=sender.id,
            tenant_id=tenant,
            aad_object_id=sender.aad_object_id,
        )

        async def work(ctx: TurnContext) -> dict[str, Any]:
            await proactive.post(ctx, outgoing, conversation_id=ctx.activity.conversation.id)
            return proactive.personal_reference(ctx, user_id=sender.id, tenant_id=tenant)

        adapter: CloudAdapterBase = turn_context.adapter
        try:
            reference = await proactive.open_personal_chat(
                adapter,
                self.app_id,
                service_url=activity.service_url,
                channel_id=activity.channel_id,
                parameters=parameters,
                work=work,
            )
        except Exception as exc:
            log.info("teams: 1:1 chat unavailable (%s); replying in place", type(exc).__name__)
            return False
        await self.references.save([(user_key(sender.id), reference)])
        return True

    # -- Action.Execute ---------------------------------------------------------------------------

    async def on_invoke_activity(self, turn_context: TurnContext) -> InvokeResponse:
        activity = turn_context.activity
        if activity.name != "adaptiveCard/action":
            log.info("teams: unhandled invoke %r answered 501", activity.name)
            return InvokeResponse(status=501)
        # AdaptiveCardInvokeValue leaves `action` a plain dict; read the raw value directly.
        action_value = _dict(_dict(activity.value).get("action"))
        name, data = adaptive.submitted_values(_dict(action_value.get("data")))
        action = _action_id(action_value.get("verb") or name)
        if action is None:
            log.info("teams: Action.Execute with unknown verb %r", action_value.get("verb"))
            body = {
                "statusCode": 200,
                "type": replies.MESSAGE_CONTENT_TYPE,
                "value": UNKNOWN_ACTION,
            }
            return InvokeResponse(status=200, body=body)
        interaction = _interaction(activity, action=action, data=data)
        reply = await answer(self.deps, interaction)
        body = replies.invoke_body(self.deps, action, data, reply)
        if body.get("type") == replies.CARD_CONTENT_TYPE:
            # The answer card replaces the card that was clicked: that message is the card.
            await self._remember_card(turn_context, reply, activity.reply_to_id)
        return InvokeResponse(status=200, body=body)

    # -- installs ---------------------------------------------------------------------------------

    async def on_members_added_activity(
        self, members_added: list[ChannelAccount], turn_context: TurnContext
    ) -> None:
        bot = turn_context.activity.recipient
        if bot is not None and any(m.id == bot.id for m in members_added or []):
            await turn_context.send_activity(replies.text_activity(replies.WELCOME))
