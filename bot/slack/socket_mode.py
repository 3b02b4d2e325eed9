"""Slack Socket Mode: every envelope is acknowledged, whatever Bolt made of it (SPEC).

Bolt's own handler only acknowledges envelopes its app answered with 200: an event no
listener wants (a plain channel message) is answered 404 "unhandled request" and never
acknowledged, so Slack redelivers it and eventually disables the app's event subscriptions.
Here an envelope is acknowledged with Bolt's answer when there is one, else empty, also when
handling fails. Its payload is checked like an HTTP body first (`shapes.inspect`): a
malformed one, or a kind the bot has no use for, never reaches Bolt. Pings every 5 s: a
connection lost without a close frame is noticed when a ping's pong is 2.5 s late (aiohttp's
heartbeat; slack_sdk's own check gives up after 20 s), said in one warning, and reopened with
a fresh `apps.connections.open`.

Connecting (`SocketClient`): each attempt uses a WebSocket URL once, and each of its steps
(apps.connections.open, the handshake) gets STEP_WAIT seconds. The URL is temporary (it
carries a one-time ticket), and slack_sdk retried a failed connection with the same URL every
5 s for ever, never asking `apps.connections.open` again. Failures are logged as one line at
most every 30 s per cause, with no URL (its ticket) and no traceback. At start-up
(`SlackFront.start_socket_mode`) a token Slack refuses stops the bot; any other failure leaves
it serving while it keeps trying.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.adapter.socket_mode.async_internals import run_async_bolt_app
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient
from yarl import URL

from bot.logs import Every
from bot.notifiers import retry_after_seconds
from bot.slack import shapes
from storage.outbox import retry_wait

log = logging.getLogger(__name__)
# Told of each envelope acknowledged: platform, kind, the status HTTP would have answered,
# seconds (Metrics.answered: /metrics counts Socket Mode envelopes like HTTP requests).
Answered = Callable[[str, str, int, float], None]
PING_INTERVAL = 5.0
# apps.connections.open answers that no retry changes: the app-level token is wrong, revoked,
# lacks connections:write, or is not an app-level token at all (a bot token, xoxb-).
REFUSALS = frozenset(
    {
        "not_authed",
        "invalid_auth",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "not_allowed_token_type",
        "missing_scope",
        "no_permission",
        "access_denied",
        "forbidden_team",
    }
)
# Wait asked for by a 429 without Retry-After (the method is Tier 1).
RATE_LIMIT_WAIT = 30.0
# Longest wait between attempts to connect while they keep failing.
MAX_BACKOFF = 60.0
# How long one step of an attempt to connect may take: apps.connections.open's answer, then
# the WebSocket handshake. Unbounded, a step nobody answers (a pooled keep-alive connection
# that died with the link, an edge or proxy that takes the TCP connection and then says
# nothing) held the reconnect for the Web API client's timeout or aiohttp's 5 minutes, nothing
# from Slack arriving meanwhile: past SPEC's 15 s after a `disconnect` and 30 s after a
# connection lost without a close frame. Slack answers both in well under a second.
STEP_WAIT = 6.0


class TokenRefused(Exception):
    """Slack refused SLACK_APP_TOKEN (`error` is its answer)."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class NoUrl(Exception):
    """An attempt to connect failed in a way that may pass: apps.connections.open answered
    an error status, no URL or nothing in time, or the URL's handshake got no answer."""


def describe(exc: BaseException) -> str:
    """A connection failure in a few words, never with the URL (its ticket lets anyone in)."""
    if isinstance(exc, TokenRefused):
        return f"Slack refused SLACK_APP_TOKEN ({exc.error})"
    if isinstance(exc, aiohttp.ClientResponseError):
        host = urlsplit(str(exc.request_info.real_url)).hostname or "?"
        return f"{host} answered HTTP {exc.status} to the WebSocket handshake"
    if isinstance(exc, aiohttp.ServerTimeoutError) and str(exc):
        return str(exc)  # e.g. "No PONG received after 2.5 seconds"
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class SocketClient(SocketModeClient):  # type: ignore[misc]
    """slack_sdk's aiohttp Socket Mode client, connecting with a fresh URL at each attempt."""

    def __init__(self, app_token: str, *, web_client: AsyncWebClient, logger: Any) -> None:
        # The same client, without slack_sdk's 429 retry: it would sleep out a Retry-After
        # inside the call, where start-up's wait cuts it short and nothing remembers it.
        own = AsyncWebClient(
            token=web_client.token,
            base_url=web_client.base_url,
            timeout=web_client.timeout,
            ssl=web_client.ssl,
            proxy=web_client.proxy,
            session=web_client.session,
            headers=web_client.headers,
            retry_handlers=[
                h
                for h in web_client.retry_handlers
                if not isinstance(h, AsyncRateLimitErrorRetryHandler)
            ],
        )
        super().__init__(
            app_token=app_token,
            logger=logger,
            web_client=own,
            ping_interval=PING_INTERVAL,
        )
        self._every = Every(30.0)
        self.on_error_listeners.append(self._connection_failed)
        self._failing = False
        self._handling: set[asyncio.Future[None]] = set()
        self._retry_at = 0.0  # time.monotonic() before which apps.connections.open waits
        # Held through one attempt to connect. A `disconnect` reconnects even when another
        # reconnect holds slack_sdk's connect_operation_lock past 5 s: two attempts side by
        # side each closed the same old connection and opened their own, and the first one's
        # stayed open with nobody reading it (what Slack sent there was never acknowledged).
        # Taking turns, each attempt closes the connection the one before it opened.
        self._attempt = asyncio.Lock()
        # Set while the bot stops: no new connection, no new envelope taken.
        self.stopping = False

    def rate_limited_for(self) -> float:
        """Seconds still to wait before apps.connections.open may be called (its last 429)."""
        return max(0.0, self._retry_at - time.monotonic())

    async def issue_new_wss_url(self) -> str:
        """A new URL from apps.connections.open; a 429 is waited out (Retry-After), a refused
        token raises TokenRefused, other failures NoUrl (or the network's own error).

        The wait is remembered: an attempt cut short while waiting (start-up gives up on the
        first connection after FIRST_CONNECT_WAIT) does not let the next one call earlier."""
        while True:
            if wait := self.rate_limited_for():
                await asyncio.sleep(wait)
            try:
                response = await asyncio.wait_for(
                    self.web_client.apps_connections_open(app_token=self.app_token), STEP_WAIT
                )
            except TimeoutError:
                raise NoUrl(
                    f"apps.connections.open did not answer within {STEP_WAIT:.0f} s"
                ) from None
            except SlackApiError as exc:
                error = str(exc.response.get("error") or "")
                if exc.response.status_code == 429 or error == "ratelimited":
                    wait = _seconds(exc.response.headers.get("Retry-After"), RATE_LIMIT_WAIT)
                    self._retry_at = time.monotonic() + wait
                    log.info("slack: apps.connections.open is rate limited; again in %.0f s", wait)
                    continue
                if error in REFUSALS:
                    raise TokenRefused(error) from None
                status = exc.response.status_code
                answer = f"apps.connections.open answered {error or '?'} (HTTP {status})"
                raise NoUrl(answer) from None
            url = response.get("url")
            if not isinstance(url, str) or not url:
                raise NoUrl("apps.connections.open answered without a url")
            return url

    async def _connection_failed(self, message: aiohttp.WSMessage) -> None:
        """aiohttp gave up the connection (a message over its 4 MiB limit, no pong to its
        heartbeat in time, a broken read): one warning naming why, at most every 30 s per
        cause; the monitor reconnects. slack_sdk passes these only to listeners, and its own
        "Reconnecting..." is below the level its logger is held to, so nothing said it."""
        error = message.data if isinstance(message.data, BaseException) else None
        why = describe(error) if error is not None else "no reason given"
        held = self._every.due(f"lost:{type(error).__name__}")
        if held is not None:
            more = f" ({held} more since)" if held else ""
            log.warning(
                "slack: Socket Mode connection failed (%s); reconnecting%s", why[:200], more
            )

    async def run_message_listeners(self, message: dict[str, Any], raw_message: str) -> None:
        """slack_sdk's (a `disconnect` reconnects at once), with the reason logged: Slack
        rotating the connection is routine; `link_disabled` means Socket Mode was turned off
        in the app's settings, and nothing arrives until it is turned on again."""
        if isinstance(message, dict) and message.get("type") == "disconnect":
            reason = message.get("reason")
            if reason == "link_disabled":
                log.error(
                    "slack: Slack turned Socket Mode off for this app (disconnect: "
                    "link_disabled): nothing from Slack arrives until it is turned on again "
                    "(the app's settings -> Socket Mode); the bot keeps trying to connect"
                )
            else:
                log.info("slack: Slack asks for a new connection (disconnect: %.40r)", reason)
        await super().run_message_listeners(message, raw_message)

    async def connect_to_new_endpoint(self, force: bool = False) -> None:
        """slack_sdk's, except that the URL is asked for by `connect`, attempt by attempt."""
        if self.stopping:
            return
        acquired = False
        try:
            acquired = await asyncio.wait_for(self.connect_operation_lock.acquire(), timeout=5)
        except TimeoutError:
            pass
        try:
            if force or (acquired and not await self.is_connected()):
                await self.connect()
        finally:
            if acquired:
                self.connect_operation_lock.release()

    async def connect(self) -> None:
        """Connect, trying again until it works or the client is closed: after PING_INTERVAL,
        then twice as long after each failure in a row, up to MAX_BACKOFF (a Slack outage or
        a revoked token is not asked about 12 times a minute, by every replica at once)."""
        failures = 0
        while not self.closed:
            try:
                await self.connect_once()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.closed:
                    return
                failures += 1
                wait = backoff(failures, self.ping_interval)
                self.failed(exc, wait=wait)
                await asyncio.sleep(wait)

    async def connect_once(self) -> None:
        """One attempt: the old connection closed, a URL used once, a new connection with its
        own monitor (pings) and receiver. One attempt at a time (`_attempt`)."""
        async with self._attempt:
            await self._connect_once()

    async def _connect_once(self) -> None:
        self.auto_reconnect_enabled = False
        old = self.current_session
        if old is not None and not old.closed:
            try:
                await old.close()
            except Exception as exc:  # a broken connection may fail to close
                log.info("slack: the old Socket Mode connection did not close: %s", describe(exc))
        if self.aiohttp_client_session.closed:
            self.aiohttp_client_session = aiohttp.ClientSession()
        url, self.wss_uri = self.wss_uri or await self.issue_new_wss_url(), None
        try:
            session = await asyncio.wait_for(
                self.aiohttp_client_session.ws_connect(
                    # As Slack gave it: parsed as-is, yarl would decode %2F and the like in
                    # the ticket.
                    URL(url, encoded=True),
                    autoping=False,
                    heartbeat=self.ping_interval,
                    proxy=self.proxy,
                    ssl=self.web_client.ssl if self.web_client.ssl is not None else True,
                ),
                STEP_WAIT,
            )
        except TimeoutError:
            raise NoUrl(
                f"the WebSocket handshake with {_bare(url)} got no answer within {STEP_WAIT:.0f} s"
            ) from None
        except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError, ValueError) as exc:
            # aiohttp names the whole URL, ticket included.
            raise NoUrl(
                f"apps.connections.open answered a URL that cannot be used ({_bare(url)}: "
                f"{type(exc).__name__})"
            ) from None
        self.current_session = session
        self.auto_reconnect_enabled = self.default_auto_reconnect_enabled
        self.stale = False
        self.last_ping_pong_time = None
        await session.ping(f"sdk-ping-pong:{time.time()}".encode())
        if self.current_session_monitor is not None:
            self.current_session_monitor.cancel()
        self.current_session_monitor = asyncio.ensure_future(self.monitor_current_session())
        if self.message_receiver is not None:
            self.message_receiver.cancel()
        self.message_receiver = asyncio.ensure_future(self.receive_messages())
        if self._failing:
            self._failing = False
            log.info("slack: Socket Mode connected again")

    async def process_message(self) -> None:
        """slack_sdk's, except that a text frame that is no JSON object is one warning: not
        JSON was a traceback from slack_sdk's json.loads, and JSON nested too deep
        (RecursionError) still was one here; a frame not starting with `{` (JSON with
        leading whitespace included) was dropped without a word. Empty frames, which Slack
        sends now and then, are skipped quietly."""
        raw = await self.message_queue.get()
        if raw is None or not raw.strip():
            return
        try:
            message = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            why = "nested too deep" if isinstance(exc, RecursionError) else str(exc)
            log.warning(
                "slack: Socket Mode message dropped: not JSON (%d characters; %s)", len(raw), why
            )
            return
        if not isinstance(message, dict):
            log.warning(
                "slack: Socket Mode message dropped: JSON %s, not an object (%d characters)",
                shapes.type_name(message),
                len(raw),
            )
            return
        # As slack_sdk does: each message is handled on its own task (a slow command does
        # not hold up the envelopes behind it); kept until done, so it is not collected.
        task = asyncio.ensure_future(self.run_message_listeners(message, raw))
        self._handling.add(task)
        task.add_done_callback(self._handling.discard)

    def failed(self, exc: BaseException, *, logged: bool = False, wait: float = 0.0) -> None:
        """One line per cause at most every 30 s (a revoked token or an outage repeats);
        `logged`: the caller has said it; `wait`: until the next attempt. A token Slack
        refuses is an error: nothing from Slack arrives until it is replaced."""
        self._failing = True
        cause = type(exc).__name__
        held = self._every.due(cause)
        if held is None or logged:
            return
        more = f" ({held} more since)" if held else ""
        log.log(
            logging.ERROR if isinstance(exc, TokenRefused) else logging.WARNING,
            "slack: Socket Mode cannot connect: %s; trying again in %.0f s%s",
            describe(exc),
            wait,
            more,
        )


def backoff(failures: int, first: float) -> float:
    """Seconds before the next attempt after `failures` in a row: `first`, doubled each time
    up to MAX_BACKOFF, give or take a fifth (replicas do not all call at the same moment)."""
    return min(first * 2 ** min(failures - 1, 16), MAX_BACKOFF) * random.uniform(0.8, 1.2)


def _seconds(value: str | None, default: float) -> float:
    """A Retry-After as the wait before apps.connections.open: seconds or an HTTP date (a
    proxy's), at least 1 s, at most an hour as every Retry-After here; `default` when absent
    or unusable. `float()` alone read `1e999` as an infinite wait (the bot never connected
    again) and an HTTP date as unusable (30 s, however near the date)."""
    seconds = retry_after_seconds(value)
    return default if seconds is None else max(1.0, retry_wait(seconds))


def _bare(url: str) -> str:
    """A URL without its query (the ticket) and fragment, for a log line."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.scheme else "no scheme"
    except ValueError:
        return "not a URL"


def _id_problem(envelope_id: Any) -> str:
    if envelope_id is None or envelope_id == "":
        return "it has no envelope_id"
    if not isinstance(envelope_id, str):
        return f"its envelope_id is a {shapes.type_name(envelope_id)}, not a string"
    return f"its envelope_id is longer than {shapes.MAX_ID} characters"


def _envelope_problem(message: dict[str, Any]) -> str | None:
    """What is wrong with an envelope that has its id, beyond its payload (`shapes.inspect`)."""
    if "type" not in message:
        return "it has no type"
    if "payload" not in message:
        return "it has no payload"
    payload = message["payload"]
    if not isinstance(payload, dict | str):
        return f"its payload is a {shapes.type_name(payload)}"
    attempt = message.get("retry_attempt")
    if attempt is not None and (
        not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 0
    ):
        return "its retry_attempt is not a count"
    reason = message.get("retry_reason")
    if reason is not None and not (isinstance(reason, str) and len(reason) <= shapes.MAX_ID):
        return "its retry_reason is not a short string"
    return None


def _payload(status: int, content_type: str, body: str) -> dict[str, Any] | None:
    """What goes back with the ack: Bolt's JSON answer (a slash command's reply, a modal's
    `response_action`), or nothing."""
    if status != 200 or not body:
        return None
    if content_type.startswith("application/json"):
        try:
            data = json.loads(body)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None
    return {"text": body}


async def _ack(client: AsyncBaseSocketModeClient, response: SocketModeResponse) -> None:
    """Send an envelope's ack. A connection lost meanwhile (reset with no close frame) is
    routine: one line, and Slack delivers the envelope again; slack_sdk's own handling of the
    failure was an ERROR with a traceback ("Cannot write to closing transport")."""
    try:
        await client.send_socket_mode_response(response)
    except (ConnectionError, aiohttp.ClientError) as exc:
        log.warning(
            "slack: socket envelope %s not acknowledged: the connection was lost (%s); Slack "
            "delivers it again",
            response.envelope_id,
            describe(exc),
        )


class SocketModeHandler(AsyncSocketModeHandler):  # type: ignore[misc]
    """Bolt's aiohttp Socket Mode handler, acknowledging every envelope."""

    def __init__(
        self,
        app: AsyncApp,
        app_token: str,
        *,
        web_client: AsyncWebClient,
        answered: Answered | None = None,
    ) -> None:
        # What AsyncSocketModeHandler.__init__ does, with the client above.
        self._answered = answered
        self.app = app
        self.app_token = app_token
        self.client: SocketClient = SocketClient(
            app_token, web_client=web_client, logger=app.logger
        )
        self.client.socket_mode_request_listeners.append(self.handle)
        self.client.message_listeners.append(self._unreadable)
        self._in_hand: set[asyncio.Task[Any]] = set()

    async def stop(self, wait: float) -> None:
        """Close cleanly (SIGTERM): take no new envelope (Slack delivers it again, to another
        connection or once the bot is back), give the ones in hand up to `wait` seconds to be
        answered and acknowledged on the connection they came by, then close it.

        Closing at once lost their acks (a traceback each: "Cannot write to closing
        transport"), and a slash command's person saw Slack's timeout error."""
        self.client.stopping = True
        self.client.auto_reconnect_enabled = False
        self.client.default_auto_reconnect_enabled = False
        if self._in_hand:
            await asyncio.wait(set(self._in_hand), timeout=wait)
        await self.close_async()

    async def _unreadable(
        self, client: AsyncBaseSocketModeClient, message: dict[str, Any], raw: str | None
    ) -> None:
        """The envelope itself checked, before slack_sdk hands it to `handle`.

        Without a usable `envelope_id` (missing, null, empty, not a string, oversized) it
        cannot be acknowledged: it is dropped, never run (slack_sdk ran one whose id was null
        and sent an ack Slack could not match). Otherwise what slack_sdk would not hand to
        `handle` (no `type` or no `payload`: dropped unacknowledged; a payload it cannot read:
        it fails) or could not pass on (`retry_attempt`/`retry_reason` of the wrong type: Bolt
        fails building its retry headers) is acknowledged here and not handled. The payload is
        dropped from such a message, so that slack_sdk does not go on with it."""
        envelope_id = message.get("envelope_id")
        if envelope_id is None and "payload" not in message:
            return  # hello, disconnect: nothing to acknowledge
        if not (isinstance(envelope_id, str) and 0 < len(envelope_id) <= shapes.MAX_ID):
            log.warning(
                "slack: socket envelope (%.40r) dropped, not handled: %s, so it cannot be "
                "acknowledged",
                message.get("type"),
                _id_problem(envelope_id),
            )
            message.pop("payload", None)
            return
        problem = _envelope_problem(message)
        if problem is None:
            return
        log.warning(
            "slack: malformed socket envelope %s acknowledged, not handled: %s",
            envelope_id,
            problem,
        )
        message.pop("payload", None)
        started = time.perf_counter()
        await _ack(client, SocketModeResponse(envelope_id=envelope_id))
        self._count("malformed", 400, started)

    async def handle(self, client: AsyncBaseSocketModeClient, req: SocketModeRequest) -> None:
        if self.client.stopping:
            log.info(
                "slack: socket envelope %s (%s) not taken: the bot is stopping (Slack delivers "
                "it again)",
                req.envelope_id,
                req.type,
            )
            return
        task = asyncio.current_task()
        if task is not None:
            self._in_hand.add(task)
        try:
            await self._handle(client, req)
        finally:
            if task is not None:
                self._in_hand.discard(task)

    def _count(self, kind: str, status: int, started: float) -> None:
        if self._answered is not None:
            self._answered("slack", kind, status, time.perf_counter() - started)

    async def _handle(self, client: AsyncBaseSocketModeClient, req: SocketModeRequest) -> None:
        started = time.perf_counter()
        verdict = shapes.inspect(req.payload)
        kind = shapes.metric_kind(verdict.kind)
        if verdict.problem is not None or verdict.ignored is not None:
            if verdict.problem is not None:
                log.warning(
                    "slack: malformed socket envelope %s (%s) acknowledged, not handled: %s",
                    req.envelope_id,
                    verdict.kind,
                    verdict.problem,
                )
            else:
                log.info("slack: socket %s acknowledged: %s", verdict.kind, verdict.ignored)
            await _ack(
                client, SocketModeResponse(envelope_id=req.envelope_id, payload=verdict.answer)
            )
            self._count(kind, 400 if verdict.problem is not None else 200, started)
            return
        payload: dict[str, Any] | None = None
        status = 500
        try:
            response = await run_async_bolt_app(self.app, req)
            status = response.status
            content_type = response.headers.get("content-type", [""])[0]
            payload = _payload(response.status, content_type, response.body or "")
            if response.status != 200:
                log.info(
                    "slack: socket envelope %s (%s) not handled (%s); acknowledged",
                    req.envelope_id,
                    req.type,
                    response.status,
                )
        except Exception:
            log.exception("slack: socket envelope %s (%s) failed", req.envelope_id, req.type)
        await _ack(client, SocketModeResponse(envelope_id=req.envelope_id, payload=payload))
        self._count(kind, status, started)
