"""The Teams ActivityHandler: activities -> neutral Interaction -> core -> Teams replies."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from botbuilder.core import ActivityHandler, CloudAdapterBase, InvokeResponse, TurnContext
from botbuilder.schema import Activity, ActivityTypes, ChannelAccount
from msrest.exceptions import HttpOperationError

from bot import places
from bot.directory.deadline import person_waiting
from bot.notifiers import DeliveryError
from bot.places import Places
from bot.teams import proactive, replies
from bot.teams.notifier import TRANSPORT_ERRORS, delivery_error, transport_error
from bot.teams.references import ReferenceStore, user_key
from cards import teams as adaptive
from cards.model import ActionId, Card, Inline, Rich, Typed, kept_text
from handlers import notify, tickets
from handlers.commands import strip_teams_prefix, welcome
from handlers.deps import Deps
from handlers.dispatch import answer, first_answer
from handlers.types import REPLY_CHAIN, TICKET_MESSAGE, Actor, Conversation, Interaction, Reply
from handlers.working import ticket_numbers
from storage.errors import is_unavailable

log = logging.getLogger(__name__)
# The channel gives a turn 10-15 s: the directory may keep the person waiting this long.
DIRECTORY_WAIT = 12.0
UNKNOWN_ACTION = "That button or form is not available any more. Try `ticket help`."
# Attachments that are files (SPEC): images and files from OneDrive/SharePoint. `text/html`
# (the message body again) and cards are not.
FILE_INFO = "application/vnd.microsoft.teams.file.download.info"
# Attachments looked at in one message (the core records the first files of them and says
# how many more it left out); the request body's size bounds them anyway.
MAX_ATTACHMENTS = 1000
TASK_INVOKES = frozenset({"task/fetch", "task/submit"})
# An answer the connector refused without a Retry-After (412, 502, 503, 504) or could not be
# reached for goes out through the outbox after this long (the conversation is held as long).
ANSWER_RETRY = 2.0
# SPEC: every activity is answered within 3 s, also while the database cannot be reached. An
# answer sent in the turn first reads the Retry-After windows other processes share through
# the database: given up (memory only) once the turn has run this long, at least SHARED_READ
# allowed (after the core's 2 s answer budget the send itself still has to go out).
TURN_READS_UNTIL = 2.5
SHARED_READ = 0.1
_TURN_STARTED = "helpdesk.turn_started"
# Storing the activity's conversation reference (for later proactive messages) is waited for
# this long in the turn; a database that does not answer (a partition) leaves it to finish in
# the background, and the person is answered (it held every turn of someone new for 5 s).
REMEMBER_WAIT = 0.3
# Said in a channel or group chat, instead of an answer meant only for the person who asked,
# when their 1:1 chat with the bot cannot be opened (the app is not installed for them).
NOT_PRIVATE = (
    "{name}: the answer is meant only for you and could not be sent to you privately ({bot} "
    "cannot open a 1:1 chat with you). Open a 1:1 chat with {bot} (or add the app for yourself "
    "in Apps), then ask again."
)


def not_private(name: str, bot: str) -> Rich:
    """NOT_PRIVATE for `name` (the asker's Teams profile name) and `bot` (the bot's): names
    shown literally."""
    parts: list[str | Typed] = []
    for piece in re.split(r"(\{name\}|\{bot\})", NOT_PRIVATE):
        if piece in ("{name}", "{bot}"):
            parts.append(Typed(name if piece == "{name}" else bot))
        elif piece:
            parts.append(piece)
    return Rich(*parts)


def shared_files(activity: Activity) -> list[dict[str, Any]]:
    """The message's file attachments as the core takes them (name, link, type): nothing is
    downloaded."""
    files = []
    for attachment in (activity.attachments or [])[:MAX_ATTACHMENTS]:
        kind = str(getattr(attachment, "content_type", "") or "")
        url = str(getattr(attachment, "content_url", "") or "")
        if not url or not (kind == FILE_INFO or kind.lower().startswith("image/")):
            continue
        content = _dict(getattr(attachment, "content", None))
        name = getattr(attachment, "name", None) or ""
        if not name and kind.lower().startswith("image/"):
            name = f"image ({kind})"
        files.append(
            {
                "name": name,
                "url": url,
                "id": content.get("uniqueId") or "",
                "content_type": str(content.get("fileType") or kind),
                "size": None,
            }
        )
    return files


def reply_chain(conversation_id: str) -> tuple[str, str] | None:
    """(channel, root post id) for a conversation id naming a reply chain in a Teams channel
    (`19:…@thread.tacv2;messageid=1700000000000`), else None."""
    channel, marker, thread = conversation_id.partition(REPLY_CHAIN)
    return (channel, thread) if marker and channel and thread else None


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("teams: storing a conversation reference failed", exc_info=error)


def _left(turn_context: TurnContext) -> float | None:
    """How long a shared read in this turn may take (None: not in a turn)."""
    started = turn_context.turn_state.get(_TURN_STARTED)
    if started is None:
        return None
    spent = asyncio.get_running_loop().time() - float(started)
    return max(TURN_READS_UNTIL - spent, SHARED_READ)


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


# Forms whose repeated submission nothing else catches: the escalation and closure forms
# have their own checks, with reasons (the same handoff again; the ticket is closed).
_ONE_PER_CARD = frozenset({ActionId.TICKET_CREATE})


def _delivery_id(activity: Activity, sender: str, fields: dict[str, Any]) -> str | None:
    """What makes a repeat of this activity the same delivery. Teams (and the Bot Framework
    channel) send a redelivered activity with its id. The intake form filled in on a card is
    one delivery per card message (`replyToId`), person and values, whatever the activity id:
    the card stays after Action.Submit (and until Action.Execute's answer replaces it), and a
    second click on it is a new activity, as a Slack modal's submission is one delivery per
    view and values. A refused submission is not remembered: corrected, it goes through."""
    conversation = activity.conversation.id
    action = fields.get("action")
    if action in _ONE_PER_CARD and activity.reply_to_id:
        values = json.dumps(fields.get("data") or {}, sort_keys=True, ensure_ascii=False)
        digest = hashlib.sha256(values.encode()).hexdigest()
        return f"teams:form:{conversation}:{activity.reply_to_id}:{sender}:{action}:{digest}"
    return f"teams:{conversation}:{activity.id}:{_content(activity)}" if activity.id else None


def _content(activity: Activity) -> str:
    """A short digest of what an activity says. A redelivery is the same activity, content and
    all, so ids are taken with it: a sender that reuses one activity id for different messages
    (a client or test suite built from one sample activity) has each of them handled."""
    content = json.dumps(
        [
            activity.type,
            activity.text or "",
            activity.value,
            sorted(getattr(member, "id", None) or "" for member in activity.members_added or []),
        ],
        sort_keys=True,
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(content.encode()).hexdigest()[:16]


def _answer_id(activity: Activity) -> str | None:
    """The id the answer to this activity is claimed under when it is a message of its own
    (a message's answer, the welcome): a redelivered activity (same id) gets no second one.
    An invoke's answer is its response, given again to a redelivery (the first was lost)."""
    if activity.type == ActivityTypes.invoke or not activity.id:
        return None
    return f"teams:answer:{activity.conversation.id}:{activity.id}:{_content(activity)}"


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
        delivery_id=_delivery_id(activity, sender.id or "", fields),
        can_reply=True,
        answer_id=_answer_id(activity),
        **fields,
    )


class HelpdeskTeamsBot(ActivityHandler):  # type: ignore[misc]
    def __init__(
        self,
        deps: Deps,
        references: ReferenceStore,
        *,
        app_id: str,
        places: Places | None = None,
    ) -> None:
        self.deps = deps
        self.references = references
        self.app_id = app_id
        self.places = places or Places()
        self._later: set[asyncio.Task[None]] = set()

    async def on_turn(self, turn_context: TurnContext) -> None:
        turn_context.turn_state[_TURN_STARTED] = asyncio.get_running_loop().time()
        remembering = asyncio.ensure_future(self.references.remember(turn_context.activity))
        done, _ = await asyncio.wait({remembering}, timeout=REMEMBER_WAIT)
        if remembering in done:
            remembering.result()
        else:
            self._later.add(remembering)  # drain() waits for it too
            remembering.add_done_callback(self._later.discard)
            remembering.add_done_callback(_log_failure)
        await super().on_turn(turn_context)

    # -- messages and Action.Submit -------------------------------------------------------------

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        activity = turn_context.activity
        if isinstance(activity.value, dict) and activity.value:
            name, data = adaptive.submitted_values(activity.value)
            action = _action_id(name)
            if action is None:
                log.info("teams: submit with unknown action %r", name)
                await self._answer_once(turn_context, UNKNOWN_ACTION)
                return
            interaction = _interaction(activity, action=action, data=data)
        else:
            text = replies.strip_mentions(replies.without_bot_mentions(activity))
            files = shared_files(activity)
            named = ticket_numbers(text, self.deps.config.ticket_prefix, limit=1)
            chain = reply_chain(activity.conversation.id if activity.conversation else "")
            command = None if files and named else strip_teams_prefix(text)
            if command is not None:
                interaction = _interaction(activity, text=command)
            elif files or named or chain is not None:
                # About a ticket: files on a message naming it, a message naming it, or a
                # reply in a channel post's reply chain (the bot @mentioned there). Files are
                # recorded on the ticket; a technician's message where its card is is its first
                # response. The core is told which chain it was.
                message: dict[str, Any] = {"files": files, "text": text}
                if chain is not None:
                    message |= {"channel": chain[0], "thread": chain[1]}
                interaction = _interaction(activity, event=TICKET_MESSAGE, data=message)
            else:
                await self._answer_once(turn_context, replies.HINT)
                return
        reply = await self._core(interaction)
        # Sent within its claim (when the core made one): recorded as answered once it is out.
        async with reply.answering or contextlib.nullcontext():
            if interaction.event is not None and not reply.duplicate and not reply.text:
                # Nothing about a ticket came of it: a message the bot does not understand (the
                # core claimed its answer).
                await self.send_text(turn_context, replies.HINT)
                return
            await self._answer(turn_context, interaction, reply)
        if reply.follow_up is not None:
            task = asyncio.get_running_loop().create_task(
                self._follow_up(turn_context, interaction, reply)
            )
            self._later.add(task)
            task.add_done_callback(self._later.discard)

    async def _follow_up(
        self, turn_context: TurnContext, interaction: Interaction, reply: Reply
    ) -> None:
        """The rest of an answer (e.g. KB articles that came late), after the turn: to the
        person's 1:1 chat when the answer was private, else to the same conversation."""
        assert reply.follow_up is not None
        try:
            later = await reply.follow_up()
            message = replies.reply_message(later)
            if message is None:
                return
            outgoing, content = message
            if later.private and not interaction.conversation.personal:
                await self._answer_privately(
                    turn_context,
                    outgoing,
                    content,
                    after_turn=True,
                    confidential=later.confidential,
                )
                return
            await self._send(
                turn_context, outgoing, content, deliver=self._in_place(turn_context, outgoing)
            )
        except Exception:
            log.exception("teams: the rest of an answer could not be sent")

    def _in_place(
        self, turn_context: TurnContext, outgoing: Activity
    ) -> Callable[[], Awaitable[str]]:
        """A proactive post of `outgoing` to the turn's conversation (after the turn)."""
        activity = turn_context.activity
        reference = TurnContext.get_conversation_reference(activity)

        async def work(ctx: TurnContext) -> str:
            return await proactive.post(ctx, outgoing, conversation_id=activity.conversation.id)

        async def deliver() -> str:
            return await proactive.continue_conversation(
                turn_context.adapter, reference, self.app_id, work
            )

        return deliver

    async def drain(self) -> None:
        """Wait for answers still being completed (shutdown, tests)."""
        if self._later:
            await asyncio.wait(list(self._later), timeout=10)

    async def _core(self, interaction: Interaction) -> Reply:
        """The core's answer. Teams waits up to ~15 s for a turn: the directory (a throttled
        Graph) is waited for up to DIRECTORY_WAIT; anything else that has not answered within
        the answer budget (a database that went silent) is given up and the person told."""
        with person_waiting(DIRECTORY_WAIT) as turn:
            return await answer(
                self.deps, interaction, keep_waiting=lambda: turn.waiting_for_directory
            )

    async def _answer(
        self, turn_context: TurnContext, interaction: Interaction, reply: Reply
    ) -> None:
        if reply.duplicate:
            return
        card: Card | None
        if reply.field_errors or (reply.form_error and interaction.action in replies.FORMS):
            card = replies.error_form(self.deps, interaction.action, interaction.data, reply)
        else:
            card = replies.with_text(reply)
        if card is None and not reply.text:
            return
        content: dict[str, Any]
        if card is not None:
            outgoing, content = replies.card_activity(card), {"card": card.to_dict()}
        else:
            outgoing, content = replies.text_activity(reply.text), kept_text(reply.text)
        if reply.image is not None:
            png = await asyncio.to_thread(reply.image.render)  # the chart: off the event loop
            content["image"] = replies.image_content(reply.image, png)
            attached = replies.png_attachment(content["image"])
            outgoing.attachments = [*(outgoing.attachments or []), attached]
        private_elsewhere = (
            reply.private and not reply.as_form and not reply.field_errors and not reply.form_error
        )
        if private_elsewhere and not interaction.conversation.personal:
            await self._answer_privately(
                turn_context, outgoing, content, after_turn=False, confidential=reply.confidential
            )
            return
        sent = await self._send(
            turn_context,
            outgoing,
            content,
            ticket_id=reply.ticket_card_of,
            card_version=reply.card_version,
        )
        await self._remember_card(turn_context, reply, sent)

    async def _answer_once(self, turn_context: TurnContext, text: Inline) -> None:
        """Answer `text` unless an earlier delivery of this activity was answered (the answers
        the edge gives without the core: the same claim as the core's, `first_answer`)."""
        answering = await first_answer(self.deps, _answer_id(turn_context.activity))
        if answering is None:
            log.info("teams: activity %s was answered before", turn_context.activity.id)
            return
        async with answering:
            await self.send_text(turn_context, text)

    async def send_text(self, turn_context: TurnContext, text: Inline) -> None:
        """Answer `text` in the turn (later through the outbox when throttled)."""
        await self._send(turn_context, replies.text_activity(text), kept_text(text))

    async def _send(
        self,
        turn_context: TurnContext,
        outgoing: Activity,
        content: dict[str, Any],
        *,
        ticket_id: int | None = None,
        card_version: str = "",
        deliver: Callable[[], Awaitable[str | None]] | None = None,
    ) -> str | None:
        """Answer in the turn (or with `deliver`, e.g. a proactive post to the same
        conversation after the turn); the message id, or None when the connector throttles this
        conversation or fails for the moment (429, 412, 502, 503, 504, unreachable): then the
        answer goes out through the outbox once the wait is over (the activity itself is
        still answered at once). Only a permanent refusal (401, 403, 404, 413) raises."""
        conversation = turn_context.activity.conversation.id
        place = places.teams_conversation(conversation)
        # A window another process was given, too (within the turn's time when in the turn).
        await self.places.learn((place,), timeout=None if deliver else _left(turn_context))
        wait = self.places.blocked_for(place)
        if wait <= 0:
            try:
                if deliver is not None:
                    return await deliver() or None
                sent = await turn_context.send_activity(outgoing)
                return str(getattr(sent, "id", "") or "") or None
            except HttpOperationError as exc:
                error = delivery_error(exc, place)
                if error.permanent:
                    raise
            except TRANSPORT_ERRORS as exc:
                error = transport_error(exc)
            if error.retry_after is None:
                wait = ANSWER_RETRY
                self.places.block(place, wait)  # this answer's retry, not a Retry-After
            else:
                wait = error.retry_after
                await self.places.refused(place, wait)
            log.warning(
                "teams: answer in %s not delivered (%s); sending it in %.1f s",
                conversation,
                error,
                wait,
            )
        try:
            await notify.answer_later(
                self.deps,
                platform="teams",
                conversation=conversation,
                content=content,
                due_at=datetime.now(UTC) + timedelta(seconds=wait),
                ticket_id=ticket_id,
                card_version=card_version,
            )
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            # Refused by the connector while the database is down: nowhere durable to keep it.
            # One line for this answer, no traceback (the outage itself is the database
            # monitor's to say), and the turn ends as a refused answer does.
            log.warning(
                "teams: answer in %s not queued either: the database cannot be reached (%s)",
                conversation,
                type(exc).__name__,
            )
        return None

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
                version=reply.card_version,
            )
        except Exception:
            # The ticket and its card are out; the card just will not be refreshed later.
            log.exception("teams: could not record where the ticket card %s is", message_id)

    async def _answer_privately(
        self,
        turn_context: TurnContext,
        outgoing: Activity,
        content: dict[str, Any],
        *,
        after_turn: bool,
        confidential: bool,
    ) -> None:
        """An answer meant only for the person who asked in a shared conversation (a channel,
        a group chat): to their 1:1 chat with the bot. When that chat cannot be used, SPEC's
        "or reply": the answer is given where it was asked (nothing in it is kept from that
        conversation's members: `show`, `mine`, `help`, refusals), unless it is
        `confidential` (the requester's number on file), which never goes to a conversation
        others read: refused for the moment (throttled, 5xx, unreachable), it is sent to them
        through the outbox once the wait is over; when the chat cannot be opened at all, the
        conversation is told only that (naming them) and what to do."""
        problem = await self._send_personal(turn_context, outgoing)
        if problem is None:
            return
        activity = turn_context.activity
        sender = activity.from_property
        if not confidential:
            log.info("teams: 1:1 chat unavailable (%s); answering where it was asked", problem)
            deliver = self._in_place(turn_context, outgoing) if after_turn else None
            await self._send(turn_context, outgoing, content, deliver=deliver)
            return
        if not problem.permanent and sender is not None and sender.id:
            wait = problem.retry_after if problem.retry_after is not None else ANSWER_RETRY
            log.warning(
                "teams: an answer for %s not delivered to their 1:1 chat (%s); sending it "
                "there in %.1f s",
                sender.id,
                problem,
                wait,
            )
            aad = {"aad_object_id": sender.aad_object_id} if sender.aad_object_id else {}
            await notify.answer_privately_later(
                self.deps,
                platform="teams",
                user_id=sender.id,
                content=content,
                due_at=datetime.now(UTC) + timedelta(seconds=wait),
                extra=aad,
            )
            return
        name = (getattr(sender, "name", None) or "").strip() or "Someone"
        log.warning(
            "teams: an answer for %s (asked in %s) could not be sent privately: their 1:1 chat "
            "with the bot cannot be opened (%s); the conversation is told so, not the answer",
            getattr(sender, "id", None),
            activity.conversation.id,
            problem,
        )
        bot = (getattr(activity.recipient, "name", None) or "").strip() or "the bot"
        text = not_private(name, bot)
        notice = replies.text_activity(text)
        deliver = self._in_place(turn_context, notice) if after_turn else None
        await self._send(turn_context, notice, kept_text(text), deliver=deliver)

    async def _send_personal(
        self, turn_context: TurnContext, outgoing: Activity
    ) -> DeliveryError | None:
        """Send to the person's 1:1 chat with the bot: None when sent, else why it could not
        be done (permanent or for the moment)."""
        activity = turn_context.activity
        sender = activity.from_property
        if sender is None or not sender.id or activity.recipient is None:
            return DeliveryError("teams: the activity names no sender or bot", permanent=True)
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
        except HttpOperationError as exc:
            return delivery_error(exc)
        except TRANSPORT_ERRORS as exc:
            return transport_error(exc)
        except Exception as exc:
            return DeliveryError(f"teams: {type(exc).__name__}", permanent=True)
        await self.references.save([(user_key(sender.id), reference)])
        return None

    # -- Action.Execute ---------------------------------------------------------------------------

    async def on_invoke_activity(self, turn_context: TurnContext) -> InvokeResponse:
        activity = turn_context.activity
        if activity.name in TASK_INVOKES:
            # A task module the bot never offers (no card of its opens one): the platform's
            # answer for "nothing to show but a message".
            log.info(
                "teams: %s answered with a message: the bot offers no task modules", activity.name
            )
            task = {"task": {"type": "message", "value": UNKNOWN_ACTION}}
            return InvokeResponse(status=200, body=task)
        if activity.name != "adaptiveCard/action":
            # Message extensions, sign-in, config: nothing the app's manifest declares. A 4xx,
            # not botbuilder's 501: a client asking for what was never offered is no server fault.
            log.warning("teams: refused invoke %.64r (400): not offered by this bot", activity.name)
            return InvokeResponse(status=400, body={"error": "this invoke is not supported"})
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
        interaction = _interaction(
            activity, action=action, data=data, replaces_message=activity.reply_to_id or None
        )
        reply = await self._core(interaction)
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
        added = [getattr(member, "id", None) for member in members_added or []]
        if bot is not None and bot.id and bot.id in added:
            answering = await first_answer(self.deps, _answer_id(turn_context.activity))
            if answering is None:
                # A redelivered conversationUpdate (same id): welcomed once.
                log.info("teams: activity %s was welcomed before", turn_context.activity.id)
                return
            card = welcome("teams")
            async with answering:
                await self._send(
                    turn_context, replies.card_activity(card), {"card": card.to_dict()}
                )
