"""LdapDirectory against ldap3's offline MOCK_SYNC strategy (no server, no network)."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import AsyncIterator, Callable

import pytest

from bot.directory.ldap import LdapDirectory
from handlers.directory import DirectoryAmbiguous, DirectoryError, DirectoryUnavailable

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import ldap3

BASE = "ou=people,dc=example,dc=com"
VIP = "CN=VIPs,OU=Groups,DC=example,DC=com"
TECH = "cn=Helpdesk Techs,ou=Groups,dc=example,dc=com"
BOT_DN, BOT_PASSWORD = "cn=helpdesk-bot,dc=example,dc=com", "bind-pw"


def make_server() -> ldap3.Server:
    """A mock DIT: Ana (manager Bo, VIP), Bo (technician), Cy (no mail), two Dees."""
    server = ldap3.Server("mock-dc")
    conn = ldap3.Connection(server, client_strategy=ldap3.MOCK_SYNC)
    add = conn.strategy.add_entry
    add(BOT_DN, {"objectClass": ["person"], "userPassword": BOT_PASSWORD})
    # The groups memberOf names exist (a server keeps memberOf so): the walk reads them.
    for group in (VIP, TECH, "cn=Other,ou=Groups,dc=example,dc=com"):
        add(group, {"objectClass": ["groupOfNames"], "cn": group.split(",")[0][3:]})
    add(
        f"cn=Ana Lopez,{BASE}",
        {
            "objectClass": ["person", "user"],
            "cn": "Ana Lopez",
            "displayName": "Ana Lopez",
            "mail": "Ana@Example.com",
            "telephoneNumber": "+1 555 0100",
            "mobile": "+1 555 0999",
            "manager": f"CN=Bo Chen,{BASE.upper()}",
            "memberOf": [VIP.lower().replace(",", ", ")],
            "extensionAttribute1": "U0ANA",
        },
    )
    add(
        f"cn=Bo Chen,{BASE}",
        {
            "objectClass": ["person", "user"],
            "cn": "Bo Chen",
            "mail": "bo@example.com",
            "mobile": "+1 555 0200",
            "memberOf": [TECH, "cn=Other,ou=Groups,dc=example,dc=com"],
        },
    )
    add(f"cn=Cy,{BASE}", {"objectClass": ["person"], "cn": "Cy", "manager": f"cn=Gone,{BASE}"})
    add(f"cn=Dee One,{BASE}", {"objectClass": ["person"], "cn": "Dee", "mail": "dee@example.com"})
    add(f"cn=Dee Two,{BASE}", {"objectClass": ["person"], "cn": "Dee", "mail": "dee@example.com"})
    add(
        f"cn=Eve,{BASE}",
        {"objectClass": ["person"], "mail": "eve@example.com", "manager": f"cn=Gone,{BASE}"},
    )
    return server


def connector(server: ldap3.Server, password: str = BOT_PASSWORD) -> Callable[[], ldap3.Connection]:
    """The injected factory: a bound-on-demand MOCK_SYNC connection, counting connects."""

    def connect() -> ldap3.Connection:
        connect.count += 1  # type: ignore[attr-defined]
        return ldap3.Connection(
            server, user=BOT_DN, password=password, client_strategy=ldap3.MOCK_SYNC
        )

    connect.count = 0  # type: ignore[attr-defined]
    return connect


@pytest.fixture
async def directory() -> AsyncIterator[LdapDirectory]:
    d = LdapDirectory(
        connector(make_server()),
        base_dn=BASE,
        vip_group_dn=VIP,
        technician_group_dn=TECH,
        slack_id_attribute="extensionAttribute1",
    )
    yield d
    await d.close()


async def test_find_by_email_maps_attributes(directory: LdapDirectory) -> None:
    ana = await directory.find_by_email("ana@example.COM")
    assert ana is not None
    assert (ana.email, ana.name, ana.phone, ana.slack_id) == (
        "Ana@Example.com",
        "Ana Lopez",
        "+1 555 0100",  # telephoneNumber wins over mobile
        "U0ANA",
    )
    assert ana.vip and not ana.technician
    assert ana.manager_email is None  # LDAP answers managers through manager_of()


async def test_manager_dn_resolves_the_manager(directory: LdapDirectory) -> None:
    ana = await directory.find_by_email("ana@example.com")
    assert ana is not None
    bo = await directory.manager_of(ana)
    assert bo is not None
    assert (bo.email, bo.name, bo.phone) == ("bo@example.com", "Bo Chen", "+1 555 0200")
    assert bo.technician and not bo.vip
    assert await directory.manager_of(bo) is None  # no manager attribute


async def test_manager_dn_that_does_not_exist_is_none(directory: LdapDirectory) -> None:
    eve = await directory.find_by_email("eve@example.com")
    assert eve is not None and eve.name == "Eve" and eve.phone is None  # cn from the RDN
    assert await directory.manager_of(eve) is None


async def test_unknown_is_none(directory: LdapDirectory) -> None:
    assert await directory.find_by_email("nobody@example.com") is None


async def test_ambiguous_is_an_error_not_nobody(directory: LdapDirectory) -> None:
    """Two entries with one mail: not "nobody by that address" (that is: not a VIP)."""
    with pytest.raises(DirectoryAmbiguous, match=r"2 entries have mail dee@example\.com") as e:
        await directory.find_by_email("dee@example.com")
    assert isinstance(e.value, DirectoryUnavailable) and e.value.count == 2


async def test_platform_id_attributes(directory: LdapDirectory) -> None:
    ana = await directory.find_by_platform_id("slack", "U0ANA")
    assert ana is not None and ana.email == "Ana@Example.com"
    assert await directory.find_by_platform_id("slack", "U0NOBODY") is None
    # No Teams id attribute configured: Teams ids are not searched.
    assert await directory.find_by_platform_id("teams", "29:1ana", aad_object_id="x") is None


async def test_filter_injection_is_escaped(directory: LdapDirectory) -> None:
    assert await directory.find_by_email("*") is None
    assert await directory.find_by_platform_id("slack", "*)(mail=*") is None


async def test_has_technicians_follows_config() -> None:
    server = make_server()
    with_group = LdapDirectory(connector(server), base_dn=BASE, technician_group_dn=TECH)
    without = LdapDirectory(connector(server), base_dn=BASE)
    assert await with_group.has_technicians()
    assert not await without.has_technicians()
    bo = await without.find_by_email("bo@example.com")
    assert bo is not None and not bo.technician


async def test_results_are_cached_and_connection_reused() -> None:
    connect = connector(make_server())
    d = LdapDirectory(connect, base_dn=BASE, cache_ttl=300)
    await d.find_by_email("bo@example.com")
    await d.find_by_email("BO@example.com")
    await d.find_by_email("ana@example.com")
    assert connect.count == 1  # type: ignore[attr-defined]
    await d.close()


async def test_bad_bind_raises_directory_error_without_password() -> None:
    d = LdapDirectory(connector(make_server(), password="wrong-pw"), base_dn=BASE)
    with pytest.raises(DirectoryError, match="bind as cn=helpdesk-bot") as caught:
        await d.find_by_email("bo@example.com")
    assert "wrong-pw" not in str(caught.value)
    await d.close()


async def test_from_url_builds_without_connecting() -> None:
    d = LdapDirectory.from_url(
        "ldaps://dc1.example.com", bind_dn=BOT_DN, password="pw", base_dn=BASE
    )
    assert "pw" not in repr(d)
    assert not await d.has_technicians()


async def test_a_vip_group_beyond_the_nesting_depth_is_unavailable_not_no_vip() -> None:
    """Fay's group is nested 11 levels below the VIP group, more than the walk follows: the
    look-up cannot rule out a VIP, so it cannot answer; 10 levels are followed."""
    server = make_server()
    add = ldap3.Connection(server, client_strategy=ldap3.MOCK_SYNC).strategy.add_entry
    chain = [f"cn=Level {i},ou=Groups,dc=example,dc=com" for i in range(12)]
    for inner, outer in itertools.pairwise(chain):
        add(inner, {"objectClass": ["groupOfNames"], "cn": inner[3:10], "memberOf": [outer]})
    for who, first in (("fay", 0), ("gus", 2)):
        add(
            f"cn={who},{BASE}",
            {"objectClass": ["person"], "cn": who, "mail": f"{who}@example.com",
             "memberOf": [chain[first]]},
        )  # fmt: skip
    d = LdapDirectory(connector(server), base_dn=BASE, vip_group_dn=chain[11])
    try:
        with pytest.raises(DirectoryUnavailable, match=r"fay@example\.com .* VIP"):
            await d.find_by_email("fay@example.com")
        gus = await d.find_by_email("gus@example.com")
        assert gus is not None and gus.vip
    finally:
        await d.close()
