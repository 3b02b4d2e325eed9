"""Slack front door: Bolt AsyncApp -> neutral Interaction -> core -> Block Kit.

Acks go out as soon as the core has answered (process_before_response=True, no 10 ms ack
poll); what needs Slack's Web API afterwards (views.open, response_url) runs as a tracked
background task. Durable side effects never happen here: the core queues them in the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import ClientError, ClientSession, web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.request.async_internals import build_async_context
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.request.internals import (
    build_normalized_headers,
    extract_content_type,
    parse_query,
)
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.correlation import correlation_id, new_correlation_id
from bot.directory.deadline import person_waiting
from bot.metrics import REQUEST_KIND
from bot.settings import ConfigError, Settings
from bot.slack import shapes
from bot.slack.deliveries import delivery_id
from bot.slack.errors import slack_error
from bot.slack.notifier import METADATA_TYPE
from cards import slack as blockkit
from cards.model import ActionId, Card, Inline, Rich, Text, plain
from handlers.deps import Deps
from handlers.dispatch import answer, is_instant
from handlers.types import TICKET_MESSAGE, Actor, Conversation, Interaction, Reply

if TYPE_CHECKING:
    from bot.slack.socket_mode import Answered

log = logging.getLogger(__name__)
# Slack wants an answer within 3 s. The core gives up on anything but the directory after
# its answer budget (handlers.dispatch.ANSWER_BUDGET, 2 s: the person is told nothing was
# saved); what is still waiting for the directory then is acked and answered later.
ACK_WITHIN = 2.3
# How long the directory may keep a person waiting in one turn (answered later, see above).
DIRECTORY_WAIT = 25.0
WORKING = "Working on it…"
FORM_TOO_LATE = "The form took too long to open: please run the command again."
BUTTON_FORM_TOO_LATE = "The form took too long to open: please press the button again."
# A file object Slack sends without its details (Slack Connect) is read with files.info,
# for at most this long. The event is acked at ACK_WITHIN whatever the wait: a slow answer
# must not leave the file recorded under its id with no link, for good.
FILE_INFO_WAIT = 10.0
# Message events the bot reads: new messages, file shares and thread replies sent to the
# channel too (edits, deletions and joins are acknowledged by the catch-all and dropped).
MESSAGE_SUBTYPES = (None, "file_share", "thread_broadcast")
SIGNATURE_MAX_AGE = 5 * 60
# How long start-up waits for the first Socket Mode connection; after that it goes on
# connecting in the background.
FIRST_CONNECT_WAIT = 10.0
# How long stopping waits for Socket Mode envelopes in hand to be acknowledged.
STOP_WAIT = 3.0
# The commands the bot listens to (Bolt's listener pattern, and the front door's own answers).
COMMAND_PATTERN = re.compile(r"^/.+")
# The bot's own buttons (`ticket.verify`, `ticket.verify:2`...); shapes.inspect acknowledges
# any other press without routing it.
ACTION_PATTERN = re.compile(
    "^(?:" + "|".join(re.escape(a.value) for a in ActionId) + r")(?::\d+)?$"
)


def unescape(text: str) -> str:
    """A command's or message's text as the person typed it: Slack sends `&`, `<` and `>` as
    `&amp;`, `&lt;`, `&gt;` (platform-facts §5: unescape before storing or matching; the
    renderers escape again when posting). `&amp;` last, so a typed `&lt;` stays `&lt;`."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


class CheckedRequest(AsyncBoltRequest):  # type: ignore[misc]
    """A Bolt request for a body the front door has already parsed and checked.

    `AsyncBoltRequest.__init__` parses the raw body again (a second URL-decoding of the whole
    payload), and its parser returns {} for any form body that mentions "payload" without a
    payload field (`/ticket new 413 payload too large` would go unanswered). This sets what
    that constructor sets, from the checked body; the raw text stays for Bolt's own signature
    check. tests/unit/test_slack_front.py compares the two, so a Bolt upgrade that adds a
    field shows up there.
    """

    def __init__(self, *, raw: str, body: dict[str, Any], query: str, headers: Any) -> None:
        self.raw_body = raw
        self.query = parse_query(query)
        self.headers = build_normalized_headers(headers)
        self.content_type = extract_content_type(self.headers)
        self.body = body
        self.context = build_async_context(AsyncBoltContext(), body)
        self.lazy_only = bool(self.headers.get("x-slack-bolt-lazy-only", [False])[0])
        self.lazy_function_name = self.headers.get("x-slack-bolt-lazy-function-name", [None])[0]
        self.mode = "http"


def make_client(
    settings: Settings, session: ClientSession | None, *, in_turn: bool = False
) -> AsyncWebClient:
    """Web API client on a shared aiohttp session (one connection pool, keep-alive).

    `in_turn`: for calls made right after answering a person (opening a modal): a 429 is
    retried once after its Retry-After by slack_sdk's own handler, since the trigger id will
    not outlive an outbox round trip. The outbox's client has no such retry: a throttled
    delivery is a failed attempt that the worker retries after the wait (bot.places).
    """
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    handlers: list[AsyncRetryHandler] = [AsyncConnectionErrorRetryHandler()]
    if in_turn:
        handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=1))
    return AsyncWebClient(
        token=token, base_url=settings.slack_api_url, session=session, retry_handlers=handlers
    )


def _bolt_logger() -> logging.Logger:
    """The logger handed to Bolt, with no level of its own. Without one, Bolt gives each of
    its loggers the root logger's level as the app starts, so at LOG_LEVEL=DEBUG they logged
    every Socket Mode envelope (response_url, user text) and response body past the cap
    setup_logging puts on `slack_bolt`; handed one, Bolt's loggers take its level (none) and
    stay under that cap."""
    logger = logging.getLogger("slack_bolt.AsyncApp")
    logger.setLevel(logging.NOTSET)
    return logger


@contextlib.contextmanager
def _bolt_construction_quiet() -> Iterator[None]:
    """Only errors from Bolt's app logger while the app is built (its warnings there are about
    the token passed through the client and `authorize` instead of the environment)."""
    logger = _bolt_logger()

    def errors_only(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR

    logger.addFilter(errors_only)
    try:
        yield
    finally:
        logger.removeFilter(errors_only)


class SlackFront:
    """Owns the Bolt app; translates requests for the core and renders its replies."""

    def __init__(self, settings: Settings, deps: Deps, client: AsyncWebClient) -> None:
        self.deps = deps
        self.client = client
        # A thread whose parent may be a ticket card not recorded yet is asked about (the core
        # asks only while such a card is in doubt: handlers.working.attachments).
        deps.slack_message_marker = self._message_marker
        self._tasks: set[asyncio.Task[None]] = set()
        # Set at shutdown: a file still being read is taken as Slack sent it (see _file_info).
        self._stopping = asyncio.Event()
        signing = settings.slack_signing_secret
        # Served over HTTP only with a signing secret. Verification is never switched off:
        # Bolt skips it for requests that came over the Socket Mode WebSocket (already
        # authenticated by the app token), and without a configured secret it gets a random
        # one, so no HTTP request could ever pass (Bolt would otherwise fall back to
        # $SLACK_SIGNING_SECRET or the empty string, which anyone can sign with).
        self.http_enabled = signing is not None
        secret = signing.get_secret_value() if signing else secrets.token_hex(32)
        self._secret = secret.encode()
        token = client.token
        if not token:
            raise ConfigError("SLACK_BOT_TOKEN: needed for Slack")

        async def authorize(enterprise_id: str | None, team_id: str | None) -> AuthorizeResult:
            # The one workspace's bot token, without a Web API call. Bolt's default for a
            # single workspace calls auth.test before serving a request, until one succeeds,
            # and answers 500 while Slack's Web API cannot be reached: `/ticket help`, `mine`
            # and `show`, answered in the HTTP response, need nothing from it. The bot knows
            # its own messages by the `bot_id` Slack puts on them (_on_message).
            return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token=token)

        # Bolt warns that it ignores SLACK_BOT_TOKEN, which it reads from the environment
        # itself, since the client (and `authorize`) carry the token: true, and by design.
        with _bolt_construction_quiet():
            self.app = AsyncApp(
                client=client,
                authorize=authorize,
                signing_secret=secret,
                process_before_response=True,
                request_verification_enabled=True,
                logger=_bolt_logger(),
            )
        self.app.command(COMMAND_PATTERN)(self._on_command)
        self.app.view_submission(re.compile(r".+"))(self._on_view_submission)
        self.app.action(ACTION_PATTERN)(self._on_block_action)
        # Messages in channels the bot is in (`message.channels`, `message.groups`): a reply
        # in a ticket's thread can share files for it or be the ticket's first response.
        self.app.event({"type": "message", "subtype": MESSAGE_SUBTYPES})(self._on_message)
        # Every Events API delivery is answered 200 (a 404 counts as a failed delivery and
        # gets the subscription throttled), also the ones nothing here is interested in.
        self.app.event(re.compile(".*"))(self._on_event)
        self.app.error(self._on_error)

    async def handle_http(self, request: web.Request) -> web.Response:
        """POST /slack/events: signature, then the body's shape, then Bolt routes it.

        The signature is checked first (401), on the raw bytes, so nothing about an unsigned
        body is even parsed; then the body is parsed and its shape checked (400, or 200 for a
        well-formed kind the bot has no use for) before Bolt, which trusts Slack's payloads,
        sees it. Bolt verifies the signature again: it never runs with verification off.
        A command answered from memory (`help`) is answered here instead (`_from_memory`).
        """
        if not self.http_enabled:  # the route is not even registered then (bot.app)
            return web.json_response({"error": "not found"}, status=404)
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            log.warning("slack: request body over %d bytes refused (413)", request.client_max_size)
            return web.json_response({"error": "body too large"}, status=413)
        headers = request.headers
        if not self._signed(raw, headers):
            request[REQUEST_KIND] = "unverified"
            log.warning("slack: unsigned, badly signed or stale request refused (401)")
            return web.json_response({"error": "invalid request"}, status=401)
        charset = request.charset
        try:
            text = raw.decode(charset or "utf-8")
            body = shapes.parse(text, request.content_type)
        except (UnicodeDecodeError, LookupError) as exc:
            request[REQUEST_KIND] = "malformed"
            log.warning("slack: request body refused (400): not text (%s)", type(exc).__name__)
            return web.json_response({"error": "malformed body"}, status=400)
        except shapes.Malformed as exc:
            request[REQUEST_KIND] = "malformed"
            log.warning("slack: request body refused (400): %s", exc)
            return web.json_response({"error": "malformed body"}, status=400)
        verdict = shapes.inspect(body)
        request[REQUEST_KIND] = shapes.metric_kind(verdict.kind)
        if verdict.problem is not None:
            log.warning("slack: malformed %s refused (400): %s", verdict.kind, verdict.problem)
            return web.json_response({"error": "malformed request"}, status=400)
        if verdict.ignored is not None:
            log.info("slack: %s acknowledged, nothing to do: %s", verdict.kind, verdict.ignored)
            if verdict.answer is not None:
                return web.json_response(verdict.answer)
            return web.Response(status=200)
        if verdict.kind == "command":
            interaction = _from_memory(body, same_bytes=charset is None or text.encode() == raw)
            if interaction is not None:
                return await self._answer_from_memory(interaction, body)
        bolt_request = CheckedRequest(
            raw=text, body=body, query=request.query_string, headers=headers
        )
        bolt_response = await self.app.async_dispatch(bolt_request)
        return await to_aiohttp_response(bolt_response)

    def _signed(self, raw: bytes, headers: Any) -> bool:
        """Slack's v0 signature over the raw bytes, at most 5 minutes old (platform-facts §1).

        Checked here on bytes (slack_sdk's verifier decodes them first and raises on a body
        that is not UTF-8, or on a timestamp that is not a number).
        """
        timestamp = headers.get("X-Slack-Request-Timestamp", "")
        signature = headers.get("X-Slack-Signature", "")
        # ASCII digits only, and few (isdigit() also takes '²', which int() refuses, and
        # int() refuses thousands of digits): anything else is no timestamp.
        if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
            return False
        if abs(time.time() - int(timestamp)) > SIGNATURE_MAX_AGE:
            return False
        base = b"v0:" + timestamp.encode() + b":" + raw
        expected = "v0=" + hmac.new(self._secret, base, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))

    async def _answer_from_memory(
        self, interaction: Interaction, body: dict[str, Any]
    ) -> web.Response:
        """`/ticket help` over HTTP: what Bolt's dispatch would answer, without it.

        Everything Bolt's dispatch does for such a request is done by then or does nothing
        for it: the signature was checked (the same check, on the same bytes: `_from_memory`)
        and the body's shape; the single workspace's authorization is a constant; the other
        middlewares concern events, SSL checks and functions. What is left is the listener
        (`_on_command`'s own steps) and Bolt's handling of a listener that fails (a 500)."""
        respond = AsyncRespond(
            response_url=body.get("response_url"), proxy=self.client.proxy, ssl=self.client.ssl
        )
        try:
            reply = await self._handle(interaction, instant=True)
            answered = await self._command_answer(reply, body, respond)
        except Exception as exc:
            await self._on_error(exc, body)
            answered = BoltResponse(status=500)
        return await to_aiohttp_response(answered)

    # -- listeners ---------------------------------------------------------------------------

    async def _on_command(
        self, ack: Any, body: dict[str, Any], respond: Any
    ) -> BoltResponse | None:
        interaction = _command(body)
        if is_instant(interaction):  # `help`: answered from memory, no deadline needed
            reply = await self._handle(interaction, instant=True)
        else:
            work = asyncio.ensure_future(self._handle(interaction))
            done, _ = await asyncio.wait({work}, timeout=ACK_WITHIN)
            if not done:
                # The core is still waiting (a slow or throttled directory): Slack gets its
                # answer in time, the person gets theirs through the command's response_url.
                await ack(text=WORKING, response_type="ephemeral")
                self._spawn(lambda: self._answer_command_later(work, body, respond))
                return None
            reply = work.result()
        return await self._command_answer(reply, body, respond)

    async def _command_answer(
        self, reply: Reply, body: dict[str, Any], respond: Any
    ) -> BoltResponse:
        """A command's answer as Bolt's `ack` builds it (Bolt sends a BoltResponse a listener
        returns as it is), and what follows it."""
        if reply.duplicate:
            return BoltResponse(status=200, body="")  # `await ack()`
        if reply.as_form and reply.card is not None:
            card, trigger = reply.card, body["trigger_id"]
            channel = str(body.get("channel_id") or "")
            # Rendering happens after the ack too: it is not needed to answer Slack.
            self._spawn(lambda: self._open_form(trigger, card, channel, respond, FORM_TOO_LATE))
            return BoltResponse(status=200, body="")
        kept = _static(reply)
        answered = kept.answers.get(reply.private) if kept is not None else None
        if answered is None:
            answered = (await AsyncAck()(**self._ack_message(reply))).body
            if kept is not None:  # a card built once: its answer is built once too
                kept.answers[reply.private] = answered
        self._after_answer(reply, body, respond)
        return BoltResponse(status=200, body=answered)

    def _after_answer(self, reply: Reply, body: dict[str, Any], respond: Any) -> None:
        """What follows an answer: the rest of it (a KB that answered late). A chart needs
        nothing here: its upload was queued in the outbox with the change (handlers.notify
        .share_file), and the worker draws and uploads it."""
        if reply.follow_up is not None:
            self._spawn(lambda: self._follow_up(reply, respond))

    async def _follow_up(self, reply: Reply, respond: Any) -> None:
        """The rest of an answer (e.g. KB articles that came late), through the command's
        response_url: seen by the same person, the same way (ephemeral stays ephemeral)."""
        assert reply.follow_up is not None
        later = await reply.follow_up()
        if later.card is not None or later.text:
            await respond(**self._ack_message(later))

    async def _open_form(
        self, trigger: str, card: Card, channel: str, respond: Any, too_late: str
    ) -> None:
        """Open the form a command or button asked for. Its trigger id is good for 3 s and
        once: when Slack refuses it (expired, already spent), the person is told through the
        response_url, only to them, instead of seeing nothing at all."""
        try:
            await self.client.views_open(trigger_id=trigger, view=form_view(card, channel))
        except SlackApiError as exc:
            log.info("slack: form not opened: %s", slack_error(exc.response))
            if not getattr(respond, "response_url", None):  # a button in a modal
                return
            await respond(**self._ack_message(Reply(text=too_late)), replace_original=False)

    async def _answer_command_later(
        self, work: asyncio.Future[Reply], body: dict[str, Any], respond: Any
    ) -> None:
        reply = await work
        if reply.duplicate:
            return
        if reply.as_form and reply.card is not None:
            try:
                channel = str(body.get("channel_id") or "")
                await self.client.views_open(
                    trigger_id=body["trigger_id"], view=form_view(reply.card, channel)
                )
                return
            except SlackApiError as exc:  # the trigger is only good for 3 s
                log.info("slack: late form not opened: %s", exc.response.get("error"))
                reply = Reply(text=FORM_TOO_LATE)
        await respond(**self._ack_message(reply))
        self._after_answer(reply, body, respond)

    async def _on_view_submission(self, ack: Any, body: dict[str, Any]) -> None:
        # shapes.inspect let only the bot's own forms through, with their context object.
        view = body["view"]
        context = json.loads(view["private_metadata"])
        values = blockkit.view_values((view.get("state") or {}).get("values") or {})
        interaction = Interaction(
            actor=_actor(body),
            conversation=Conversation("slack", str(context.get("channel") or "")),
            action=ActionId(view["callback_id"]),
            data={**values, **context},
            delivery_id=delivery_id(body),
            can_reply=False,
        )
        work = asyncio.ensure_future(self._handle(interaction))
        done, _ = await asyncio.wait({work}, timeout=ACK_WITHIN)
        if not done:
            # Slack closes the modal; what the core says in the end reaches the person below.
            await ack()
            self._spawn(lambda: self._answer_submission_later(work, interaction))
            return
        reply = work.result()
        if reply.field_errors:
            # Slack shows these errors as plain text: typed parts need no escaping there.
            errors = {
                ident: blockkit.slack_plain(problem)
                for ident, problem in reply.field_errors.items()
            }
            await ack(response_action="errors", errors=errors)
        elif reply.form_error and (first := _first_input(view)):
            # Nothing was saved: keep the form and what they typed, say why on top.
            errors = {first: blockkit.slack_words(reply.form_error)}
            await ack(response_action="errors", errors=errors)
        elif reply.as_form and reply.card is not None:
            view = form_view(reply.card, interaction.conversation.id)
            await ack(response_action="update", view=view)
        elif reply.text and not reply.card and not reply.duplicate:
            # A refusal or problem: keep the person in the modal and say why.
            notice = Card(title="Helpdesk", body=[Text(reply.text)], fallback=plain(reply.text))
            await ack(response_action="update", view=blockkit.render_modal(notice))
        else:
            await ack()

    async def _answer_submission_later(
        self, work: asyncio.Future[Reply], interaction: Interaction
    ) -> None:
        """A form answered after its modal closed: a refusal or problem goes to the person
        (ephemeral where the form came from, else a DM); success speaks through the outbox."""
        reply = await work
        problem = " ".join(map(plain, [reply.text, *reply.field_errors.values()])).strip()
        if reply.duplicate or not problem or (reply.card and not reply.field_errors):
            return
        user, channel = interaction.actor.id, interaction.conversation.id
        # Rendered as a card: what they typed (quoted in an error) must not ping or link, nor
        # turn bold or code (a message's own text is mrkdwn, with no escape for `*`).
        parts: list[Inline] = []
        for told in [reply.text, *reply.field_errors.values()]:
            if plain(told):
                parts += [" ", told] if parts else [told]
        said = Rich(*parts, " (The form was closed: open it again to retry.)")
        card = Card(title="", body=[Text(said)], fallback=said.plain())
        message = blockkit.render_message(card)
        if channel:
            try:
                await self.client.chat_postEphemeral(channel=channel, user=user, **message)
                return
            except SlackApiError as exc:
                log.info("slack: ephemeral answer not posted: %s", slack_error(exc.response))
        opened = await self.client.conversations_open(users=user)
        await self.client.chat_postMessage(channel=opened["channel"]["id"], **message)

    async def _on_block_action(self, ack: Any, body: dict[str, Any], respond: Any) -> None:
        await ack()
        action = body["actions"][0]
        try:
            value = json.loads(action.get("value") or "{}")
        except ValueError:
            value = {}
        channel = (body.get("channel") or {}).get("id") or ""
        message = body.get("message") or {}
        interaction = Interaction(
            actor=_actor(body),
            conversation=Conversation(
                "slack", channel, thread=message.get("thread_ts") or message.get("ts")
            ),
            action=ActionId(blockkit.action_from_id(action["action_id"])),
            data=value if isinstance(value, dict) else {},
            delivery_id=delivery_id(body),
            # Answered through response_url whatever became of the ack: a retry (the ack did
            # not count) may come after the answer went out.
            answer_apart=True,
        )
        # Slack has its (empty) ack only once this returns (process_before_response): past
        # ACK_WITHIN (the directory is slow) the answer follows in the background.
        work = asyncio.ensure_future(self._handle(interaction))
        done, _ = await asyncio.wait({work}, timeout=ACK_WITHIN)
        if not done:
            self._spawn(lambda: self._answer_action_later(work, interaction, body, respond))
            return
        self._answer_action(work.result(), interaction, body, respond)

    def _answer_action(
        self, reply: Reply, interaction: Interaction, body: dict[str, Any], respond: Any
    ) -> None:
        """A button's answer: the form it opens, or a message to the one who pressed it (sent
        within its claim, when the core made one: recorded as given once it is out)."""
        if reply.duplicate:
            return
        answering = reply.answering or contextlib.nullcontext()
        if reply.as_form and reply.card is not None:
            card, channel, trigger = reply.card, interaction.conversation.id, body["trigger_id"]
            self._spawn(
                lambda: _within(
                    answering,
                    lambda: self._open_form(trigger, card, channel, respond, BUTTON_FORM_TOO_LATE),
                )
            )
            return
        if not getattr(respond, "response_url", None):
            # A button in a modal: Slack gives no response_url there (Bolt's `respond` is
            # never None; called without a URL it raises).
            log.info("slack: no response_url to answer %s with", interaction.action)
        elif reply.card is not None or reply.text:
            payload = self._ack_message(reply)
            payload["replace_original"] = False
            self._spawn(lambda: _within(answering, lambda: respond(**payload)))
            return
        if reply.answering is not None:  # nothing to send: given as it is
            self._spawn(lambda: _within(answering, None))

    async def _answer_action_later(
        self,
        work: asyncio.Future[Reply],
        interaction: Interaction,
        body: dict[str, Any],
        respond: Any,
    ) -> None:
        reply = await work
        if reply.as_form and reply.card is not None and not reply.duplicate:
            try:
                view = form_view(reply.card, interaction.conversation.id)
                await self.client.views_open(trigger_id=body["trigger_id"], view=view)
                return
            except SlackApiError as exc:  # the trigger is only good for 3 s
                log.info("slack: late form not opened: %s", exc.response.get("error"))
                reply = Reply(text=BUTTON_FORM_TOO_LATE)
        self._answer_action(reply, interaction, body, respond)

    async def _on_event(self, body: dict[str, Any]) -> None:
        """Events the bot does not act on are acknowledged and dropped."""

    async def _on_message(self, body: dict[str, Any]) -> None:
        """A message in a channel: only a person's reply in a thread can concern a ticket (the
        core finds out, cheaply, whether the thread is a ticket's). Slack gets its 200 within
        ACK_WITHIN whatever happens; work still running then finishes in the background."""
        event = body["event"]
        thread, user, channel = event.get("thread_ts"), event.get("user"), event.get("channel")
        if not thread or not user or not channel or event.get("bot_id"):
            return
        if thread == event.get("ts"):  # the thread's first message, not a reply
            return
        work = asyncio.ensure_future(self._thread_message(body, event))
        self._tasks.add(work)
        work.add_done_callback(self._tasks.discard)
        await asyncio.wait({work}, timeout=ACK_WITHIN)

    async def _thread_message(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        try:
            files = list(await asyncio.gather(*(self._file(f) for f in event.get("files") or [])))
        except Exception:
            log.exception("slack: reading the files of event %s failed", body.get("event_id"))
            return
        interaction = Interaction(
            actor=Actor("slack", str(event["user"])),
            conversation=Conversation("slack", str(event["channel"]), thread=event["thread_ts"]),
            event=TICKET_MESSAGE,
            data={
                "thread": str(event["thread_ts"]),
                "text": unescape(str(event.get("text") or "")),
                "files": files,
            },
            delivery_id=delivery_id(body),
            can_reply=False,
        )
        reply = await self._handle(interaction)
        if reply.text and not reply.duplicate:
            log.info("slack: thread message answered (not shown): %s", plain(reply.text)[:200])

    async def _message_marker(self, channel: str, ts: str) -> dict[str, Any] | None:
        """The outbox marker (`event_payload` of the bot's metadata) on message `ts` of
        `channel`, read with conversations.history; None when it has none or cannot be read."""
        try:
            page = await self.client.conversations_history(
                channel=channel,
                latest=ts,
                oldest=ts,
                inclusive=True,
                limit=1,
                include_all_metadata=True,
            )
        except SlackApiError as exc:
            log.warning(
                "slack: reading a thread's first message failed (%s)", slack_error(exc.response)
            )
            return None
        except (ClientError, TimeoutError) as exc:
            log.warning("slack: reading a thread's first message failed (%s)", type(exc).__name__)
            return None
        for found in page.get("messages") or []:
            meta = found.get("metadata") or {}
            payload = meta.get("event_payload") if isinstance(meta, dict) else None
            if found.get("ts") == ts and meta.get("event_type") == METADATA_TYPE:
                return payload if isinstance(payload, dict) else None
        return None

    async def _file(self, shared: dict[str, Any]) -> dict[str, Any]:
        """A shared file as the core takes it; read with files.info when Slack sent only its
        id (`file_access: check_file_info`) or no link. Never downloaded."""
        if shared.get("file_access") == "check_file_info" or not shared.get("permalink"):
            try:
                found = await self._file_info(str(shared["id"]))
                shared = {**shared, **(found.get("file") or {})}
            except (SlackApiError, TimeoutError) as exc:
                error = slack_error(exc.response) if isinstance(exc, SlackApiError) else "timeout"
                log.warning("slack: files.info for %s failed (%s)", shared.get("id"), error)
        return {
            "id": shared.get("id"),
            "name": shared.get("name") or shared.get("title"),
            "url": shared.get("permalink") or "",
            "content_type": shared.get("mimetype") or "",
            "size": shared.get("size"),
        }

    async def _file_info(self, file_id: str) -> Any:
        """files.info within FILE_INFO_WAIT, or until shutdown (TimeoutError): the event was
        acked, so the message is recorded with the file by its id rather than lost with the
        read when shutdown's few seconds for Slack's work run out."""
        call = asyncio.ensure_future(self.client.files_info(file=file_id))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait(
                {call, stopping}, timeout=FILE_INFO_WAIT, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopping.cancel()
            if not call.done():
                call.cancel()
        if not call.done():
            raise TimeoutError
        return call.result()

    async def _handle(self, interaction: Interaction, *, instant: bool = False) -> Reply:
        """The core's answer; an unexpected failure is logged and shown with its reference.

        `instant`: the route is answered from memory (dispatch.is_instant), so the directory
        is never asked and needs no deadline."""
        try:
            if instant:
                return await answer(self.deps, interaction)
            with person_waiting(DIRECTORY_WAIT) as turn:
                return await answer(
                    self.deps, interaction, keep_waiting=lambda: turn.waiting_for_directory
                )
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
        kept = _static(reply)
        if kept is not None:
            message = dict(kept.message)
            message["response_type"] = "ephemeral" if reply.private else "in_channel"
            return message
        # The bot's words as mrkdwn, what people typed shown literally (cards.slack).
        text = Text(reply.text)
        card = reply.card or Card(title="", body=[text], fallback=plain(reply.text))
        if reply.card and reply.text:
            card = Card(
                title=card.title,
                body=[text, *card.body],
                buttons=card.buttons,
                fallback=card.fallback or plain(reply.text),
            )
        message = blockkit.render_message(card)
        message["response_type"] = "ephemeral" if reply.private else "in_channel"
        return message

    def _spawn(self, work: Callable[[], Awaitable[Any]]) -> None:
        async def run() -> None:
            try:
                await work()
            except SlackApiError as exc:
                log.warning("slack call failed after ack: %s", slack_error(exc.response))
            except (ClientError, TimeoutError) as exc:
                # Slack's Web API out of reach (a firewall, a proxy, an outage): one line naming
                # where (aiohttp's message has the host and port), not a traceback per request.
                log.warning("slack call failed after ack: %s: %s", type(exc).__name__, exc)
            except Exception:
                log.exception("slack call failed after ack")

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start_socket_mode(self, app_token: str, *, answered: Answered | None = None) -> None:
        """Connect over Socket Mode (no public URL needed).

        A token Slack refuses stops start-up (ConfigError naming SLACK_APP_TOKEN): no retry
        can fix it. Any other failure (Slack unreachable, rate limited, a handshake refused)
        does not hold start-up: the rest of the bot serves while it keeps trying."""
        from bot.slack.socket_mode import SocketModeHandler, TokenRefused, describe

        socket = self._socket = SocketModeHandler(
            self.app, app_token, web_client=self.client, answered=answered
        )
        try:
            await asyncio.wait_for(socket.client.connect_once(), FIRST_CONNECT_WAIT)
        except TokenRefused as exc:
            await socket.close_async()
            raise ConfigError(
                f"SLACK_APP_TOKEN: Slack refused it ({exc.error}); it must be this app's "
                "app-level token (xapp-...) with the connections:write scope"
            ) from None
        except Exception as exc:
            waiting = socket.client.rate_limited_for()
            log.warning(
                "Slack Socket Mode could not connect yet (%s); the bot serves meanwhile and "
                "keeps trying",
                f"Slack rate limits apps.connections.open: again in {waiting:.0f} s"
                if isinstance(exc, TimeoutError) and waiting
                else describe(exc),
            )
            socket.client.failed(exc, logged=True)
            self._connecting = asyncio.get_running_loop().create_task(socket.client.connect())
            return
        log.info("Slack Socket Mode connected")

    async def stop_socket_mode(self) -> None:
        connecting = getattr(self, "_connecting", None)
        if connecting is not None and not connecting.done():
            connecting.cancel()
            await asyncio.gather(connecting, return_exceptions=True)
        socket = getattr(self, "_socket", None)
        if socket is not None:
            # Envelopes in hand are answered and acknowledged first (Slack waits 3 s).
            await socket.stop(STOP_WAIT)

    async def drain(self, *, stopping: bool = False) -> None:
        """Wait for post-ack calls still running (shutdown, tests). `stopping`: files still
        being read are not waited for (see _file_info)."""
        if stopping:
            self._stopping.set()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


@dataclass
class _Kept:
    """A card built once (help), its Block Kit, and Bolt's JSON answer to a command with it
    (by whether it is private: the response_type differs)."""

    card: Card
    message: dict[str, Any]
    answers: dict[bool, str] = field(default_factory=dict)


# By the card's identity; each entry holds its card, so the id cannot be taken by another
# object while the entry lives.
_STATIC: dict[int, _Kept] = {}
_STATIC_MAX = 16


async def _within(
    answering: contextlib.AbstractAsyncContextManager[Any],
    send: Callable[[], Awaitable[Any]] | None,
) -> Any:
    """`send()` within an answer's claim (handlers.dispatch.Answering): recorded as given once
    it is out, not when it failed."""
    async with answering:
        return await send() if send is not None else None


def _static(reply: Reply) -> _Kept | None:
    """What is kept of a reply that is only a card built once; None for any other reply."""
    card = reply.card
    if not reply.static or card is None or reply.text:
        return None
    kept = _STATIC.get(id(card))
    if kept is None:
        if len(_STATIC) >= _STATIC_MAX:
            _STATIC.clear()
        kept = _STATIC[id(card)] = _Kept(card, blockkit.render_message(card))
    return kept


def _command(body: dict[str, Any]) -> Interaction:
    return Interaction(
        actor=Actor("slack", body["user_id"], body.get("user_name") or ""),
        conversation=Conversation("slack", body["channel_id"]),
        text=unescape(body.get("text") or ""),
        delivery_id=delivery_id(body),
        response_url=body.get("response_url") or None,
    )


def _from_memory(body: dict[str, Any], *, same_bytes: bool) -> Interaction | None:
    """The command a checked body holds, when the front door answers it itself: its route is
    answered from memory (`help`) and Bolt would route it to `_on_command` after verifying
    what `_signed` verified. None leaves the body to Bolt's dispatch.

    `same_bytes`: the decoded text encodes (as UTF-8, which Bolt's verifier signs) to the raw
    bytes `_signed` checked; with another charset Bolt can refuse what `_signed` passed.
    Bolt answers an SSL check before any listener, and routes only commands matching
    COMMAND_PATTERN (`shapes` takes any `/x`)."""
    if not same_bytes or body.get("ssl_check") == "1":
        return None
    if not COMMAND_PATTERN.search(body["command"]):
        return None
    interaction = _command(body)
    return interaction if is_instant(interaction) else None


def form_view(card: Card, channel: str) -> dict[str, Any]:
    """The modal of a form opened from `channel`. Slack's view_submission names no channel,
    so the form's context carries it (unless the form names its own): what the submission
    changes is audited where it was made, and a late refusal is said there."""
    form = card.form
    if form is not None and channel and "channel" not in form.context:
        context = {**form.context, "channel": channel}
        card = dataclasses.replace(card, form=dataclasses.replace(form, context=context))
    return blockkit.render_modal(card)


def _actor(body: dict[str, Any]) -> Actor:
    user = body["user"]
    return Actor("slack", user["id"], user.get("name") or user.get("username") or "")


def _first_input(view: dict[str, Any]) -> str | None:
    """The block id of the first input of a submitted view (where a form-wide problem goes)."""
    for block in view.get("blocks") or []:
        if isinstance(block, dict) and block.get("type") == "input" and block.get("block_id"):
            return str(block["block_id"])
    return None
