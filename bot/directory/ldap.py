"""People from Active Directory / LDAP through ldap3 (synchronous, so run in a worker thread).

Group membership (VIP, technician) is read from the user's `memberOf`, i.e. direct
membership only. `manager_email` stays None on LDAP people: use `manager_of()`, which
follows the `manager` DN.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

with warnings.catch_warnings():
    # ldap3 2.9 touches names pyasn1 has deprecated; nothing we can change, only silence.
    warnings.simplefilter("ignore", DeprecationWarning)
    import ldap3
    from ldap3.core.exceptions import LDAPException
    from ldap3.utils.conv import escape_filter_chars
    from ldap3.utils.dn import parse_dn

from bot.directory.cache import TtlCache
from handlers.directory import DirectoryError, Person

log = logging.getLogger(__name__)

_BASE_ATTRIBUTES = ("mail", "displayName", "cn", "telephoneNumber", "mobile", "manager", "memberOf")
_OK_RESULTS = {0, 4, 32}  # success, sizeLimitExceeded (ambiguous), noSuchObject


def _values(attrs: dict[str, Any], name: str) -> list[str]:
    raw = attrs.get(name)
    items = raw if isinstance(raw, list | tuple) else [] if raw is None else [raw]
    out = []
    for item in items:
        text = item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
        if text.strip():
            out.append(text.strip())
    return out


def _first(attrs: dict[str, Any], *names: str) -> str | None:
    for name in names:
        values = _values(attrs, name)
        if values:
            return values[0]
    return None


def _norm_dn(dn: str) -> str:
    """Compare DNs case- and spacing-insensitively."""
    try:
        return ",".join(f"{a.strip().lower()}={v.strip().lower()}" for a, v, _ in parse_dn(dn))
    except Exception:  # not RFC 4514 (e.g. spaces after commas): compare loosely
        return re.sub(r"\s*([,=+])\s*", r"\1", dn.strip().lower())


class LdapDirectory:
    """Directory backed by LDAP entries with mail, manager DN, phone and memberOf."""

    def __init__(
        self,
        connect: Callable[[], ldap3.Connection],
        *,
        base_dn: str,
        vip_group_dn: str | None = None,
        technician_group_dn: str | None = None,
        slack_id_attribute: str | None = None,
        teams_id_attribute: str | None = None,
        cache_ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connect = connect
        self._base_dn = base_dn
        self._vip = _norm_dn(vip_group_dn) if vip_group_dn else None
        self._tech = _norm_dn(technician_group_dn) if technician_group_dn else None
        self._slack_attr = slack_id_attribute
        self._teams_attr = teams_id_attribute
        extra = [a for a in (slack_id_attribute, teams_id_attribute) if a]
        self._attributes = [*_BASE_ATTRIBUTES, *extra]
        self._cache: TtlCache[Person | None] = TtlCache(cache_ttl, clock=clock)
        self._conn: ldap3.Connection | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        bind_dn: str | None,
        password: str | None,
        base_dn: str,
        timeout: float = 10.0,
        **options: Any,
    ) -> LdapDirectory:
        """A directory that binds to `url` as `bind_dn` (anonymously when None)."""
        server = ldap3.Server(url, get_info=ldap3.NONE, connect_timeout=timeout)

        def connect() -> ldap3.Connection:
            return ldap3.Connection(
                server, user=bind_dn, password=password, read_only=True, receive_timeout=timeout
            )

        return cls(connect, base_dn=base_dn, **options)

    def __repr__(self) -> str:
        return f"LdapDirectory(base_dn={self._base_dn!r})"

    # --- LDAP, in a worker thread ------------------------------------------------------

    def _connection(self) -> ldap3.Connection:
        if self._conn is None or self._conn.closed:
            conn = self._connect()
            if not conn.bound and not conn.bind():
                reason = (conn.result or {}).get("description", "refused")
                who = conn.user or "anonymous"
                raise DirectoryError(f"directory.ldap: bind as {who} failed: {reason}")
            self._conn = conn
        return self._conn

    def _search_once(self, base: str, query: str, scope: str) -> list[dict[str, Any]]:
        conn = self._connection()
        conn.search(base, query, scope, attributes=self._attributes, size_limit=2)
        code = (conn.result or {}).get("result", 0)
        if code not in _OK_RESULTS:
            reason = (conn.result or {}).get("description", code)
            raise DirectoryError(f"directory.ldap: search {query} under {base} failed: {reason}")
        return [e for e in conn.response or [] if e.get("type") == "searchResEntry"]

    def _search_sync(self, base: str, query: str, scope: str) -> list[dict[str, Any]]:
        with self._lock:
            for attempt in (1, 2):
                try:
                    return self._search_once(base, query, scope)
                except LDAPException as exc:  # dropped connection: reconnect once
                    self._drop()
                    if attempt == 2:
                        log.warning("LDAP search failed: %s", type(exc).__name__)
                        raise DirectoryError(
                            f"directory.ldap: search failed: {type(exc).__name__}: {exc}"
                        ) from None
        return []  # pragma: no cover

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.unbind()
            except LDAPException:
                pass

    async def _search(
        self, base: str, query: str, *, scope: str = ldap3.SUBTREE
    ) -> tuple[Person | None, str | None]:
        """The one matching person and their manager DN; (None, None) if none or ambiguous."""
        entries = await asyncio.to_thread(self._search_sync, base, query, scope)
        if len(entries) > 1:
            log.warning("LDAP: %s matches several entries; treating as not found", query)
            return None, None
        if not entries:
            return None, None
        attrs = entries[0].get("attributes") or {}
        return self._to_person(attrs), _first(attrs, "manager")

    # --- mapping -----------------------------------------------------------------------

    def _to_person(self, attrs: dict[str, Any]) -> Person | None:
        email = _first(attrs, "mail")
        if not email:
            return None
        groups = {_norm_dn(g) for g in _values(attrs, "memberOf")}
        return Person(
            email=email,
            name=_first(attrs, "displayName", "cn") or "",
            slack_id=_first(attrs, self._slack_attr) if self._slack_attr else None,
            teams_id=_first(attrs, self._teams_attr) if self._teams_attr else None,
            phone=_first(attrs, "telephoneNumber", "mobile"),
            vip=self._vip in groups,
            technician=self._tech in groups,
        )

    async def _cached(self, key: tuple[str, str], query: str) -> Person | None:
        hit, cached = self._cache.get(key)
        if hit:
            return cached
        person, _ = await self._search(self._base_dn, query)
        self._cache.put(key, person)
        return person

    # --- Directory ---------------------------------------------------------------------

    async def find_by_platform_id(
        self, platform: str, user_id: str, *, aad_object_id: str | None = None
    ) -> Person | None:
        """By the configured Slack/Teams id attribute; None when none is configured."""
        attribute = {"slack": self._slack_attr, "teams": self._teams_attr}.get(platform)
        if not attribute or not user_id:
            return None
        query = f"({attribute}={escape_filter_chars(user_id)})"
        return await self._cached((platform, user_id), query)

    async def find_by_email(self, email: str) -> Person | None:
        """The entry whose `mail` is `email` (case-insensitive)."""
        key = email.strip().lower()
        if not key:
            return None
        return await self._cached(("email", key), f"(mail={escape_filter_chars(key)})")

    async def manager_of(self, person: Person) -> Person | None:
        """The entry named by the person's `manager` DN, None when there is none."""
        key = person.email.strip().lower()
        hit, cached = self._cache.get(("manager", key))
        if hit:
            return cached
        _, dn = await self._search(self._base_dn, f"(mail={escape_filter_chars(key)})")
        manager = None
        if dn:
            manager, _ = await self._search(dn, "(objectClass=*)", scope=ldap3.BASE)
        self._cache.put(("manager", key), manager)
        return manager

    async def has_technicians(self) -> bool:
        """True when a technician group is configured."""
        return self._tech is not None

    async def close(self) -> None:
        """Unbind the connection."""
        await asyncio.to_thread(self._close_sync)

    def _close_sync(self) -> None:
        with self._lock:
            self._drop()
