"""People from Microsoft Graph (app-only token through msal, calls through aiohttp).

Graph knows users by object id / UPN / mail, not by chat ids:
- Teams: `find_by_platform_id("teams", id, aad_object_id=...)` looks the user up by the AAD
  object id that every Teams activity carries, and returns them with `teams_id` set to `id`.
- Slack: Graph has no Slack ids, so `find_by_platform_id("slack", id)` only answers for a
  person handed to `remember()` earlier (e.g. after the Slack edge resolved the user's e-mail
  with `users.info` and `find_by_email`), for as long as the cache keeps them.
`manager_email` stays None on Graph people: use `manager_of()` (`/users/{id}/manager`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import msal
import requests
from yarl import URL

from bot.directory.cache import TtlCache
from handlers.directory import DirectoryError, Person

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://graph.microsoft.com"
DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
_SELECT = "id,displayName,mail,userPrincipalName,mobilePhone,businessPhones"


def _odata_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class GraphDirectory:
    """Directory backed by Microsoft Graph users, managers and group membership."""

    def __init__(
        self,
        *,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        base_url: str = DEFAULT_BASE_URL,
        authority_host: str = DEFAULT_AUTHORITY_HOST,
        vip_group_id: str | None = None,
        technician_group_id: str | None = None,
        cache_ttl: float = 300.0,
        ca_bundle: str | None = None,
        timeout: float = 10.0,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tenant_id = tenant_id
        self._client_id = client_id
        self._secret = client_secret
        self._base_url = base_url.rstrip("/")
        self._authority = f"{authority_host.rstrip('/')}/{tenant_id}"
        self._scopes = [f"{self._base_url}/.default"]
        self._vip_group = vip_group_id
        self._tech_group = technician_group_id
        self._ca_bundle = ca_bundle
        self._timeout = timeout
        self._session = session
        self._owns_session = session is None
        self._ssl: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True
        )
        self._cache: TtlCache[Person | None] = TtlCache(cache_ttl, clock=clock)
        self._app: msal.ConfidentialClientApplication | None = None
        self._requests: requests.Session | None = None
        self._token_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"GraphDirectory(base_url={self._base_url!r}, authority={self._authority!r})"

    # --- token -------------------------------------------------------------------------

    def _acquire_token_sync(self) -> dict[str, Any]:
        if self._app is None:
            # A sovereign cloud or a test fake is not on msal's list of known hosts: skip
            # instance discovery there (msal still fetches the tenant's OpenID configuration).
            known = self._authority.startswith(DEFAULT_AUTHORITY_HOST + "/")
            self._app = msal.ConfidentialClientApplication(
                self._client_id,
                client_credential=self._secret,
                authority=self._authority,
                validate_authority=known,
                instance_discovery=None if known else False,
                http_client=self._http_client(),
            )
        return self._app.acquire_token_for_client(scopes=self._scopes)  # msal caches it

    def _http_client(self) -> requests.Session:
        """msal's HTTP client, owned here so close() can release its connections."""
        if self._requests is not None:
            return self._requests
        session = requests.Session()
        retry_once = requests.adapters.HTTPAdapter(max_retries=1)  # as msal's own client does
        session.mount("https://", retry_once)
        # Passed per request: requests lets REQUESTS_CA_BUNDLE override a session's `verify`.
        extra: dict[str, Any] = {"verify": self._ca_bundle} if self._ca_bundle else {}
        session.request = functools.partial(  # type: ignore[method-assign]
            session.request, timeout=self._timeout, **extra
        )
        self._requests = session
        return session

    async def _token(self) -> str:
        async with self._token_lock:
            try:
                result = await asyncio.to_thread(self._acquire_token_sync)
            except Exception as exc:  # msal raises ValueError/requests errors on discovery
                log.warning("Graph token from %s failed: %s", self._authority, type(exc).__name__)
                raise DirectoryError(
                    f"directory.graph: cannot get a token from {self._authority}: "
                    f"{type(exc).__name__}: {exc}"
                ) from None
        token = result.get("access_token")
        if not token:
            error = result.get("error", "unknown_error")
            detail = next(iter(str(result.get("error_description", "")).splitlines()), "")
            log.warning("Graph token from %s refused: %s %s", self._authority, error, detail)
            raise DirectoryError(
                f"directory.graph: token request refused by {self._authority}: {error}"
            )
        return str(token)

    # --- HTTP --------------------------------------------------------------------------

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout)
            )
            self._owns_session = True
        return self._session

    async def _call(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Any:
        """One Graph call: the JSON answer, None on 404, DirectoryError on anything else."""
        token = await self._token()
        query = urlencode(params or {}, quote_via=quote, safe="$,'@()")
        url = URL(f"{self._base_url}/v1.0/{path}" + (f"?{query}" if query else ""), encoded=True)
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        try:
            async with self._client().request(
                method, url, headers=headers, json=body, ssl=self._ssl
            ) as resp:
                if resp.status == 404:
                    return None
                if resp.status >= 400:
                    code = await self._error_code(resp)
                    log.warning("Graph %s /v1.0/%s: HTTP %s %s", method, path, resp.status, code)
                    raise DirectoryError(
                        f"directory.graph: {method} /v1.0/{path} answered HTTP {resp.status} {code}"
                    )
                return await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("Graph %s /v1.0/%s failed: %s", method, path, type(exc).__name__)
            raise DirectoryError(
                f"directory.graph: {method} /v1.0/{path} failed: {type(exc).__name__}"
            ) from None

    @staticmethod
    async def _error_code(resp: aiohttp.ClientResponse) -> str:
        try:
            data = await resp.json(content_type=None)
            return str(data["error"]["code"])
        except Exception:
            return ""

    # --- mapping -----------------------------------------------------------------------

    async def _to_person(self, data: dict[str, Any]) -> Person:
        user_id = str(data.get("id") or "")
        groups = [g for g in (self._vip_group, self._tech_group) if g]
        member: set[str] = set()
        if groups and user_id:
            answer = await self._call(
                "POST", f"users/{quote(user_id)}/checkMemberGroups", body={"groupIds": groups}
            )
            member = {str(g).lower() for g in (answer or {}).get("value", [])}
        phones = [p for p in data.get("businessPhones") or [] if p]
        return Person(
            email=str(data.get("mail") or data.get("userPrincipalName") or ""),
            name=str(data.get("displayName") or ""),
            aad_object_id=user_id or None,
            phone=data.get("mobilePhone") or (phones[0] if phones else None),
            vip=(self._vip_group or "").lower() in member,
            technician=(self._tech_group or "").lower() in member,
        )

    def _store(self, person: Person) -> None:
        self._cache.put(("email", person.email.lower()), person)
        if person.aad_object_id:
            self._cache.put(("aad", person.aad_object_id.lower()), person)
        if person.slack_id:
            self._cache.put(("slack", person.slack_id), person)
        if person.teams_id:
            self._cache.put(("teams", person.teams_id), person)

    async def _user(self, key: str) -> Person | None:
        data = await self._call("GET", f"users/{quote(key, safe='@')}", {"$select": _SELECT})
        if data is None and "@" in key:  # mail differs from the UPN
            found = await self._call(
                "GET", "users", {"$filter": f"mail eq {_odata_string(key)}", "$select": _SELECT}
            )
            values = (found or {}).get("value") or []
            if len(values) > 1:
                log.warning("Graph: %d users have mail %s; treating as not found", len(values), key)
            data = values[0] if len(values) == 1 else None
        return await self._to_person(data) if data else None

    # --- Directory ---------------------------------------------------------------------

    def remember(self, person: Person) -> None:
        """Cache a person with chat ids Graph does not know (Slack id) for the cache TTL."""
        self._store(person)

    async def find_by_platform_id(
        self, platform: str, user_id: str, *, aad_object_id: str | None = None
    ) -> Person | None:
        """Teams: by AAD object id (teams_id filled in). Slack: only people `remember()`ed."""
        if platform not in ("slack", "teams"):
            return None
        hit, cached = self._cache.get((platform, user_id))
        if hit and cached is not None:
            return cached
        if platform != "teams" or not aad_object_id:
            return None
        hit, person = self._cache.get(("aad", aad_object_id.lower()))
        if not hit:
            person = await self._user(aad_object_id)
            self._cache.put(("aad", aad_object_id.lower()), person)
        if person is None:
            return None
        person = replace(person, teams_id=user_id)
        self._store(person)
        return person

    async def find_by_email(self, email: str) -> Person | None:
        """The user whose UPN or mail is `email` (case-insensitive)."""
        key = email.strip().lower()
        if not key:
            return None
        hit, cached = self._cache.get(("email", key))
        if hit:
            return cached
        person = await self._user(key)
        self._cache.put(("email", key), person)
        if person is not None:
            self._store(person)
        return person

    async def manager_of(self, person: Person) -> Person | None:
        """The user's manager from `/users/{id}/manager`, None when none is set."""
        key = person.aad_object_id or person.email
        if not key:
            return None
        hit, cached = self._cache.get(("manager", key.lower()))
        if hit:
            return cached
        data = await self._call(
            "GET", f"users/{quote(key, safe='@')}/manager", {"$select": _SELECT}
        )
        manager = await self._to_person(data) if data else None
        self._cache.put(("manager", key.lower()), manager)
        if manager is not None:
            self._store(manager)
        return manager

    async def has_technicians(self) -> bool:
        """True when a technician group is configured."""
        return bool(self._tech_group)

    async def close(self) -> None:
        """Close the HTTP session if this directory opened it."""
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()
        if self._requests is not None:
            self._requests.close()
