"""Slack front door: Bolt AsyncApp -> neutral Interaction -> core -> Block Kit.

Acks go out as soon as the core has answered (process_before_response=True, no 10 ms ack
poll); what needs Slack's Web API afterwards (views.open, response_url) runs as a tracked
background task. Durable side effects never happen here: the core queues them in the outbox.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import ClientSession, web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.correlation import correlation_id, new_correlation_id
from bot.metrics import REQUEST_KIND
from bot.settings import Settings
from bot.slack.files import share_image
from cards import slack as blockkit
from cards.model import ActionId, Card, Text
from handlers.deps import Deps
from handlers.dispatch import answer
from handlers.types import Actor, Conversation, Interaction, Reply

log = logging.getLogger(__name__)
ACTION_PATTERN = re.compile(r"^(ticket|identity|csat)\.[a-z.]+(:\d+)?$")


def make_client(settings: Settings, session: ClientSession | None) -> AsyncWebClient:
    """Web API client on a shared aiohttp session (one connection pool, keep-alive)."""
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    return AsyncWebClient(token=token, base_url=settings.slack_api_url, session=session)


class SlackFront:
    """Owns the Bolt app; translates requests for the core and renders its replies."""

    def __init__(self, settings: Settings, deps: Deps, client: AsyncWebClient) -> None:
        self.deps = deps
        self.client = client
        self._tasks: set[asyncio.Task[None]] = set()
        signing = settings.slack_signing_secret
        # Served over HTTP only with a signing secret. Verification is never switched off:
        # Bolt skips it for requests that came over the Socket Mode WebSocket (already
        # authenticated by the app token), and without a configured secret it gets a random
        # one, so no HTTP request could ever pass (Bolt would otherwise fall back to
        # $SLACK_SIGNING_SECRET or the empty string, which anyone can sign with).
        self.http_enabled = signing is not None
        self.app = AsyncApp(
            client=client,
            signing_secret=signing.get_secret_value() if signing else secrets.token_hex(32),
            process_before_response=True,
            request_verification_enabled=True,
        )
        self.app.command(re.compile(r"^/.+"))(self._on_command)
        self.app.view(re.compile(r".+"))(self._on_view_submission)
        self.app.action(ACTION_PATTERN)(self._on_block_action)
        # Every Events API delivery is answered 200 (a 404 counts as a failed delivery and
        # gets the subscription throttled), also the ones nothing here is interested in.
        self.app.event(re.compile(".*"))(self._on_event)
        self.app.error(self._on_error)

    async def handle_http(self, request: web.Request) -> web.Response:
        """POST /slack/events: Bolt verifies the signature and routes the request."""
        if not self.http_enabled:  # the route is not even registered then (bot.app)
            return web.json_response({"error": "not found"}, status=404)
        try:
            bolt_request = await to_bolt_request(request)
        except (ValueError, UnicodeDecodeError) as exc:
            # Bolt parses the body before it checks the signature: garbage is a 400 here.
            log.warning("slack: malformed request body (%s)", type(exc).__name__)
            return web.json_response({"error": "malformed body"}, status=400)
        request[REQUEST_KIND] = _kind(bolt_request.body)
        bolt_response = await self.app.async_dispatch(bolt_request)
        return await to_aiohttp_response(bolt_response)

    # -- listeners ---------------------------------------------------------------------------

    async def _on_command(self, ack: Any, body: dict[str, Any], respond: Any) -> None:
        trigger = body.get("trigger_id")
        interaction = Interaction(
            actor=Actor("slack", body["user_id"], body.get("user_name", "")),
            conversation=Conversation("slack", body.get("channel_id", "")),
            text=body.get("text", ""),
            # A retried command (HTTP X-Slack-Retry-Num, or a redelivered socket envelope)
            # carries the same trigger_id: the core does its work once.
            delivery_id=f"slack:command:{trigger}" if trigger else None,
        )
        reply = await self._handle(interaction)
        if reply.duplicate:
            await ack()
            return
        if reply.as_form and reply.card is not None:
            await ack()
            card, trigger = reply.card, body["trigger_id"]
            # Rendering happens after the ack too: it is not needed to answer Slack.
            self._spawn(
                lambda: self.client.views_open(trigger_id=trigger, view=blockkit.render_modal(card))
            )
            return
        await ack(**self._ack_message(reply))
        if reply.image is not None:
            # After the ack: the chart is rendered on a thread and uploaded where it was asked.
            image, user = reply.image, body["user_id"]
            channel = str(body.get("channel_id", ""))
            self._spawn(
                lambda: share_image(self.client, image, channel=channel, user=user, respond=respond)
            )

    async def _on_view_submission(self, ack: Any, body: dict[str, Any]) -> None:
        view = body["view"]
        try:
            action = ActionId(view.get("callback_id", ""))
            context = json.loads(view.get("private_metadata") or "{}")
        except ValueError:
            log.warning("view_submission with unknown callback_id %r", view.get("callback_id"))
            await ack(response_action="errors", errors={})
            return
        values = blockkit.view_values(view.get("state", {}).get("values", {}))
        interaction = Interaction(
            actor=_actor(body),
            conversation=Conversation("slack", str(context.get("channel", ""))),
            action=action,
            data={**values, **context},
            delivery_id=f"slack:view:{view.get('id')}",
            can_reply=False,
        )
        reply = await self._handle(interaction)
        if reply.field_errors:
            await ack(response_action="errors", errors=reply.field_errors)
        elif reply.form_error and (first := _first_input(view)):
            # Nothing was saved: keep the form and what they typed, say why on top.
            await ack(response_action="errors", errors={first: reply.form_error})
        elif reply.as_form and reply.card is not None:
            await ack(response_action="update", view=blockkit.render_modal(reply.card))
        elif reply.text and not reply.card and not reply.duplicate:
            # A refusal or problem: keep the person in the modal and say why.
            notice = Card(title="Helpdesk", body=[Text(reply.text)], fallback=reply.text)
            await ack(response_action="update", view=blockkit.render_modal(notice))
        else:
            await ack()

    async def _on_block_action(self, ack: Any, body: dict[str, Any], respond: Any) -> None:
        await ack()
        action = body["actions"][0]
        try:
            value = json.loads(action.get("value") or "{}")
        except ValueError:
            value = {}
        channel = (body.get("channel") or {}).get("id", "")
        message = body.get("message") or {}
        interaction = Interaction(
            actor=_actor(body),
            conversation=Conversation(
                "slack", channel, thread=message.get("thread_ts") or message.get("ts")
            ),
            action=ActionId(action["action_id"].split(":")[0]),
            data=value if isinstance(value, dict) else {},
            delivery_id=f"slack:action:{message.get('ts', '')}:{action.get('action_ts', '')}",
        )
        reply = await self._handle(interaction)
        if reply.duplicate:
            return
        if reply.as_form and reply.card is not None:
            view = blockkit.render_modal(reply.card)
            trigger = body["trigger_id"]
            self._spawn(lambda: self.client.views_open(trigger_id=trigger, view=view))
        elif reply.card is not None or reply.text:
            payload = self._ack_message(reply)
            payload["replace_original"] = False
            self._spawn(lambda: respond(**payload))

    async def _on_event(self, body: dict[str, Any]) -> None:
        """Events the bot does not act on are acknowledged and dropped."""

    async def _handle(self, interaction: Interaction) -> Reply:
        """The core's answer; an unexpected failure is logged and shown with its reference."""
        try:
            return await answer(self.deps, interaction)
        except Exception:
            ref = correlation_id.get()
            if ref == "-":  # Socket Mode: no HTTP middleware set one
                ref = new_correlation_id()
            log.exception("slack: %s failed (ref %s)", interaction.action or "command", ref)
            return Reply(
                text=f"Something went wrong (ref {ref}). Nothing was changed; "
                "please try again or tell your admin the reference."
            )

    async def _on_error(self, error: Exception, body: dict[str, Any]) -> None:
        ref = new_correlation_id()
        log.exception("slack request failed (ref %s)", ref, exc_info=error)

    # -- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _ack_message(reply: Reply) -> dict[str, Any]:
        card = reply.card or Card(title="", body=[Text(reply.text)], fallback=reply.text)
        if reply.card and reply.text:
            card = Card(
                title=card.title,
                body=[Text(reply.text), *card.body],
                buttons=card.buttons,
                fallback=card.fallback or reply.text,
            )
        message = blockkit.render_message(card)
        message["response_type"] = "ephemeral" if reply.private else "in_channel"
        return message

    def _spawn(self, work: Callable[[], Awaitable[Any]]) -> None:
        async def run() -> None:
            try:
                await work()
            except SlackApiError as exc:
                log.warning("slack call failed after ack: %s", exc.response.get("error"))
            except Exception:
                log.exception("slack call failed after ack")

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start_socket_mode(self, app_token: str) -> None:
        """Connect over Socket Mode (no public URL needed)."""
        from bot.slack.socket_mode import SocketModeHandler

        self._socket = SocketModeHandler(self.app, app_token, web_client=self.client)
        await self._socket.connect_async()
        log.info("Slack Socket Mode connected")

    async def stop_socket_mode(self) -> None:
        socket = getattr(self, "_socket", None)
        if socket is not None:
            await socket.close_async()

    async def drain(self) -> None:
        """Wait for post-ack calls still running (shutdown, tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _kind(body: dict[str, Any]) -> str:
    """`command`, `view_submission`, `block_actions`, `event_callback`... for metrics."""
    if "command" in body:
        return "command"
    return str(body.get("type") or "other")


def _actor(body: dict[str, Any]) -> Actor:
    user = body.get("user") or {}
    return Actor("slack", user.get("id", ""), user.get("name") or user.get("username") or "")


def _first_input(view: dict[str, Any]) -> str | None:
    """The block id of the first input of a submitted view (where a form-wide problem goes)."""
    for block in view.get("blocks") or []:
        if isinstance(block, dict) and block.get("type") == "input" and block.get("block_id"):
            return str(block["block_id"])
    return None
