"""Fake Microsoft Graph (users, manager, checkMemberGroups) plus the Entra ID endpoints msal uses.

msal only accepts an ``https`` authority, so the fake listens on TLS too: point the Graph
directory's ``authority_host`` (and ``base_url``) at ``https_url`` and its ``ca_bundle`` at
``tls.ca_file``. msal, with instance discovery off, fetches
``{authority}/v2.0/.well-known/openid-configuration`` and then POSTs the client-credentials
grant to the ``token_endpoint`` named there. Graph calls without the issued bearer token get 401.
"""

from __future__ import annotations

import itertools
import re
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from .base import FakeServer, LoopbackTLS, Recorded, json_response

GRAPH_TOKEN = "fake-graph-access-token"


def _error(status: int, code: str) -> web.Response:
    return json_response({"error": {"code": code, "message": code}}, status=status)


# `proxyAddresses/any(p:p eq 'smtp:x')`: a user one of whose addresses is x (Graph's lambda
# operator on a string collection; the documented way to find a user by an alias).
_ALIAS = re.compile(r"proxyAddresses/any\((\w+):\1 eq '((?:[^']|'')*)'\)")


def _equalities(expression: str) -> list[tuple[str, str]] | None:
    """`a eq 'x' or b eq 'y'` -> [(a, x), (b, y)] (OData string literals, '' for a quote);
    None for anything else."""
    clauses: list[tuple[str, str]] = []
    rest = expression
    while True:
        prop, sep, after = rest.partition(" eq '")
        if not sep or not prop.isidentifier():
            return None
        value, i = [], 0
        while True:
            if i >= len(after):
                return None
            if after[i] == "'":
                if after[i + 1 : i + 2] == "'":
                    value.append("'")
                    i += 2
                    continue
                break
            value.append(after[i])
            i += 1
        clauses.append((prop, "".join(value)))
        rest = after[i + 1 :]
        if not rest:
            return clauses
        if not rest.startswith(" or "):
            return None
        rest = rest[len(" or ") :]


class FakeGraph(FakeServer):
    """Users keyed by object id; answers by id or UPN, `mail eq` filters, managers and groups."""

    def __init__(
        self,
        *,
        tenant: str = "tenant-1",
        client_id: str = "graph-app-id",
        client_secret: str = "graph-s3cret",
        threaded: bool | None = None,
    ) -> None:
        super().__init__(threaded=threaded, tls=LoopbackTLS())
        self.tenant = tenant
        self.client_id = client_id
        self.client_secret = client_secret
        self.access_token = GRAPH_TOKEN
        self.users: dict[str, dict[str, Any]] = {}  # object id -> user JSON
        self.managers: dict[str, str] = {}  # user id -> manager id (a user or a contact)
        # Organisational contacts (someone outside the tenant), which Graph also allows as a
        # manager: answered from /manager with their @odata.type; not users.
        self.contacts: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, set[str]] = {}  # user id -> group ids (transitive)
        self.group_members: dict[str, set[str]] = {}  # group id -> user and group ids (direct)
        self.group_names: dict[str, str] = {}  # group id -> displayName (default: the id)
        # Users per page of a `$filter` answer (None: all on one page); the rest is behind
        # `@odata.nextLink`, as Graph pages any collection. `next_link_base` overrides where
        # the link points (a link off Graph's origin).
        self.page_size: int | None = None
        self.next_link_base: str | None = None
        self._pages: dict[str, list[dict[str, Any]]] = {}
        self._page_numbers = itertools.count(1)

    async def stop(self) -> None:
        await super().stop()
        if self.tls is not None:
            self.tls.cleanup()

    @property
    def ca_file(self) -> str:
        """PEM of the CA that signed the TLS listener (for `ca_bundle`)."""
        assert self.tls is not None
        return self.tls.ca_file

    def add_user(
        self, user_id: str, upn: str, *, manager: str | None = None, **fields: Any
    ) -> None:
        """Add a user; `mail` defaults to the UPN, phones to none, the account is enabled."""
        user: dict[str, Any] = {"id": user_id, "userPrincipalName": upn, "mail": upn}
        user["accountEnabled"] = True
        user["displayName"] = upn
        user |= {"mobilePhone": None, "businessPhones": [], **fields}
        self.users[user_id] = user
        if manager:
            self.managers[user_id] = manager

    def add_group(self, group_id: str, *members: str, name: str | None = None) -> None:
        """A group whose direct members are these users or groups (nesting counts)."""
        self.group_members.setdefault(group_id, set()).update(members)
        if name is not None:
            self.group_names[group_id] = name

    def group_exists(self, group_id: str) -> bool:
        """A group added, or named in a user's `groups` (Graph ids compare case-insensitively)."""
        known = set(self.group_members) | set(self.group_names)
        known |= {g for groups in self.groups.values() for g in groups}
        return group_id.lower() in {g.lower() for g in known}

    def member_of(self, object_id: str) -> set[str]:
        """Every group `object_id` is in, directly or through nested groups (as Graph's
        checkMemberGroups answers), plus what `groups` says outright."""
        found = set(self.groups.get(object_id, set()))
        todo = [object_id]
        while todo:
            current = todo.pop()
            for group, members in self.group_members.items():
                if current in members and group not in found:
                    found.add(group)
                    todo.append(group)
        return found

    def graph_calls(self) -> list[Recorded]:
        """Requests to Graph itself (not the token or discovery endpoints)."""
        return self.calls("/v1.0/*")

    def token_calls(self) -> list[Recorded]:
        """Client-credentials token requests."""
        return self.calls("/*/oauth2/v2.0/token")

    def default_error_body(self, status: int) -> Any:
        return {"error": {"code": "scriptedFailure", "message": f"scripted failure {status}"}}

    async def handle(self, rec: Recorded, request: web.Request) -> web.StreamResponse:
        parts = [unquote(p) for p in rec.raw_path.strip("/").split("/")]
        if len(parts) >= 3 and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
            return self._openid(parts[0])
        if len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"] and rec.method == "POST":
            return self._token(parts[0], rec.form or {})
        if parts[:2] not in (["v1.0", "users"], ["v1.0", "groups"]):
            return _error(404, "UnknownPath")
        if rec.headers.get("Authorization") != f"Bearer {self.access_token}":
            return _error(401, "InvalidAuthenticationToken")
        if parts[1] == "groups":
            return self._group(parts[2:], rec)
        if len(parts) == 2 and rec.method == "GET":
            return self._filter(rec)
        user = self._find(parts[2]) if len(parts) >= 3 else None
        if user is None:
            return _error(404, "Request_ResourceNotFound")
        if len(parts) == 3 and rec.method == "GET":
            return json_response(self._select(user, rec))
        if parts[3:] == ["manager"] and rec.method == "GET":
            manager_id = self.managers.get(user["id"], "")
            manager = self.users.get(manager_id)
            kind = "#microsoft.graph.user"
            if manager is None and manager_id in self.contacts:
                manager, kind = self.contacts[manager_id], "#microsoft.graph.orgContact"
            if manager is None:
                return _error(404, "Request_ResourceNotFound")
            # A directoryObject answer names its type whatever $select says, as Graph does.
            return json_response({"@odata.type": kind, **self._select(manager, rec)})
        if parts[3:] == ["checkMemberGroups"] and rec.method == "POST":
            asked = (rec.json or {}).get("groupIds", [])
            mine = self.member_of(user["id"])
            return json_response({"value": [g for g in asked if g in mine]})
        return _error(400, "BadRequest")

    def _group(self, rest: list[str], rec: Recorded) -> web.Response:
        """GET /groups/{id}: the group's id and displayName; 404 for one the tenant lacks."""
        if len(rest) != 1 or rec.method != "GET":
            return _error(400, "BadRequest")
        group_id = rest[0]
        if not self.group_exists(group_id):
            return _error(404, "Request_ResourceNotFound")
        name = self.group_names.get(group_id, group_id)
        return json_response({"id": group_id, "displayName": name})

    def _openid(self, tenant: str) -> web.Response:
        base = f"{self.https_url}/{tenant}"
        return json_response(
            {
                "issuer": f"{base}/v2.0",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "jwks_uri": f"{base}/discovery/v2.0/keys",
            }
        )

    def _token(self, tenant: str, form: dict[str, str]) -> web.Response:
        if (
            tenant != self.tenant
            or form.get("grant_type") != "client_credentials"
            or form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
        ):
            body = {"error": "invalid_client", "error_description": "AADSTS7000215: bad secret"}
            return json_response(body, status=401)
        token = {"token_type": "Bearer", "access_token": self.access_token, "expires_in": 3600}
        return json_response(token)

    def _find(self, key: str) -> dict[str, Any] | None:
        lowered = key.lower()
        for user in self.users.values():
            if lowered in (user["id"].lower(), str(user["userPrincipalName"]).lower()):
                return user
        return None

    @staticmethod
    def _select(user: dict[str, Any], rec: Recorded) -> dict[str, Any]:
        fields = rec.query.get("$select")
        return {k: v for k, v in user.items() if k in fields.split(",")} if fields else user

    def _filter(self, rec: Recorded) -> web.Response:
        token = rec.query.get("$skiptoken")
        if token is not None:
            if token not in self._pages:
                return _error(400, "BadRequest")
            return self._page(self._pages.pop(token))
        expression = rec.query.get("$filter", "")
        if alias := _ALIAS.fullmatch(expression):
            wanted = alias.group(2).replace("''", "'").lower()
            found = [
                u
                for u in self.users.values()
                if wanted in (str(a).lower() for a in u.get("proxyAddresses") or [])
            ]
            return self._page([self._select(u, rec) for u in found])
        clauses = _equalities(expression)
        if clauses is None or any(p not in ("mail", "userPrincipalName") for p, _ in clauses):
            return _error(400, "BadRequest")
        found = [
            u
            for u in self.users.values()
            if any(str(u.get(p) or "").lower() == value.lower() for p, value in clauses)
        ]
        return self._page([self._select(u, rec) for u in found])

    def _page(self, values: list[dict[str, Any]]) -> web.Response:
        size = self.page_size
        if size is None or len(values) <= size:
            return json_response({"value": values})
        token = f"page{next(self._page_numbers)}"
        self._pages[token] = values[size:]
        base = self.next_link_base or self.https_url
        link = f"{base}/v1.0/users?$skiptoken={token}"
        return json_response({"value": values[:size], "@odata.nextLink": link})
