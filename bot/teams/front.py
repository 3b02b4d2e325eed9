"""Teams front door: POST /api/messages -> checks -> Bot Framework auth -> ActivityHandler.

botbuilder's `CloudAdapter.process` answers 500 for malformed JWTs, unknown key ids and
unreachable signing keys, and fetches those keys with a blocking `requests.get` (no timeout)
on the event loop. So the request is checked here first (with an app id: a Bearer token is
offered at all, else a 401 before the body is read; then Content-Type, JSON object with a
`type`, a conversation and a service URL), authentication runs on worker threads with a time
limit (any failure or timeout is a 401), and the already authenticated activity is then handed
to `adapter.process_activity`, which accepts the authentication result in place of a header.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from aiohttp import ClientSession, web
from botbuilder.core import InvokeResponse, TurnContext
from botbuilder.integration.aiohttp import CloudAdapter, ConfigurationBotFrameworkAuthentication
from botbuilder.schema import Activity, ActivityTypes
from botframework.connector.auth import AuthenticateRequestResult, AuthenticationConstants

from bot.bodies import body_problem
from bot.correlation import new_correlation_id
from bot.metrics import REQUEST_KIND
from bot.notifiers import Notifiers
from bot.places import Places
from bot.settings import Settings, is_loopback
from bot.teams import replies
from bot.teams.activity_handler import HelpdeskTeamsBot, tenant_of
from bot.teams.connector import ConnectorPool, PooledAuthentication
from bot.teams.notifier import CHANNEL_ID, TeamsNotifier
from bot.teams.references import ReferenceStore
from cards import teams as adaptive
from handlers.deps import Deps

log = logging.getLogger(__name__)
T = TypeVar("T")
# The channel gives a bot ~15 s; a verdict on the token is due well before that.
AUTH_TIMEOUT_SECONDS = 5.0
AUTH_THREADS = 4
# Threads in all, counting those still stuck in a hung key fetch (see AuthRunner).
AUTH_THREADS_MAX = 8


class BotFrameworkConfig:
    """The attribute bag ConfigurationBotFrameworkAuthentication reads (secrets not in repr)."""

    def __init__(self, settings: Settings) -> None:
        self.APP_ID = settings.app_id
        self.APP_PASSWORD = (
            settings.app_password.get_secret_value() if settings.app_password else None
        )
        self.APP_TYPE = settings.app_type
        self.APP_TENANTID = settings.app_tenant_id or None
        for key, value in settings.bot_framework_overrides.items():
            setattr(self, key, value)

    def __repr__(self) -> str:
        return f"BotFrameworkConfig(APP_ID={self.APP_ID!r}, APP_TYPE={self.APP_TYPE!r})"


class AuthUnavailable(Exception):
    """Every auth thread is still stuck in earlier work: the token cannot be checked now."""


class _Worker:
    """One auth thread's event loop and what it is still running (guarded by AuthRunner._lock)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending = 0  # calls handed to this loop that have not finished there
        self.overdue = 0  # of those, calls whose caller gave up: the thread is presumed stuck


class AuthRunner:
    """Daemon threads, each running an event loop, for botbuilder's blocking auth code.

    A hung key fetch (a `requests.get` without timeout) can stall a thread for as long as the
    key endpoint likes. Every call has a deadline (TimeoutError, a 401), and a thread counts as
    free again only when its work has really finished there: work the caller gave up on is left
    to run to its end (it only verifies a token), and a thread still running such overdue work
    takes no new calls. New work goes to the least busy thread with nothing overdue; when every
    thread has overdue work, up to `max_size` threads are started in all, and beyond that
    `run` raises AuthUnavailable at once (also a 401: the keys cannot be fetched) instead of
    queueing calls behind stuck threads.
    """

    def __init__(
        self,
        size: int = AUTH_THREADS,
        *,
        limit: float = AUTH_TIMEOUT_SECONDS,
        max_size: int = AUTH_THREADS_MAX,
    ) -> None:
        self.size = size
        self.max_size = max(size, max_size)
        self.limit = limit
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []

    def _add_worker(self) -> _Worker:
        loop = asyncio.new_event_loop()

        def serve() -> None:
            loop.run_forever()
            loop.close()

        index = len(self._workers)
        threading.Thread(target=serve, name=f"teams-auth-{index}", daemon=True).start()
        worker = _Worker(loop)
        self._workers.append(worker)
        return worker

    def _claim(self) -> _Worker:
        """The worker for a new call (its `pending` already counted); lock held by caller."""
        if not self._workers:
            for _ in range(self.size):
                self._add_worker()
        free = [w for w in self._workers if w.overdue == 0]
        if free:
            worker = min(free, key=lambda w: w.pending)
        elif len(self._workers) < self.max_size:
            worker = self._add_worker()
        else:
            raise AuthUnavailable(f"all {len(self._workers)} auth threads are stuck")
        worker.pending += 1
        return worker

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on an auth thread; TimeoutError after `limit` seconds, AuthUnavailable
        at once when every thread is stuck."""
        with self._lock:
            try:
                worker = self._claim()
            except AuthUnavailable:
                coro.close()
                raise
        state = {"finished": False, "overdue": False}

        async def tracked() -> T:
            try:
                return await coro
            finally:  # on the auth thread, when the work has really ended
                with self._lock:
                    state["finished"] = True
                    worker.pending -= 1
                    if state["overdue"]:
                        worker.overdue -= 1

        result = asyncio.wrap_future(asyncio.run_coroutine_threadsafe(tracked(), worker.loop))
        # A late failure of a call given up on is not "never retrieved".
        result.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            # shield: on timeout the call is not cancelled, it finishes (and is counted) there.
            return await asyncio.wait_for(asyncio.shield(result), self.limit)
        except TimeoutError:
            with self._lock:
                if not state["finished"]:
                    state["overdue"] = True
                    worker.overdue += 1
            raise

    def close(self) -> None:
        with self._lock:
            for worker in self._workers:
                worker.loop.call_soon_threadsafe(worker.loop.stop)
            self._workers.clear()


# Headers reverse proxies and tunnels add. In Emulator mode (no authentication) a request with
# any of them is refused, whatever address it names: the address is the proxy's word, not the
# client's, and a proxy in front of an unauthenticated endpoint is the exposure to prevent.
_PROXY_HEADERS = (
    "Forwarded",
    "X-Forwarded-For",
    "X-Forwarded-Host",
    "X-Real-IP",
    "X-Client-IP",
    "True-Client-IP",
    "CF-Connecting-IP",
    "Via",
)


def _problem(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _bearer(header: str | None) -> bool:
    """Whether an Authorization header offers a bearer token at all (checked later)."""
    scheme, _, token = (header or "").strip().partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


# Longest ids taken (Teams' own are far shorter): what is stored of them fits its columns
# (a person's or conversation's id 255, a delivery key `teams:<conversation>:<activity>` 400),
# and a reply to them fits in the connector's URL.
MAX_ID = 255
MAX_ACTIVITY_ID = 128
MAX_SERVICE_URL = 2048
MAX_DEPTH = 64
# Fields a reply carries back (botbuilder copies them into it): an oversized one would make the
# reply itself too large for the connector (413), so the activity is refused up front.
MAX_NAME = 1024  # a display name (Entra allows 256)
MAX_SHORT = 64  # a channel id (`msteams`), a locale (BCP 47), a conversation type
# Activities the core answers for a person: they must say who sent them.
_FROM_SOMEONE = frozenset({"message", "invoke"})


def _id_problem(value: Any, what: str, limit: int, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        return f"activity has no {what}"
    if len(value) > limit:
        return f"activity {what} is over {limit} characters"
    return None


def _check_activity(body: Any) -> str | None:
    """Why `body` is not an activity we can answer, or None."""
    if not isinstance(body, dict):
        return "body is not a JSON object"
    if problem := body_problem(body, max_depth=MAX_DEPTH):
        return problem
    kind = body.get("type")
    if not isinstance(kind, str) or not kind.strip():
        return "activity has no type"
    service_url = body.get("serviceUrl")
    if not isinstance(service_url, str) or not service_url.startswith(("http://", "https://")):
        return "activity has no http(s) serviceUrl"
    if len(service_url) > MAX_SERVICE_URL:
        return f"activity serviceUrl is over {MAX_SERVICE_URL} characters"
    conversation = body.get("conversation")
    if not isinstance(conversation, dict):
        return "activity has no conversation id"
    sender = body.get("from")
    if sender is not None and not isinstance(sender, dict):
        return "activity has no sender (from) object"
    sender = sender or {}
    recipient = body.get("recipient")
    checks = [
        (conversation.get("id"), "conversation id", MAX_ID, True),
        (body.get("id"), "id", MAX_ACTIVITY_ID, False),
        (body.get("replyToId"), "replyToId", MAX_ACTIVITY_ID, False),
        (sender.get("id"), "sender (from.id)", MAX_ID, kind in _FROM_SOMEONE),
        (sender.get("aadObjectId"), "from.aadObjectId", MAX_ID, False),
        (
            recipient.get("id") if isinstance(recipient, dict) else None,
            "recipient id",
            MAX_ID,
            False,
        ),
    ]
    recipient = recipient if isinstance(recipient, dict) else {}
    checks += [
        (body.get("channelId"), "channelId", MAX_SHORT, False),
        (body.get("locale"), "locale", MAX_SHORT, False),
        (sender.get("name"), "from.name", MAX_NAME, False),
        (recipient.get("name"), "recipient.name", MAX_NAME, False),
        (conversation.get("conversationType"), "conversation.conversationType", MAX_SHORT, False),
        (conversation.get("name"), "conversation.name", MAX_NAME, False),
        (conversation.get("tenantId"), "conversation.tenantId", MAX_ID, False),
    ]
    if kind == "invoke":
        checks.append((body.get("name"), "invoke name", MAX_ID, True))
    for value, what, limit, required in checks:
        if problem := _id_problem(value, what, limit, required=required):
            return problem
    return _form_problem(body, kind)


def _form_problem(body: dict[str, Any], kind: str) -> str | None:
    """Why a card submission's values are not a form's, or None. Teams sends every input as
    a string (the bot's own card data are strings too): a list or an object in their place
    would be stored as its Python spelling (`['VPN down']` as a summary, a requester never
    looked up)."""
    values = body.get("value")
    if kind == "invoke" and body.get("name") == "adaptiveCard/action":
        action = values.get("action") if isinstance(values, dict) else None
        values = action.get("data") if isinstance(action, dict) else None
    elif kind != "message":
        return None
    if not isinstance(values, dict):
        return None
    for key, item in values.items():
        if key != "msteams" and isinstance(item, dict | list):
            return f"card submission value {key[:40]!r} is not text"
    return None


class TeamsFront:
    """Owns the CloudAdapter and the bot; answers POST /api/messages."""

    def __init__(
        self,
        settings: Settings,
        deps: Deps,
        http: ClientSession,
        references: ReferenceStore | None = None,
        *,
        places: Places | None = None,
    ) -> None:
        self.settings = settings
        self.deps = deps
        self.pool = ConnectorPool(http)
        inner = ConfigurationBotFrameworkAuthentication(BotFrameworkConfig(settings))
        self.auth = PooledAuthentication(inner, self.pool)
        self.adapter = CloudAdapter(self.auth)
        self.adapter.on_turn_error = self._on_turn_error
        self.references = references or ReferenceStore(deps.sessions)
        self.places = places or Places()
        self.bot = HelpdeskTeamsBot(
            deps, self.references, app_id=settings.app_id, places=self.places
        )
        self.auth_runner = AuthRunner()
        if settings.teams_emulator and not is_loopback(settings.host):
            log.warning(
                "teams: no MicrosoftAppId (Emulator mode) but HOST=%s is not loopback: "
                "/api/messages will refuse every request (403); set MicrosoftAppId "
                "and MicrosoftAppPassword, or HOST=127.0.0.1",
                settings.host,
            )

    def register_notifiers(self, notifiers: Notifiers) -> None:
        notifier = TeamsNotifier(self.adapter, self.references, self.settings)
        for kind in ("message", "dm", "update"):
            notifiers.register(f"{kind}:teams", notifier)

    def close(self) -> None:
        """Stop the auth threads (shutdown, tests)."""
        self.auth_runner.close()

    # -- HTTP ---------------------------------------------------------------------------------

    async def handle_http(self, request: web.Request) -> web.StreamResponse:
        """POST /api/messages."""
        if self.settings.teams_emulator and not self._emulator_allows(request):
            return _problem(403, "Emulator mode serves loopback clients only")
        if not self.settings.teams_emulator and not _bearer(request.headers.get("Authorization")):
            # Nothing about a caller who offers no token is read, not even its body (as Slack's
            # signature comes before its body): a 401, never a 400 or 415 describing the body.
            request[REQUEST_KIND] = "unverified"
            log.warning("teams: rejected a request (401): no Bearer token in Authorization")
            return _problem(401, "unauthorized")
        content_type = request.content_type
        if content_type != "application/json" and not content_type.endswith("+json"):
            log.warning(
                "teams: rejected a request with Content-Type %r (415)",
                request.headers.get("Content-Type"),
            )
            return _problem(415, "Content-Type must be application/json")
        try:
            body = json.loads(await request.read())
        except web.HTTPRequestEntityTooLarge:
            # As Slack's front door says it (aiohttp's own answer was plain text, unlogged).
            log.warning("teams: rejected a body over %d bytes (413)", request.client_max_size)
            return _problem(413, "body too large")
        except RecursionError:  # e.g. `[[[…]]]` 100,000 deep: not a ValueError
            log.warning("teams: rejected a body nested too deeply (400)")
            return _problem(400, "body is nested too deeply")
        except ValueError:
            log.warning("teams: rejected a body that is not JSON (400)")
            return _problem(400, "body is not JSON")
        problem = _check_activity(body)
        if isinstance(body, dict):
            request[REQUEST_KIND] = _metric_kind(body)
        activity: Activity | None = None
        if problem is None:
            try:
                activity = Activity().deserialize(body)
            except Exception as exc:
                problem = f"activity does not deserialize ({type(exc).__name__})"
        if problem is not None or activity is None:
            log.warning("teams: rejected a malformed activity (400): %s", problem)
            return _problem(400, problem or "malformed activity")

        result = await self._authenticate(activity, request)
        if result is None:
            return _problem(401, "unauthorized")
        if not self.settings.teams_emulator and activity.channel_id != CHANNEL_ID:
            # The same bot registration also serves Web Chat / Direct Line (on by default), where
            # the client chooses its own `from.id`: whoever speaks there could pass for any Teams
            # user (a technician, a manager answering an identity check) and take over their 1:1
            # conversation reference. Only Teams' own channel says who a Teams user is.
            request[REQUEST_KIND] = "unverified"
            log.warning(
                "teams: refused activity %s from channel %.40r (403): only %s is served",
                activity.id,
                activity.channel_id,
                CHANNEL_ID,
            )
            return _problem(403, f"only the {CHANNEL_ID} channel is served")
        tenant = self.settings.config.teams.tenant_id
        if tenant and not self.settings.teams_emulator:
            sent_from = tenant_of(activity)
            if (sent_from or "").lower() != tenant.lower():
                # A multi-tenant bot can be added to any tenant's Teams: with `teams.tenant_id`
                # set, only that tenant's people are served (an outsider could otherwise open
                # tickets and have managers asked to vouch for requesters in their name).
                request[REQUEST_KIND] = "unverified"
                log.warning(
                    "teams: refused activity %s from tenant %.64r (403): teams.tenant_id is %s",
                    activity.id,
                    sent_from,
                    tenant,
                )
                return _problem(403, "this tenant is not served")
        try:
            invoke: InvokeResponse | None = await self.adapter.process_activity(
                result, activity, self.bot.on_turn
            )
        except Exception:
            ref = new_correlation_id()
            log.exception("teams: activity %s failed outside the turn (ref %s)", activity.id, ref)
            return _problem(500, f"internal error (ref {ref})")
        if invoke is None:
            return web.Response(status=201)
        if invoke.body is None:
            return web.Response(status=invoke.status)
        return web.json_response(invoke.body, status=invoke.status, dumps=adaptive.invoke_json)

    def _emulator_allows(self, request: web.Request) -> bool:
        if not is_loopback(self.settings.host):
            log.warning(
                "teams: refused %s (403): Emulator mode (no MicrosoftAppId) only serves "
                "loopback, but HOST=%s",
                request.remote,
                self.settings.host,
            )
            return False
        if request.remote is None or not is_loopback(request.remote):
            log.warning(
                "teams: refused %s (403): Emulator mode (no MicrosoftAppId) only serves "
                "loopback clients",
                request.remote,
            )
            return False
        proxied = sorted(h for h in _PROXY_HEADERS if h in request.headers)
        if proxied:
            # A local reverse proxy or tunnel would make any client look local: its header says
            # a request was forwarded, and the client behind it cannot be vouched for.
            log.warning(
                "teams: refused %s (403): Emulator mode (no MicrosoftAppId) serves no "
                "forwarded requests, this one has %s",
                request.remote,
                ", ".join(proxied),
            )
            return False
        return True

    async def _authenticate(
        self, activity: Activity, request: web.Request
    ) -> AuthenticateRequestResult | None:
        """botbuilder's verdict on the request, or None (logged) when it is not authorized."""
        if self.settings.teams_emulator:
            # Auth is off: botbuilder answers anonymous claims without any I/O.
            return await self.auth.authenticate_request(activity, None)
        header = request.headers.get("Authorization")
        if not header:
            log.warning("teams: rejected activity %s (401): no Authorization header", activity.id)
            return None
        try:
            result = await self.auth_runner.run(self.auth.authenticate_request(activity, header))
            claims = getattr(result.claims_identity, "claims", None) or {}
            if claims.get(AuthenticationConstants.SERVICE_URL_CLAIM) != activity.service_url:
                # botbuilder also takes an Azure AD token with the bot's own `appid` (an
                # Emulator token; the bot's own outbound token is one) and checks no
                # serviceUrl then: the reply, with the bot's bearer token, would go wherever
                # the activity says. Teams' channel tokens always name it.
                log.warning(
                    "teams: rejected activity %s (401): its token does not name the "
                    "serviceUrl %.200r (not a channel token from Teams)",
                    activity.id,
                    activity.service_url,
                )
                return None
            return result
        except TimeoutError:
            log.warning(
                "teams: rejected activity %s (401): token not verified within %g s "
                "(signing keys unreachable?)",
                activity.id,
                self.auth_runner.limit,
            )
        except AuthUnavailable as exc:
            log.warning(
                "teams: rejected activity %s (401): token not checked, %s in an earlier "
                "signing key fetch (signing keys unreachable?)",
                activity.id,
                exc,
            )
        except Exception as exc:
            log.warning(
                "teams: rejected activity %s (401): %s: %.200s",
                activity.id,
                type(exc).__name__,
                exc,
            )
        return None

    # -- errors -------------------------------------------------------------------------------

    async def _on_turn_error(self, turn_context: TurnContext, error: Exception) -> None:
        ref = new_correlation_id()
        activity = turn_context.activity
        log.error("teams: turn failed for activity %s (ref %s)", activity.id, ref, exc_info=error)
        text = f"Something went wrong (ref {ref})."
        try:
            if activity.type == ActivityTypes.invoke:
                body = {"statusCode": 200, "type": replies.MESSAGE_CONTENT_TYPE, "value": text}
                await turn_context.send_activity(
                    Activity(
                        type=ActivityTypes.invoke_response,
                        value=InvokeResponse(status=200, body=body),
                    )
                )
            else:
                await self.bot.send_text(turn_context, text)
        except Exception as exc:
            log.warning("teams: could not tell the user about ref %s: %s", ref, type(exc).__name__)


# The request kinds counted in metrics: the body is read before the caller is authenticated,
# so only the Bot Framework's activity types and the invoke the bot handles are labels; anything
# else is `other` (a label per made-up type or name would grow without bound).
_ACTIVITY_TYPES = frozenset(t.value for t in ActivityTypes)
_INVOKE_NAMES = frozenset({"adaptiveCard/action"})


def _metric_kind(body: dict[str, Any]) -> str:
    kind = body.get("type")
    if not isinstance(kind, str) or kind not in _ACTIVITY_TYPES:
        return "other"
    if kind == "invoke":
        name = body.get("name")
        known = isinstance(name, str) and name in _INVOKE_NAMES
        return f"invoke:{name}" if known else "invoke:other"
    return kind
