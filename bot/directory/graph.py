"""People from Microsoft Graph (app-only token through msal, calls through aiohttp).

Graph knows users by object id, UPN and mail; the chat platforms fill in the rest through the
injected `ChatLinks` (SPEC, after "Directory file"):
- Teams: the user whose object id is the activity's `from.aadObjectId` (`teams_id` set to the
  activity's user id); a Teams user id alone is matched through the 1:1 chats the bot has.
- Slack: the user whose `mail` or UPN is the Slack profile e-mail (`users.info`).
- Anyone read from Graph (a manager, say) gets the Slack id `users.lookupByEmail` finds, and
  the Teams id of a 1:1 chat the bot already has with their AAD object id; without one they
  are reached on Teams by AAD object id (the notifier opens the chat).
`manager_email` stays None on Graph people: use `manager_of()` (`/users/{id}/manager`).

A 429 or 503 is retried after its `Retry-After`, and no call goes to Graph before it has passed
(also other look-ups'), for up to 10 s while the person waits; past that, or when Graph or its
token endpoint cannot be reached, a look-up raises `DirectoryUnavailable`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import re
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

from bot.capped import MAX_ERROR_BODY, read_capped
from bot.directory.cache import TtlCache
from bot.directory.chat_links import ChatLinks
from bot.directory.deadline import directory_call, time_left
from bot.notifiers import retry_after_seconds
from handlers.directory import DirectoryAmbiguous, DirectoryUnavailable, Person, address_key

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://graph.microsoft.com"
DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
_SELECT = "id,displayName,mail,userPrincipalName,mobilePhone,businessPhones,accountEnabled"
SOURCE = "Graph"
# Graph's throttling answers; 502/504 are its gateways' transient failures, retried alike.
RETRY_STATUSES = {429, 502, 503, 504}
WAIT_LIMIT = 10.0  # seconds of Retry-After a person waits for, per look-up
MAX_RETRIES = 10
MAX_PAGES = 5  # next pages followed for one look-up
# Every call selects a few fields of a user or a page of groups: well under a MB. An answer
# larger than this is not Graph's (a proxy gone wrong) and is not read into memory nor parsed
# on the event loop.
MAX_MB = 4
MAX_ANSWER = MAX_MB * 1024 * 1024
TOKEN_LIMIT = 15.0  # a token request (msal retries once), including waiting for another one


# Graph object ids are GUIDs; anything else (a group's name pasted in) names no group.
_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def _odata_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _is_user(data: dict[str, Any]) -> bool:
    """A directoryObject answer (a manager) is a user unless its @odata.type says otherwise."""
    kind = str(data.get("@odata.type") or "#microsoft.graph.user")
    return kind.lower() == "#microsoft.graph.user"


def _contact(data: dict[str, Any]) -> Person:
    """A manager who is no user of the tenant (an organisational contact): on file with
    name, mail and number, but with no object id, chat ids or groups. The bot cannot reach
    them (their outside address is not looked up on Slack), so the technician calls back."""
    phones = [p for p in data.get("businessPhones") or [] if p]
    log.info("Graph: a manager is a %s, not a user", data.get("@odata.type"))
    return Person(
        email=str(data.get("mail") or ""),
        name=str(data.get("displayName") or ""),
        phone=data.get("mobilePhone") or (phones[0] if phones else None),
    )


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
        chat: ChatLinks | None = None,
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
        self._chat = chat or ChatLinks()
        self._session = session
        self._owns_session = session is None
        self._ssl: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True
        )
        self._cache: TtlCache[Person | None] = TtlCache(cache_ttl, clock=clock)
        self._app: msal.ConfidentialClientApplication | None = None
        self._requests: requests.Session | None = None
        self._token_lock = asyncio.Lock()
        # No call to Graph before this time.monotonic() (its last Retry-After).
        self._not_before = 0.0

    def __repr__(self) -> str:
        return f"GraphDirectory(base_url={self._base_url!r}, authority={self._authority!r})"

    def link_chat(self, chat: ChatLinks) -> None:
        """Use `chat` to map Slack and Teams users (the front doors are built after this)."""
        self._chat = chat

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

    def _unavailable(self, detail: str) -> DirectoryUnavailable:
        return DirectoryUnavailable(SOURCE, detail)

    async def _token(self) -> str:
        with directory_call():
            return await self._token_in_turn()

    async def _token_in_turn(self) -> str:
        limit = time_left(TOKEN_LIMIT)
        try:
            async with asyncio.timeout(limit):
                async with self._token_lock:
                    result = await asyncio.to_thread(self._acquire_token_sync)
        except TimeoutError:
            log.warning("Graph token from %s: no answer within %.0f s", self._authority, limit)
            raise self._unavailable(
                f"no token from {self._authority} within {limit:.0f} s"
            ) from None
        except Exception as exc:  # msal raises ValueError/requests errors on discovery
            log.warning("Graph token from %s failed: %s", self._authority, type(exc).__name__)
            raise self._unavailable(
                f"cannot get a token from {self._authority}: {type(exc).__name__}"
            ) from None
        token = result.get("access_token")
        if not token:
            error = result.get("error", "unknown_error")
            detail = next(iter(str(result.get("error_description", "")).splitlines()), "")
            log.warning("Graph token from %s refused: %s %s", self._authority, error, detail)
            raise self._unavailable(f"token request refused by {self._authority}: {error}")
        return str(token)

    async def _drop_token(self, refused: str) -> None:
        """Graph refused `refused` (401) although msal holds it as valid: forget it, so the
        next call gets a new one (unless another call already replaced it)."""
        try:
            async with asyncio.timeout(time_left(TOKEN_LIMIT)), self._token_lock:
                await asyncio.to_thread(self._drop_token_sync, refused)
        except Exception as exc:  # the next _token() tells what is wrong with the endpoint
            log.warning("Graph: could not drop the refused token: %s", type(exc).__name__)

    def _drop_token_sync(self, refused: str) -> None:
        if self._app is None:
            return
        current = self._app.acquire_token_for_client(scopes=self._scopes)  # from msal's cache
        if current.get("access_token") == refused:
            self._app.remove_tokens_for_client()

    # --- HTTP --------------------------------------------------------------------------

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout)
            )
            self._owns_session = True
        return self._session

    async def _throttle(self, wait_until: float, what: str) -> None:
        """Wait out the last Retry-After, or give up when it ends after `wait_until`."""
        now = time.monotonic()
        if self._not_before <= now:
            return
        if self._not_before > wait_until:
            raise self._unavailable(
                f"{what}: Graph asked to wait {self._not_before - now:.0f} s more, longer "
                "than a person waits"
            )
        await asyncio.sleep(self._not_before - now)

    async def _call(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Any:
        """One Graph call: the JSON answer, None on 404; throttling answers retried after
        their Retry-After within the person's wait; DirectoryUnavailable otherwise."""
        with directory_call():
            return await self._call_in_turn(method, path, params, body)

    async def _call_in_turn(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None,
        body: dict[str, Any] | None,
    ) -> Any:
        what = f"{method} /v1.0/{path.split('?', 1)[0]}"
        wait_until = time.monotonic() + time_left(WAIT_LIMIT)
        query = urlencode(params or {}, quote_via=quote, safe="$,'@()")
        url = URL(f"{self._base_url}/v1.0/{path}" + (f"?{query}" if query else ""), encoded=True)
        failures = 0
        renewed = False  # a token Graph refused is replaced once per call
        while True:
            await self._throttle(wait_until, what)
            token = await self._token()
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            timeout = aiohttp.ClientTimeout(total=max(1.0, time_left(self._timeout)))
            refused: str | None = None
            try:
                async with self._client().request(
                    method, url, headers=headers, json=body, ssl=self._ssl, timeout=timeout
                ) as resp:
                    if resp.status == 404:
                        return None
                    if resp.status == 401 and not renewed:
                        renewed, refused = True, token
                        log.warning("Graph %s: HTTP 401, getting a new token", what)
                    elif resp.status in RETRY_STATUSES and failures < MAX_RETRIES:
                        failures += 1
                        wait = retry_after_seconds(resp.headers.get("Retry-After"))
                        wait = max(wait, 0.1) if wait is not None else min(2.0**failures / 2, 4.0)
                        self._not_before = max(self._not_before, time.monotonic() + wait)
                        log.warning(
                            "Graph %s: HTTP %s, retry after %.1f s", what, resp.status, wait
                        )
                        continue
                    elif resp.status >= 400:
                        code = await self._error_code(resp)
                        log.warning("Graph %s: HTTP %s %s", what, resp.status, code)
                        raise self._unavailable(f"{what} answered HTTP {resp.status} {code}")
                    else:
                        raw = await read_capped(resp, MAX_ANSWER)
                        if raw is None:
                            # Not Graph's answer: taken as one that is not JSON (tried again once).
                            log.warning("Graph %s: an answer over %d MB, not read", what, MAX_MB)
                            raise ValueError(f"an answer over {MAX_MB} MB")
                        return json.loads(raw)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                failures += 1
                log.warning("Graph %s failed: %s", what, type(exc).__name__)
                if failures > 1 or time.monotonic() + 0.5 > wait_until:
                    raise self._unavailable(f"{what} failed: {type(exc).__name__}") from None
                self._not_before = max(self._not_before, time.monotonic() + 0.5)
            if refused is not None:
                await self._drop_token(refused)

    @staticmethod
    async def _error_code(resp: aiohttp.ClientResponse) -> str:
        try:
            raw = await read_capped(resp, MAX_ERROR_BODY)
            if raw is None:
                return ""
            return str(json.loads(raw)["error"]["code"])
        except Exception:
            return ""

    # --- mapping -----------------------------------------------------------------------

    async def _to_person(
        self, data: dict[str, Any], *, slack_id: str | None = None, teams_id: str | None = None
    ) -> tuple[Person, bool]:
        """The person, and whether it may be cached (False when their Slack id could not be
        asked for now: they are answered without one, and asked about again next time)."""
        user_id = str(data.get("id") or "")
        email = str(data.get("mail") or data.get("userPrincipalName") or "")
        groups = [g for g in (self._vip_group, self._tech_group) if g]
        member: set[str] = set()
        if groups and user_id:
            path = f"users/{quote(user_id, safe='')}/checkMemberGroups"
            answer = await self._call("POST", path, body={"groupIds": groups})
            if not isinstance(answer, dict):
                # 404 for a user Graph has just returned (replication lag): the groups are
                # not known, which is not "in none" (that would be "not a VIP").
                log.warning("Graph POST /v1.0/%s: no answer (404); groups not known", path)
                raise self._unavailable(f"POST /v1.0/{path}: the user's groups are not known")
            member = {str(g).lower() for g in answer.get("value") or []}
        complete = True
        if slack_id is None and email:
            try:
                slack_id = await self._chat.slack_user(email)
            except DirectoryUnavailable as exc:
                # Slack's trouble is not the directory's: the person stays reachable on Teams.
                log.warning("Graph: no Slack id for %s for now (%s)", email, exc.detail)
                complete = False
        if teams_id is None and user_id:
            teams_id = await self._chat.teams_user(user_id)
        phones = [p for p in data.get("businessPhones") or [] if p]
        person = Person(
            email=email,
            name=str(data.get("displayName") or ""),
            slack_id=slack_id,
            teams_id=teams_id,
            aad_object_id=user_id or None,
            phone=data.get("mobilePhone") or (phones[0] if phones else None),
            vip=(self._vip_group or "").lower() in member,
            technician=(self._tech_group or "").lower() in member,
            disabled=data.get("accountEnabled") is False,
        )
        return person, complete

    def _store(self, person: Person, *, until: float = math.inf) -> None:
        """Cache `person` under the keys that name them alone, for cache_ttl but no later
        than `until` (a person answered from the cache is not cached afresh: that would
        stretch the answer past cache_ttl): their object id, and the Teams id found from it.
        Not under their mail, nor the Slack id found from it: another user may carry that
        mail as theirs or as UPN, and those look-ups must ask Graph (ambiguous)."""
        if person.aad_object_id:
            self._cache.put(("aad", person.aad_object_id.lower()), person, until=until)
        if person.teams_id:
            self._cache.put(("teams", person.teams_id), person, until=until)

    async def _all(self, path: str, params: dict[str, str]) -> list[Any]:
        """A collection's values, following `@odata.nextLink` (Graph pages any collection,
        and may answer a page with few or no values and a link to more) until more than one
        value is known or there is no next page: the first page alone is never taken for the
        whole answer. A link off this Graph's base URL is not followed (it would carry the
        token elsewhere): DirectoryUnavailable. So is a 404: Graph answers a query on a
        collection with an empty `value`, never "not found"; a 404 comes from something else
        on the way (a gateway at base_url that does not know the route), and is no answer."""
        found = await self._page(path, params)
        values = list(found.get("value") or [])
        prefix = f"{self._base_url}/v1.0/"
        for _ in range(MAX_PAGES):
            link = found.get("@odata.nextLink")
            if not link or len(values) > 1:
                return values
            if not isinstance(link, str) or not link.startswith(prefix):
                log.warning("Graph GET /v1.0/%s: next page is not on %s", path, self._base_url)
                raise self._unavailable(f"GET /v1.0/{path}: next page is not on Graph")
            found = await self._page(link[len(prefix) :])
            values.extend(found.get("value") or [])
        if found.get("@odata.nextLink") and len(values) <= 1:
            raise self._unavailable(f"GET /v1.0/{path}: more than {MAX_PAGES} next pages")
        return values

    async def _page(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """One page of a collection; DirectoryUnavailable for a 404 or an answer that is no
        collection (see `_all`)."""
        found = await self._call("GET", path, params)
        if not isinstance(found, dict):
            what = f"GET /v1.0/{path.split('?', 1)[0]}"
            answer = "HTTP 404" if found is None else "no JSON object"
            log.warning("Graph %s: %s, where a collection was expected", what, answer)
            raise self._unavailable(f"{what} answered {answer}, not a collection")
        return found

    async def _user_data(self, key: str) -> dict[str, Any] | None:
        """The user `key` names: an e-mail address (with "@") as their mail or UPN, else an
        object id."""
        if "@" in key:
            return await self._user_by_address(key)
        data = await self._call("GET", f"users/{quote(key, safe='')}", {"$select": _SELECT})
        return data if isinstance(data, dict) else None

    async def _user_by_address(self, address: str) -> dict[str, Any] | None:
        """The one user whose mail or UPN is `address` (Graph compares them
        case-insensitively), else the one with `address` among their other e-mail addresses
        (an alias, `proxyAddresses` `smtp:...`: a Slack profile often carries one, such as
        the address before a name change); DirectoryAmbiguous when it names several (one's
        mail another's UPN, a stale account carrying the mail). The address only ever goes
        into a quoted `$filter` literal, never a URL path segment, so nothing typed in it
        (`/`, `?`, `#`, `%2F`, quotes) can name another user or resource."""
        literal = _odata_string(address)
        found = await self._one_user(
            f"mail eq {literal} or userPrincipalName eq {literal}", f"mail or UPN {address}"
        )
        if found is not None:
            return found
        # Exchange keeps aliases as `smtp:` (primary `SMTP:`); Graph compares case-insensitively.
        alias = _odata_string(f"smtp:{address}")
        return await self._one_user(
            f"proxyAddresses/any(p:p eq {alias})", f"e-mail alias {address}"
        )

    async def _one_user(self, expression: str, what: str) -> dict[str, Any] | None:
        values = await self._all("users", {"$filter": expression, "$select": _SELECT})
        users = {str(v.get("id") or i): v for i, v in enumerate(values) if isinstance(v, dict)}
        if len(users) > 1:
            log.warning("Graph: %d users have %s; the look-up cannot answer", len(users), what)
            raise DirectoryAmbiguous(SOURCE, what, len(users), entries="users")
        return next(iter(users.values()), None)

    # --- Directory ---------------------------------------------------------------------

    async def find_by_platform_id(
        self, platform: str, user_id: str, *, aad_object_id: str | None = None
    ) -> Person | None:
        """Teams: by AAD object id (the activity's, else a 1:1 chat's); Slack: by the Slack
        profile e-mail. The chat id is set on the person returned."""
        if platform not in ("slack", "teams") or not user_id:
            return None
        hit, cached = self._cache.get((platform, user_id))
        if hit and (cached is not None or platform == "slack" or not aad_object_id):
            return cached
        person, complete, until = None, True, math.inf
        if platform == "slack":
            email = await self._chat.slack_email(user_id)
            data = await self._user_data(email.strip().lower()) if email else None
            if data is not None:
                person, complete = await self._to_person(data, slack_id=user_id)
        else:
            aad = aad_object_id or await self._chat.teams_aad(user_id)
            if aad:
                person, complete, until = await self._teams_user(user_id, aad)
        if complete:
            self._cache.put((platform, user_id), person, until=until)
            if person is not None:
                self._store(person, until=until)
        return person

    async def _teams_user(self, user_id: str, aad: str) -> tuple[Person | None, bool, float]:
        """The user with AAD object id `aad`, whether it may be cached, and until when (an
        answer from the cache no longer than that entry)."""
        hit, cached, until = self._cache.get_until(("aad", aad.lower()))
        if hit:
            return (replace(cached, teams_id=user_id) if cached else None), True, until
        data = await self._user_data(aad)
        if data is None:
            self._cache.put(("aad", aad.lower()), None)
            return None, True, math.inf
        person, complete = await self._to_person(data, teams_id=user_id)
        return person, complete, math.inf

    async def find_by_email(self, email: str) -> Person | None:
        """The user whose UPN or mail is `email` (case-insensitive); None for a value that
        is no address (without "@" it would be taken for an object id, or a function such as
        `delta`, in a URL path)."""
        key = address_key(email)
        if not key or "@" not in key:
            return None
        hit, cached = self._cache.get(("email", key))
        if hit:
            return cached
        data = await self._user_data(key)
        person, complete = await self._to_person(data) if data else (None, True)
        if complete:
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
        manager: Person | None = None
        complete = True
        if isinstance(data, dict) and not _is_user(data):
            manager = _contact(data)
        elif isinstance(data, dict):
            manager, complete = await self._to_person(data)
        if complete:
            self._cache.put(("manager", key.lower()), manager)
            if manager is not None:
                self._store(manager)
        return manager

    async def configured_groups(self) -> list[tuple[str, str, str | None]]:
        """(setting, group id, display name) of each configured group, the name None when the
        tenant has no group with that id (GET /groups/{id}, read-only: check-config --probe).
        A group that does not exist makes nobody a VIP (or technician) without a word at
        look-up time: checkMemberGroups answers "in none". DirectoryUnavailable when Graph
        cannot answer. With no group configured, only a token is fetched."""
        settings = (
            ("directory.graph.vip_group_id", self._vip_group),
            ("directory.graph.technician_group_id", self._tech_group),
        )
        found: list[tuple[str, str, str | None]] = []
        await self._token()
        for setting, group_id in settings:
            if not group_id:
                continue
            if not _GUID.fullmatch(group_id):  # Graph answers 400 to a name or a typo
                found.append((setting, group_id, None))
                continue
            path = f"groups/{quote(group_id, safe='')}"
            data = await self._call("GET", path, {"$select": "id,displayName"})
            name = str(data.get("displayName") or group_id) if isinstance(data, dict) else None
            found.append((setting, group_id, name))
        return found

    async def has_technicians(self) -> bool:
        """True when a technician group is configured."""
        return bool(self._tech_group)

    async def close(self) -> None:
        """Close the HTTP session if this directory opened it."""
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()
        if self._requests is not None:
            self._requests.close()
