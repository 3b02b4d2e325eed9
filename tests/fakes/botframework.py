"""Fake Bot Framework Connector (REST v3) and fake Bot Framework / AAD auth endpoints.

``FakeConnector`` is the activity's ``serviceUrl`` (use ``fake.service_url``, with trailing slash).
``FakeBotAuth`` lets tests run with a real ``MicrosoftAppId`` and JWT validation on: it serves the
OpenID metadata + JWKS botbuilder validates channel tokens against, and an AAD-style token
endpoint for the bot's outbound calls. It runs on its own thread because botbuilder fetches keys
(``requests.get``) and msal fetches tokens synchronously from inside the event loop. msal only
accepts an ``https`` authority and, for hosts it does not know, does instance discovery against
login.microsoftonline.com unless the authority is ADFS-style, so the login URL is
``https://127.0.0.1:<port>/adfs`` with a throwaway CA exported through ``REQUESTS_CA_BUNDLE``.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from .base import FakeServer, LoopbackTLS, Recorded

BOTFRAMEWORK_ISSUER = "https://api.botframework.com"
OUTBOUND_TOKEN = "fake-outbound-token"
MSI_PATH = "/msi/token"
MSI_HEADER = "fake-identity-header"
# "The bot message size limit includes the entire message payload encoded as UTF-16 and doesn't
# include Base64 encoded images"; over it: 413 RequestEntityTooLarge, code MessageSizeTooBig
# (msteams-docs bots/how-to/format-your-bot-messages.md; 40 KB there until 2025, 100 KB since).
MESSAGE_LIMIT_BYTES = 40 * 1024


class FakeConnector(FakeServer):
    """Connector REST v3 as ``botframework.connector.aio.ConnectorClient`` calls it."""

    def __init__(self, *, threaded: bool | None = None) -> None:
        super().__init__(threaded=threaded)
        self._ids = itertools.count(1)
        self._activities: list[dict[str, Any]] = []
        self._updates: list[dict[str, Any]] = []
        self._deletes: list[dict[str, Any]] = []
        self._created: list[dict[str, Any]] = []
        self.members: dict[str, list[dict[str, Any]]] = {}  # conversation id -> members
        # conversation id -> [times left, Retry-After]: sends there answer 429 Throttled.
        self._throttles: dict[str, list[float]] = {}
        self.windows: dict[str, float] = {}
        self.refusals: list[tuple[str, float]] = []
        self.violations: list[tuple[str, float]] = []
        # Bearer tokens the connector no longer takes (revoked, or issued under a secret
        # rotated since); every_token_refused: none is taken (the app's registration is off).
        self.refused_tokens: set[str] = set()
        self.every_token_refused = False
        self._unauthorized: list[dict[str, Any]] = []
        # Messages (sends, replies, updates, a new conversation's first one) above this many
        # bytes (their body as sent, in UTF-16) answer 413 MessageSizeTooBig; None: no limit.
        self.message_limit: int | None = MESSAGE_LIMIT_BYTES
        self.too_big: list[dict[str, Any]] = []

    @property
    def service_url(self) -> str:
        return self.url + "/"

    def add_member(self, conversation_id: str, member_id: str, **fields: Any) -> None:
        member = {"id": member_id, "name": fields.pop("name", member_id), **fields}
        self.members.setdefault(conversation_id, []).append(member)

    def reset_state(self) -> None:
        for store in (self._activities, self._updates, self._deletes, self._created):
            store.clear()
        self._throttles.clear()
        self.refused_tokens.clear()
        self.every_token_refused = False
        self._unauthorized.clear()
        self.windows.clear()
        self.refusals.clear()
        self.violations.clear()
        self.message_limit = MESSAGE_LIMIT_BYTES
        self.too_big.clear()

    def throttle(self, conversation_id: str, *, times: int = 1, retry_after: float = 2.0) -> None:
        """The next `times` sends to the conversation answer 429 Throttled with Retry-After;
        a send arriving inside an announced window counts as a violation. Teams limits a bot
        per thread, "a 1:1 chat, group chat or channel": a channel's reply chains
        (`19:…;messageid=…`) count as the channel."""
        self._throttles[_thread(conversation_id)] = [float(times), retry_after]

    def refuse_token(self, token: str) -> None:
        """Answer 401 to every call made with `token` from now on, although it has not
        expired: what the connector does once the token is revoked or the app's secret has
        been rotated (the calls of an anonymous bot carry no token and are not refused)."""
        self.refused_tokens.add(token)

    def unauthorized(self) -> list[dict[str, Any]]:
        """Calls answered 401: ``_method``, ``_path`` and ``_authorization``, plus the body."""
        return list(self._unauthorized)

    def _refuses(self, rec: Recorded, meta: dict[str, Any]) -> web.Response | None:
        header = str(meta["_authorization"] or "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else None
        if token is None or not (self.every_token_refused or token in self.refused_tokens):
            return None
        body = rec.json if isinstance(rec.json, dict) else {}
        self._unauthorized.append({**body, "_method": rec.method, **meta})
        # The connector's own answer to a token it does not take (ASP.NET's 401 body).
        return web.json_response(
            {"message": "Authorization has been denied for this request."}, status=401
        )

    def _throttled(self, cid: str) -> web.Response | None:
        cid = _thread(cid)
        now = time.monotonic()
        if self.windows.get(cid, 0.0) > now:
            self.violations.append((cid, now))
        pending = self._throttles.get(cid)
        if not pending or pending[0] <= 0:
            return None
        pending[0] -= 1
        self.windows[cid] = now + pending[1]
        self.refusals.append((cid, now))
        body = {"error": {"code": "Throttled", "message": "too many requests"}}
        headers = {"Retry-After": str(int(pending[1]))}
        return web.json_response(body, status=429, headers=headers)

    def _too_big(self, rec: Recorded, meta: dict[str, Any]) -> web.Response | None:
        size = message_size(rec)
        if self.message_limit is None or size <= self.message_limit:
            return None
        body = rec.json if isinstance(rec.json, dict) else {}
        self.too_big.append({**body, "_method": rec.method, "_size": size, **meta})
        return self._error(413, "MessageSizeTooBig", "Message size too large.")

    def activities(self, conversation_id: str | None = None) -> list[dict[str, Any]]:
        """Posted activities (send and reply): the JSON body as sent (``text``, ``attachments``,
        ``entities`` (see `mentions`), ...) plus ``_conversation_id``, ``_reply_to_id`` (None
        for a plain send), ``_id`` (assigned id), ``_path`` and ``_authorization`` (the
        request's Authorization header)."""
        return [
            a for a in list(self._activities) if conversation_id in (None, a["_conversation_id"])
        ]

    def texts(self, conversation_id: str | None = None) -> list[str | None]:
        return [a.get("text") for a in self.activities(conversation_id)]

    def updates(self) -> list[dict[str, Any]]:
        """Updated activities: body plus ``_conversation_id``, ``_activity_id``, ``_path``."""
        return list(self._updates)

    def deletes(self) -> list[dict[str, Any]]:
        return list(self._deletes)

    def created_conversations(self) -> list[dict[str, Any]]:
        """ConversationParameters bodies plus the assigned ``_id`` and ``_activity_id``."""
        return list(self._created)

    def default_error_body(self, status: int) -> Any:
        codes = {401: "BotNotRegistered", 403: "BotNotInConversationRoster", 404: "NotFound"}
        codes |= {412: "PreconditionFailed", 413: "MessageSizeTooBig", 429: "Throttled"}
        code = codes.get(status, "ServiceError")
        return {"error": {"code": code, "message": f"scripted {status} {code}"}}

    def _new_id(self) -> str:
        return str(1_700_000_000_000 + next(self._ids))

    async def handle(self, rec: Recorded, request: web.Request) -> web.StreamResponse:
        # Split the still-encoded path, then decode each segment: ids contain ':', '@', ';'.
        parts = [unquote(p) for p in rec.raw_path.strip("/").split("/")]
        if parts[:2] != ["v3", "conversations"]:
            return self._error(404, "NotFound", f"no route {rec.method} {rec.path}")
        body = rec.json if isinstance(rec.json, dict) else {}
        meta = {"_path": rec.path, "_authorization": rec.headers.get("Authorization")}
        if (refused := self._refuses(rec, meta)) is not None:
            return refused
        rest, method = parts[2:], rec.method
        if not rest:
            if method == "GET":
                return web.json_response({"conversations": [], "continuationToken": None})
            if method == "POST":
                if (too_big := self._too_big(rec, meta)) is not None:
                    return too_big
                cid, aid = f"a:new-{next(self._ids)}", self._new_id()
                self._created.append({**body, "_id": cid, "_activity_id": aid, **meta})
                return web.json_response(
                    {"id": cid, "activityId": aid, "serviceUrl": self.service_url}, status=201
                )
            return self._error(405, "MethodNotAllowed", f"{rec.method} {rec.path}")
        cid, tail = rest[0], rest[1:]
        if tail and tail[0] == "activities":
            aid = tail[1] if len(tail) > 1 else ""
            if method == "POST" and (throttled := self._throttled(cid)) is not None:
                return throttled
            if method in ("POST", "PUT") and aid != "history":
                if (too_big := self._too_big(rec, meta)) is not None:
                    return too_big
            if method == "POST" and aid in ("", "history"):
                new_id = self._new_id()
                self._activities.append(
                    {**body, "_conversation_id": cid, "_reply_to_id": None, "_id": new_id, **meta}
                )
                return web.json_response({"id": new_id}, status=201)
            if method == "POST" and len(tail) == 2:
                new_id = self._new_id()
                self._activities.append(
                    {**body, "_conversation_id": cid, "_reply_to_id": aid, "_id": new_id, **meta}
                )
                return web.json_response({"id": new_id}, status=201)
            if method == "PUT" and len(tail) == 2:
                self._updates.append({**body, "_conversation_id": cid, "_activity_id": aid, **meta})
                return web.json_response({"id": aid})
            if method == "DELETE" and len(tail) == 2:
                self._deletes.append({"_conversation_id": cid, "_activity_id": aid, **meta})
                return web.Response(status=200)
            if method == "GET" and len(tail) == 3 and tail[2] == "members":
                return web.json_response(self.members.get(cid, []))
        if method == "GET" and tail == ["members"]:
            return web.json_response(self.members.get(cid, []))
        if method == "GET" and tail == ["pagedmembers"]:
            return web.json_response(
                {"members": self.members.get(cid, []), "continuationToken": None}
            )
        if method == "GET" and len(tail) == 2 and tail[0] == "members":
            for member in self.members.get(cid, []):
                if member["id"] == tail[1]:
                    return web.json_response(member)
            return self._error(404, "MemberNotFoundInConversation", "The member was not found")
        if method == "POST" and tail == ["attachments"]:
            return web.json_response({"id": self._new_id()}, status=201)
        return self._error(404, "NotFound", f"no route {rec.method} {rec.path}")

    @staticmethod
    def _error(status: int, code: str, message: str) -> web.Response:
        return web.json_response({"error": {"code": code, "message": message}}, status=status)


def mentions(posted: dict[str, Any]) -> list[dict[str, Any]]:
    """The mention entities of a posted activity (`FakeConnector.activities`), as sent:
    ``{"type": "mention", "text": "<at>Name</at>", "mentioned": {"id", "name"}}``."""
    entities = posted.get("entities") or []
    return [e for e in entities if isinstance(e, dict) and e.get("type") == "mention"]


def message_size(rec: Recorded) -> int:
    """What Teams counts against its message size limit: the body as sent, in UTF-16 bytes,
    without Base64 images (inline `data:…;base64,…` attachment URLs)."""
    images = 0
    body = rec.json if isinstance(rec.json, dict) else {}
    activity = body.get("activity") if isinstance(body.get("activity"), dict) else body
    for attachment in activity.get("attachments") or []:
        url = attachment.get("contentUrl") if isinstance(attachment, dict) else None
        if isinstance(url, str) and url.startswith("data:") and ";base64," in url:
            images += len(json.dumps(url).encode("utf-16-le"))
    return len(rec.body_text.encode("utf-16-le")) - images


def _thread(conversation_id: str) -> str:
    """What Teams rate-limits a send by: the conversation, a reply chain counting as its channel."""
    return conversation_id.partition(";messageid=")[0]


class FakeBotAuth(FakeServer):
    """Bot Framework OpenID metadata/JWKS plus an AAD-style client-credentials token endpoint."""

    THREADED = True

    def __init__(
        self,
        *,
        issuer: str = BOTFRAMEWORK_ISSUER,
        endorsements: tuple[str, ...] = ("msteams",),
        access_token: str = OUTBOUND_TOKEN,
    ) -> None:
        super().__init__(tls=LoopbackTLS())
        self.issuer = issuer
        self.endorsements = list(endorsements)
        self.access_token = access_token
        # fresh_tokens: each token issued is a new one (`access_token.<n>`), as AAD's are.
        self.fresh_tokens = False
        self.issued: list[str] = []
        self.kid = f"fake-kid-{uuid.uuid4().hex[:8]}"
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.expected_client: tuple[str, str] | None = None  # (app id, password) once env() ran

    async def stop(self) -> None:
        await super().stop()
        if self.tls is not None:
            self.tls.cleanup()

    # ---------------------------------------------------------------- settings
    @property
    def metadata_url(self) -> str:
        # botbuilder caches keys per metadata URL for a day in a class-level dict; the query
        # makes the URL unique per fake even if the OS hands out the same port again.
        return f"{self.url}/v1/.well-known/openidconfiguration?fake={self.kid}"

    @property
    def login_url(self) -> str:
        return f"{self.https_url}/adfs"

    def overrides(self) -> dict[str, str]:
        """botbuilder configuration attributes (also the app's env var names) for this fake."""
        return {
            "TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL": self.metadata_url,
            "TO_BOT_FROM_EMULATOR_OPENID_METADATA_URL": self.metadata_url,
            "TO_BOT_FROM_CHANNEL_TOKEN_ISSUER": self.issuer,
            "TO_CHANNEL_FROM_BOT_LOGIN_URL": self.login_url,
            "TO_CHANNEL_FROM_BOT_OAUTH_SCOPE": BOTFRAMEWORK_ISSUER,
            "OAUTH_URL": self.url,
        }

    def env(self, app_id: str, password: str, tenant: str | None = None) -> dict[str, str]:
        """Env var overrides pointing the app (and botbuilder/msal) at this fake.

        Includes ``REQUESTS_CA_BUNDLE`` (certifi + the fake's CA) so msal trusts the TLS listener;
        apply with ``monkeypatch.setenv``. ``tenant`` given -> SingleTenant, else MultiTenant.
        """
        assert self.tls is not None and self.url, "start() the fake first"
        self.expected_client = (app_id, password)
        return {
            **self.overrides(),
            "MicrosoftAppId": app_id,
            "MicrosoftAppPassword": password,
            "MicrosoftAppType": "SingleTenant" if tenant else "MultiTenant",
            "MicrosoftAppTenantId": tenant or "",
            "REQUESTS_CA_BUNDLE": self.tls.ca_bundle,
        }

    def config(self, app_id: str, password: str, tenant: str | None = None) -> SimpleNamespace:
        """Object for ``ConfigurationBotFrameworkAuthentication`` (APP_ID, APP_PASSWORD, ...).

        Callers still need ``REQUESTS_CA_BUNDLE`` from :meth:`env` in the environment.
        """
        env = self.env(app_id, password, tenant)
        return SimpleNamespace(
            APP_ID=app_id,
            APP_PASSWORD=password,
            APP_TYPE=env["MicrosoftAppType"],
            APP_TENANTID=tenant,
            **self.overrides(),
        )

    # ------------------------------------------------------------------ tokens
    def make_token(
        self,
        app_id: str,
        service_url: str,
        *,
        issuer: str | None = None,
        expired: bool = False,
        kid: str | None = None,
        extra_claims: dict[str, Any] | None = None,
    ) -> str:
        """A channel->bot token as the Bot Connector service would send it."""
        return self._sign(self._key, app_id, service_url, issuer, expired, kid, extra_claims)

    def bad_signature_token(
        self, app_id: str, service_url: str, *, issuer: str | None = None, kid: str | None = None
    ) -> str:
        """Same claims and ``kid`` as a good token, signed with a key the JWKS does not hold."""
        return self._sign(self._other_key, app_id, service_url, issuer, False, kid, None)

    def _sign(
        self,
        key: rsa.RSAPrivateKey,
        app_id: str,
        service_url: str,
        issuer: str | None,
        expired: bool,
        kid: str | None,
        extra: dict[str, Any] | None,
    ) -> str:
        now = int(time.time())
        start = now - 7200 if expired else now - 60
        claims = {
            "iss": issuer or self.issuer,
            "aud": app_id,
            "serviceurl": service_url,
            "iat": start,
            "nbf": start,
            "exp": now - 3600 if expired else now + 3600,
            **(extra or {}),
        }
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid or self.kid})

    def msi_env(self, app_id: str, tenant: str) -> dict[str, str]:
        """Env for MicrosoftAppType=UserAssignedMSI: msal's ManagedIdentityClient asks the App
        Service identity endpoint (IDENTITY_ENDPOINT / IDENTITY_HEADER, read from os.environ:
        set them with ``monkeypatch.setenv``) served here."""
        assert self.url, "start() the fake first"
        self.expected_client = None
        return {
            **self.overrides(),
            "MicrosoftAppId": app_id,
            "MicrosoftAppPassword": "",
            "MicrosoftAppType": "UserAssignedMSI",
            "MicrosoftAppTenantId": tenant,
            "IDENTITY_ENDPOINT": f"{self.url}{MSI_PATH}",
            "IDENTITY_HEADER": MSI_HEADER,
        }

    def token_requests(self) -> list[Recorded]:
        """Token requests: the AAD client-credentials endpoint and the managed identity one."""
        return self.calls(
            lambda r: (
                (r.method == "POST" and r.path.endswith("/oauth2/v2.0/token"))
                or (r.method == "GET" and r.path == MSI_PATH)
            )
        )

    # ---------------------------------------------------------------- handlers
    async def handle(self, rec: Recorded, request: web.Request) -> web.StreamResponse:
        base = f"{request.scheme}://{request.host}"
        if rec.path == "/v1/.well-known/openidconfiguration":
            return web.json_response(
                {
                    "issuer": self.issuer,
                    "authorization_endpoint": f"{base}/v1/.well-known/authorize",
                    "jwks_uri": f"{base}/v1/.well-known/keys",
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                }
            )
        if rec.path == "/v1/.well-known/keys":
            jwk = RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
            jwk.update({"kid": self.kid, "use": "sig", "endorsements": self.endorsements})
            return web.json_response({"keys": [jwk]})
        if rec.method == "GET" and rec.path.endswith("/.well-known/openid-configuration"):
            # msal tenant discovery: /adfs/.well-known/... or /{tenant}/v2.0/.well-known/...
            tenant = rec.path.strip("/").split("/")[0]
            tenant = "botframework.com" if tenant == "adfs" else tenant
            return web.json_response(
                {
                    "issuer": f"{base}/{tenant}/v2.0",
                    "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
                    "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
                    "jwks_uri": f"{base}/v1/.well-known/keys",
                }
            )
        if rec.method == "POST" and rec.path.endswith("/oauth2/v2.0/token"):
            return self._token(rec)
        if rec.method == "GET" and rec.path == MSI_PATH:
            return self._msi_token(rec)
        return web.json_response({"error": "not_found"}, status=404)

    def _token(self, rec: Recorded) -> web.Response:
        form = rec.form or {}
        if form.get("grant_type") != "client_credentials":
            return _aad_error(400, "unsupported_grant_type", "only client_credentials")
        client = (form.get("client_id"), form.get("client_secret"))
        if self.expected_client is not None and client != self.expected_client:
            return _aad_error(401, "invalid_client", "AADSTS7000215: Invalid client secret.")
        return web.json_response(
            {
                "token_type": "Bearer",
                "expires_in": 3600,
                "ext_expires_in": 3600,
                "access_token": self._issue(),
            }
        )

    def _issue(self) -> str:
        token = self.access_token
        if self.fresh_tokens:
            token = f"{token}.{len(self.issued) + 1}"
        self.issued.append(token)
        return token

    def _msi_token(self, rec: Recorded) -> web.Response:
        # App Service's identity endpoint (api-version 2019-08-01): expires_on in epoch seconds.
        if rec.headers.get("X-IDENTITY-HEADER") != MSI_HEADER:
            return web.json_response({"statusCode": 401, "message": "bad header"}, status=401)
        resource = rec.query.get("resource", "")
        return web.json_response(
            {
                "access_token": self._issue(),
                "expires_on": str(int(time.time()) + 3600),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": rec.query.get("client_id", ""),
            }
        )


def _aad_error(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)
