"""People from Active Directory or any LDAPv3 server (SPEC "Directory file", `ldap`).

ldap3 is synchronous, so every look-up runs on one worker thread of this directory's own (one
connection, used by one thread at a time) and the event loop only waits for it, within a time
limit. A connection the server dropped is reopened once per operation; a server that cannot be
reached, refuses the bot's bind or does not answer in time is a `DirectoryUnavailable`.

VIP and technician are transitive group memberships: a person's `memberOf` groups, their
groups' `memberOf`, and so on (AD fills `memberOf` itself; OpenLDAP with the memberof overlay).
The person's own `memberOf` is checked first; a walk cut short (too many groups or levels)
before it reached the VIP group is a `DirectoryUnavailable`: a VIP cannot be ruled out.
`manager_email` stays None on LDAP people: `manager_of()` follows the `manager` DN.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import ssl
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

with warnings.catch_warnings():
    # ldap3 2.9 touches names pyasn1 has deprecated; nothing we can change, only silence.
    warnings.simplefilter("ignore", DeprecationWarning)
    import ldap3
    from ldap3.core.exceptions import LDAPCommunicationError, LDAPException
    from ldap3.utils.conv import escape_filter_chars
    from ldap3.utils.dn import parse_dn

from bot.directory.cache import TtlCache
from bot.directory.deadline import directory_call, time_left
from handlers.directory import DirectoryAmbiguous, DirectoryUnavailable, Person, address_key

log = logging.getLogger(__name__)
T = TypeVar("T")

SOURCE = "LDAP"
_BASE_ATTRIBUTES = (
    "mail",
    "displayName",
    "cn",
    "telephoneNumber",
    "mobile",
    "manager",
    "memberOf",
    "userAccountControl",  # Active Directory's
    "accountExpires",  # Active Directory's: when the account stops working (leavers)
    "pwdAccountLockedTime",  # OpenLDAP's (ppolicy overlay); operational: asked by name
)
_ACCOUNTDISABLE = 0x2  # userAccountControl flag
# pwdAccountLockedTime of an account its administrator locked for good (slapo-ppolicy(5));
# any other value is a lockout after failed binds, which lifts (as AD's, not "disabled").
_LOCKED_FOR_GOOD = "000001010000Z"
_NEVER_EXPIRES = 0x7FFFFFFFFFFFFFFF  # accountExpires: never (as is 0)
_EPOCH_1601 = 11_644_473_600  # seconds from 1601-01-01 to 1970-01-01 (FILETIME to Unix)
_SIZE_LIMIT_EXCEEDED = 4
_NO_SUCH_OBJECT = 32
_OK_RESULTS = {0, _SIZE_LIMIT_EXCEEDED, _NO_SUCH_OBJECT}  # success, sizeLimitExceeded (ambiguous)
_MAX_SAME = 10  # entries read for one look-up (more than one is ambiguous)
# How far up nested groups are followed, and how many groups at most (cycles are cut too);
# a person whose groups go past either is not known not to be a VIP.
_MAX_DEPTH, _MAX_GROUPS = 10, 500
CONNECT_TIMEOUT = 5.0
RECEIVE_TIMEOUT = 10  # seconds; ldap3 packs it into SO_RCVTIMEO with struct 'LL': an int
LOOKUP_TIMEOUT = 12.0  # one look-up, group walk included, reconnect included


def _values(attrs: dict[str, Any], name: str) -> list[str]:
    raw = attrs.get(name.lower())
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


def _expired(attrs: dict[str, Any]) -> bool:
    """AD's accountExpires (100 ns intervals since 1601 UTC; 0 or the largest value: never)
    has passed: the account no longer signs in, as with a leaver whose end date was set
    rather than their account disabled."""
    value = _first(attrs, "accountExpires")
    try:
        ticks = int(value) if value is not None else 0
    except ValueError:
        return False
    if ticks <= 0 or ticks >= _NEVER_EXPIRES:
        return False
    return ticks / 10_000_000 - _EPOCH_1601 <= time.time()


def _disabled(attrs: dict[str, Any]) -> bool:
    """AD's ACCOUNTDISABLE flag is set in userAccountControl (a decimal integer) or its
    accountExpires has passed, or an OpenLDAP administrator has locked the account for good
    (pwdAccountLockedTime)."""
    if _LOCKED_FOR_GOOD in (v.upper() for v in _values(attrs, "pwdAccountLockedTime")):
        return True
    if _expired(attrs):
        return True
    value = _first(attrs, "userAccountControl")
    try:
        return value is not None and bool(int(value) & _ACCOUNTDISABLE)
    except ValueError:
        return False


def _tidy_dn(dn: str) -> str:
    """`cn=A, ou=B` -> `cn=A,ou=B`: some servers write DN values with spaces after the commas,
    which ldap3 refuses as a search base."""
    return re.sub(r"(?<!\\)\s*,\s*", ",", dn.strip())


_DN_ESCAPE = re.compile(r"\\([0-9A-Fa-f]{2})|\\(.)", re.DOTALL)


def _dn_value(value: str) -> str:
    """An attribute value of a DN as the characters it stands for, lower-cased: RFC 4514
    lets a special character be escaped as itself or as hex, and servers differ (Active
    Directory writes `CN=Smith\\, John`, OpenLDAP `cn=Smith\\2C John`); both are one DN."""
    value = re.sub(r"^\s+|(?<!\\)\s+$", "", value)
    out = bytearray()
    pos = 0
    for match in _DN_ESCAPE.finditer(value):
        out += value[pos : match.start()].encode()
        out += bytes([int(match[1], 16)]) if match[1] else match[2].encode()
        pos = match.end()
    out += value[pos:].encode()
    text = out.decode("utf-8", "replace").lower()
    # One escape for what would read as structure, so no value can pass for more RDNs.
    return re.sub(r'[\\,+=;<>"#]', lambda m: f"\\{ord(m[0]):02x}", text)


def norm_dn(dn: str) -> str:
    """Compare DNs case- and spacing-insensitively, and however their values are escaped."""
    try:
        parts = parse_dn(_tidy_dn(dn))
    except Exception:  # not RFC 4514: compare loosely
        return re.sub(r"\s*([,=+])\s*", r"\1", dn.strip().lower())
    return "".join(f"{a.strip().lower()}={_dn_value(v)}{sep}" for a, v, sep in parts)


class VerifiedTls(ldap3.Tls):  # type: ignore[misc]
    """ldaps:// with the certificate and host name checked by the standard library (ldap3's
    own host name check calls `ssl.match_hostname`, deprecated and gone in Python 3.12)."""

    def __init__(self, ca_bundle: str | None = None) -> None:
        super().__init__(validate=ssl.CERT_REQUIRED, ca_certs_file=ca_bundle)

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        context = ssl.create_default_context(cafile=self.ca_certs_file)
        connection.socket = context.wrap_socket(
            connection.socket,
            server_side=False,
            do_handshake_on_connect=do_handshake,
            server_hostname=connection.server.host,
        )


@dataclass(frozen=True)
class _Found:
    """One directory entry: the person it describes (None without mail) and its manager DNs
    (one, normally; `manager` may hold several on servers other than AD); `until`: when the
    earliest cached group answer it was built from expires (it is cached no longer than
    that)."""

    dn: str
    person: Person | None
    managers: tuple[str, ...] = ()
    until: float = math.inf

    def manager_dn(self) -> str | None:
        """The DN of the one manager on file, None with none; DirectoryAmbiguous when the
        entry names several (which of them vouches for this person is not known: asking
        either could be asking the wrong one)."""
        if len(self.managers) > 1:
            email = self.person.email if self.person else self.dn
            log.warning("LDAP: %s has %d manager DNs; cannot tell which", email, len(self.managers))
            raise DirectoryAmbiguous(SOURCE, f"the role of manager of {email}", len(self.managers))
        return self.managers[0] if self.managers else None


class LdapDirectory:
    """Directory backed by LDAP entries with mail, manager DN, phone, chat ids and memberOf."""

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
        lookup_timeout: float = LOOKUP_TIMEOUT,
        where: str = "the LDAP server",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connect = connect
        self._base_dn = base_dn
        self._vip = norm_dn(vip_group_dn) if vip_group_dn else None
        self._tech = norm_dn(technician_group_dn) if technician_group_dn else None
        self._slack_attr = slack_id_attribute
        self._teams_attr = teams_id_attribute
        extra = [a for a in (slack_id_attribute, teams_id_attribute) if a]
        self._attributes = [*_BASE_ATTRIBUTES, *extra]
        self._lookup_timeout = lookup_timeout
        self._where = where
        self._cache: TtlCache[_Found | None] = TtlCache(cache_ttl, clock=clock)
        # Group DN (normalised) -> (its own DN as written, the DNs of the groups it is in).
        self._parents: TtlCache[list[str]] = TtlCache(cache_ttl, clock=clock)
        self._conn: ldap3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ldap")

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        bind_dn: str | None,
        password: str | None,
        base_dn: str,
        ca_bundle: str | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        receive_timeout: float = RECEIVE_TIMEOUT,
        **options: Any,
    ) -> LdapDirectory:
        """A directory that binds to `url` as `bind_dn` (anonymously when None)."""
        tls = VerifiedTls(ca_bundle) if url.lower().startswith("ldaps:") else None

        def connect() -> ldap3.Connection:
            # A new Server each time: ldap3 marks an address it failed to reach as unusable
            # for minutes ("invalid server address"), even once the server is back.
            server = ldap3.Server(
                url, get_info=ldap3.NONE, connect_timeout=connect_timeout, tls=tls
            )
            return ldap3.Connection(
                server,
                user=bind_dn,
                password=password,
                read_only=True,
                auto_referrals=False,
                receive_timeout=max(1, math.ceil(receive_timeout)),
            )

        return cls(connect, base_dn=base_dn, where=url, **options)

    def __repr__(self) -> str:
        return f"LdapDirectory({self._where!r}, base_dn={self._base_dn!r})"

    # --- LDAP, on the directory's own thread -------------------------------------------

    def _unavailable(self, detail: str) -> DirectoryUnavailable:
        log.warning("LDAP at %s: %s", self._where, detail)
        return DirectoryUnavailable(SOURCE, detail)

    def _connection(self) -> ldap3.Connection:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        conn = self._connect()
        try:
            bound = conn.bound or conn.bind()
        except LDAPException:
            self._close(conn)  # e.g. no answer to the bind: its socket is still open
            raise
        if not bound:
            reason = (conn.result or {}).get("description", "refused")
            who = conn.user or "anonymous"
            self._close(conn)
            raise self._unavailable(f"bind as {who} refused: {reason}")
        self._conn = conn
        return conn

    def _search(self, base: str, query: str, scope: str, attributes: list[str], size: int) -> Any:
        """Entries found; one reconnect when the connection turns out to be dead."""
        return self._search_all(base, query, scope, attributes, size)[0]

    def _search_all(
        self,
        base: str,
        query: str,
        scope: str,
        attributes: list[str],
        size: int,
        *,
        base_must_exist: bool = False,
    ) -> tuple[list[dict[str, Any]], bool]:
        """Entries found, and whether more matched than came back (sizeLimitExceeded: our
        own `size`, or a smaller limit the server sets for the bot). With `base_must_exist`,
        a `base` the server does not have is a DirectoryUnavailable, not "nobody there"."""
        for attempt in (1, 2):
            try:
                conn = self._connection()
                conn.search(_tidy_dn(base), query, scope, attributes=attributes, size_limit=size)
            except LDAPCommunicationError as exc:
                self._drop()
                if attempt == 2:
                    raise self._unavailable(f"{type(exc).__name__}: {exc}") from None
                log.info("LDAP connection lost (%s); reconnecting", type(exc).__name__)
                continue
            except LDAPException as exc:
                self._drop()
                raise self._unavailable(f"{type(exc).__name__}: {exc}") from None
            code = (conn.result or {}).get("result", 0)
            if code == _NO_SUCH_OBJECT and base_must_exist:
                raise self._unavailable(f"the search base {base} does not exist on the server")
            if code not in _OK_RESULTS:
                reason = (conn.result or {}).get("description", code)
                raise self._unavailable(f"search {query} under {base} failed: {reason}")
            entries = [e for e in conn.response or [] if e.get("type") == "searchResEntry"]
            return entries, code == _SIZE_LIMIT_EXCEEDED
        return [], False  # pragma: no cover

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._close(conn)

    @staticmethod
    def _close(conn: ldap3.Connection) -> None:
        try:
            conn.unbind()
        except (LDAPException, OSError):
            pass
        # unbind() leaves the socket open when it cannot send (a dead or silent server).
        sock = getattr(conn, "socket", None)
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def _one(self, query: str, what: str) -> _Found | None:
        """The one entry under base_dn matching `query`, None if none; DirectoryAmbiguous if
        several (`what` names the look-up in the error: "mail ana@example.com"). A base_dn
        the server does not have (a typo, an OU renamed since) finds nobody at all, which
        must not read as "not a VIP": DirectoryUnavailable."""
        entries, more = self._search_all(
            self._base_dn, query, ldap3.SUBTREE, self._attributes, _MAX_SAME, base_must_exist=True
        )
        if more and not entries:
            # The server's size limit for the bot is 0: whether anyone matched is not known.
            raise self._unavailable(f"search for {what} hit the server's size limit")
        if len(entries) > 1 or more:
            # sizeLimitExceeded: more entries matched than came back (a server limit below
            # ours can return just one): the one that came back is not "the" entry.
            count = len(entries) + (1 if more else 0)
            shown = f"{count} or more" if more else str(count)
            log.warning("LDAP: %s entries have %s; the look-up cannot answer", shown, what)
            raise DirectoryAmbiguous(
                SOURCE, what, count, entries="or more entries" if more else "entries"
            )
        return self._found(entries[0]) if entries else None

    def _by_address(self, email: str) -> _Found | None:
        """The entry whose `mail` is `email`, else the one with it among its other e-mail
        addresses (Active Directory's `proxyAddresses`, `smtp:` for an alias; a server whose
        schema has no such attribute simply matches nothing there)."""
        found = self._one(_by_mail(email), f"mail {email}")
        if found is not None:
            return found
        return self._one(_by_alias(email), f"e-mail alias {email}")

    def _read(self, dn: str) -> _Found | None:
        """The entry at `dn` itself (None when it does not exist)."""
        entries = self._search(dn, "(objectClass=*)", ldap3.BASE, self._attributes, 1)
        return self._found(entries[0]) if entries else None

    def _found(self, entry: dict[str, Any]) -> _Found:
        attrs = {str(k).lower(): v for k, v in (entry.get("attributes") or {}).items()}
        dn = str(entry.get("dn") or "")
        person, until = self._to_person(attrs)
        managers: dict[str, str] = {}
        for manager in _values(attrs, "manager"):
            managers.setdefault(norm_dn(manager), manager)
        return _Found(dn=dn, person=person, managers=tuple(managers.values()), until=until)

    def _groups_above(self, group_dn: str) -> tuple[list[str] | None, float]:
        """DNs of the groups `group_dn` is itself a member of (cached), and when that answer
        expires from the cache; None when the group cannot be read (a memberOf value names
        it, so it exists: an ACL hides it from the bot), which is not "in no group"."""
        key = norm_dn(group_dn)
        hit, cached, until = self._parents.get_until(key)
        if hit and cached is not None:
            return cached, until
        entries = self._search(group_dn, "(objectClass=*)", ldap3.BASE, ["memberOf"], 1)
        if not entries:
            return None, math.inf
        attrs = {str(k).lower(): v for k, v in (entries[0].get("attributes") or {}).items()}
        parents = _values(attrs, "memberOf")
        self._parents.put(key, parents)
        return parents, self._parents.expiry()

    def _memberships(self, direct: list[str]) -> tuple[set[str], bool, float, list[str]]:
        """Every group (normalised DN) reached from the direct groups through nesting,
        whether the walk saw them all (False when it stopped at `_MAX_GROUPS` groups or
        `_MAX_DEPTH` levels with groups left to look at, or met a group it cannot read),
        when the earliest cached answer it used expires, and the groups it could not read;
        stops as soon as the VIP and technician groups are both found."""
        wanted = {g for g in (self._vip, self._tech) if g}
        seen: set[str] = set()
        unread: list[str] = []
        until = math.inf
        level = direct
        for _ in range(_MAX_DEPTH):
            upper: list[str] = []
            for dn in level:
                key = norm_dn(dn)
                if key in seen:
                    continue
                if len(seen) >= _MAX_GROUPS:
                    return seen, False, until, unread
                seen.add(key)
                if wanted <= seen:
                    return seen, True, until, unread
                parents, fresh_until = self._groups_above(dn)
                if parents is None:
                    unread.append(dn)
                    continue
                upper.extend(parents)
                until = min(until, fresh_until)
            if not upper:
                return seen, not unread, until, unread
            level = upper
        complete = not unread and all(norm_dn(dn) in seen for dn in level)
        return seen, complete, until, unread

    def _groups_of(self, email: str, direct: list[str]) -> tuple[set[str], float]:
        """The configured VIP and technician groups the person is in (normalised DNs): their
        own memberOf first, then the groups above. A walk cut short before it found the VIP
        group cannot rule out a VIP: DirectoryUnavailable (the intake gates). A technician
        group not found by then is not counted (the person gets no technician rights). With
        them, when the earliest cached group answer used expires."""
        wanted = {g for g in (self._vip, self._tech) if g}
        own = {norm_dn(dn) for dn in direct} & wanted
        if own == wanted:
            return own, math.inf
        groups, complete, until, unread = self._memberships(direct)
        found = own | (groups & wanted)
        if complete or found == wanted:
            return found, until
        cut = (
            f"group {unread[0]}, which the bot may not read,"
            if unread
            else f"{_MAX_GROUPS} groups or {_MAX_DEPTH} levels"
        )
        if self._vip and self._vip not in found:
            log.warning(
                "LDAP: group walk for %s stopped at %s without reaching the VIP group; "
                "treated as unavailable (a VIP cannot be ruled out)",
                email,
                cut,
            )
            detail = (
                f"{email} is in {cut} so whether they are a VIP is not known"
                if unread
                else f"{email} is in more than {cut} of nested groups; "
                "whether they are a VIP is not known"
            )
            raise DirectoryUnavailable(SOURCE, detail)
        log.warning(
            "LDAP: group walk for %s stopped at %s without reaching the technician group; "
            "not counted as a technician",
            email,
            cut,
        )
        return found, until

    def _to_person(self, attrs: dict[str, Any]) -> tuple[Person | None, float]:
        """The person (None without mail), and when the group answers used expire."""
        email = _first(attrs, "mail")
        if not email:
            return None, math.inf
        direct = _values(attrs, "memberOf")
        groups: set[str] = set()
        until = math.inf
        if (self._vip or self._tech) and direct:
            groups, until = self._groups_of(email, direct)
        person = Person(
            email=email,
            name=_first(attrs, "displayName", "cn") or "",
            slack_id=_first(attrs, self._slack_attr) if self._slack_attr else None,
            teams_id=_first(attrs, self._teams_attr) if self._teams_attr else None,
            phone=_first(attrs, "telephoneNumber", "mobile"),
            vip=self._vip in groups,
            technician=self._tech in groups,
            disabled=_disabled(attrs),
        )
        return person, until

    def _manager_sync(self, email: str) -> _Found | None:
        found = self._one(_by_mail(email), f"mail {email}")
        manager_dn = found.manager_dn() if found else None
        return self._read(manager_dn) if manager_dn else None

    # --- async side --------------------------------------------------------------------

    async def _run(self, work: Callable[..., T], *args: Any) -> T:
        with directory_call():
            return await self._run_in_turn(work, *args)

    async def _run_in_turn(self, work: Callable[..., T], *args: Any) -> T:
        budget = time_left(self._lookup_timeout)
        if budget <= 0:
            raise self._unavailable("no time left to ask")
        job = asyncio.get_running_loop().run_in_executor(self._thread, work, *args)
        try:
            return await asyncio.wait_for(job, budget)
        except TimeoutError:
            raise self._unavailable(f"no answer within {budget:.0f} s") from None

    async def _cached(
        self, key: tuple[str, str], work: Callable[[], _Found | None], *, until: float = math.inf
    ) -> _Found | None:
        """From the cache, else `work`'s answer, cached for cache_ttl but no later than
        `until` (what it was derived from expires) or the group answers it was built from."""
        hit, cached = self._cache.get(key)
        if hit:
            return cached
        found = await self._run(work)
        if found is not None:
            until = min(until, found.until)
        # Only under the key asked: an entry found by chat id (or as someone's manager) is
        # not "the" entry for its mail, which another entry may carry too (ambiguous).
        self._cache.put(key, found, until=until)
        return found

    async def find_by_platform_id(
        self, platform: str, user_id: str, *, aad_object_id: str | None = None
    ) -> Person | None:
        """By the configured Slack/Teams id attribute; None when none is configured."""
        attribute = {"slack": self._slack_attr, "teams": self._teams_attr}.get(platform)
        if not attribute or not user_id:
            return None
        query = f"(&(objectClass=person)({attribute}={escape_filter_chars(user_id)}))"
        found = await self._cached(
            (platform, user_id), lambda: self._one(query, f"{attribute} {user_id}")
        )
        return found.person if found else None

    async def find_by_email(self, email: str) -> Person | None:
        """The entry whose `mail` is `email` (case-insensitive)."""
        key = address_key(email)
        if not key:
            return None
        found = await self._cached(("email", key), lambda: self._by_address(key))
        return found.person if found else None

    async def manager_of(self, person: Person) -> Person | None:
        """The entry named by the person's `manager` DN, None when there is none."""
        key = person.email.strip().lower()
        if not key:
            return None
        # A manager named by the cached entry expires with it: a manager change is seen
        # cache_ttl after the entry was read, not up to twice that.
        hit, cached, until = self._cache.get_until(("email", key))
        if hit and cached is not None:
            manager_dn = cached.manager_dn()
            work: Callable[[], _Found | None] = (
                (lambda: self._read(manager_dn)) if manager_dn else (lambda: None)
            )
        else:
            work, until = (lambda: self._manager_sync(key)), math.inf
        found = await self._cached(("manager", key), work, until=until)
        return found.person if found else None

    async def has_technicians(self) -> bool:
        """True when a technician group is configured."""
        return self._tech is not None

    async def close(self) -> None:
        """Unbind the connection and stop the worker thread."""
        try:
            await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(self._thread, self._drop), 5.0
            )
        except TimeoutError:
            log.warning("LDAP: connection still busy at shutdown; left to time out")
        self._thread.shutdown(wait=False)


def _by_mail(email: str) -> str:
    return f"(&(objectClass=person)(mail={escape_filter_chars(email)}))"


def _by_alias(email: str) -> str:
    # AD matches proxyAddresses case-insensitively: `smtp:` also finds the primary `SMTP:`.
    return f"(&(objectClass=person)(proxyAddresses={escape_filter_chars('smtp:' + email)}))"
