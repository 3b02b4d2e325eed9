"""LdapDirectory against a real OpenLDAP slapd (ldap3 over TCP; nothing mocked)."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from bot.directory.factory import create_directory
from bot.directory.ldap import LdapDirectory
from handlers.config import DirectoryConfig
from handlers.directory import DirectoryAmbiguous, DirectoryUnavailable, Person
from tests.directory_people import (
    ANA,
    BO,
    BOT_DN,
    BOT_PASSWORD,
    CY,
    GROUPS_OU,
    PAT,
    PEOPLE_OU,
    TECH_GROUP_DN,
    TOM,
    VIC,
    VIP_GROUP_DN,
    ldap_directory,
    start_slapd,
)
from tests.ldap_server import SUFFIX, Slapd, require_slapd


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def shared_slapd() -> Iterator[Slapd]:
    """One server for the tests that only read."""
    require_slapd()
    server = start_slapd()
    yield server
    server.cleanup()


@pytest.fixture
def own_slapd() -> Iterator[Slapd]:
    """A server of the test's own, which it may stop and start."""
    require_slapd()
    server = start_slapd()
    yield server
    server.cleanup()


def directory_on(server: Slapd, url: str | None = None, **options: object) -> LdapDirectory:
    defaults: dict[str, object] = {
        "bind_dn": BOT_DN,
        "password": BOT_PASSWORD,
        "base_dn": SUFFIX,
        "vip_group_dn": VIP_GROUP_DN.upper(),
        "technician_group_dn": TECH_GROUP_DN.lower(),
        "slack_id_attribute": "extensionAttribute1",
        "teams_id_attribute": "extensionAttribute2",
    }
    return LdapDirectory.from_url(url or server.url, **{**defaults, **options})  # type: ignore[arg-type]


@pytest.fixture
async def directory(shared_slapd: Slapd) -> AsyncIterator[LdapDirectory]:
    d = directory_on(shared_slapd)
    yield d
    await d.close()


async def test_person_fields_from_the_entry(directory: LdapDirectory) -> None:
    ana = await directory.find_by_email("ANA@example.com")
    assert ana == Person(
        email=ANA.email,
        name="Ana Lopez",
        slack_id="U0ANA",
        teams_id="29:1ana",
        phone="+1 555 0100",  # telephoneNumber before mobile
    )
    cy = await directory.find_by_email(CY.email)
    assert cy is not None and cy.phone == "+1 555 0199"  # only a mobile


async def test_manager_follows_the_manager_dn(directory: LdapDirectory) -> None:
    ana = await directory.find_by_email(ANA.email)
    assert ana is not None
    bo = await directory.manager_of(ana)
    assert bo is not None and (bo.email, bo.name, bo.slack_id) == (BO.email, "Bo Boss", "U0BO")
    assert await directory.manager_of(bo) is None
    cy = await directory.find_by_email(CY.email)
    assert cy is not None and await directory.manager_of(cy) is None


async def test_vip_and_technician_through_nested_groups(directory: LdapDirectory) -> None:
    """Vic is in Execs (in VIPs), Tom in Tier 1 (in Helpdesk Techs); the configured DNs are in
    another case than the entries."""
    vic, tom, pat = [await directory.find_by_email(p.email) for p in (VIC, TOM, PAT)]
    assert vic is not None and vic.vip and not vic.technician
    assert tom is not None and tom.technician and not tom.vip
    assert pat is not None and not pat.vip and not pat.technician
    assert await directory.has_technicians()


async def test_chat_ids_from_the_configured_attributes(directory: LdapDirectory) -> None:
    by_slack = await directory.find_by_platform_id("slack", "U0VIC")
    by_teams = await directory.find_by_platform_id("teams", "29:1tech")
    assert by_slack is not None and by_slack.email == VIC.email
    assert by_teams is not None and by_teams.email == TOM.email and by_teams.technician
    assert await directory.find_by_platform_id("slack", "U0NOBODY") is None
    assert await directory.find_by_platform_id("slack", "*") is None  # filter escaped


async def test_typed_filter_characters_match_only_themselves(directory: LdapDirectory) -> None:
    """Typed `*`, `(`, `)`, `\\` and NUL are escaped in the mail filter (RFC 4515): a pattern
    never resolves Ana, nor everyone (the real server evaluates what would be injected)."""
    for typed in (
        f"{ANA.email[:-1]}*",
        "*",
        "*)(mail=*",
        f"{ANA.email})(|(mail=*",
        f"{ANA.email}\\",
        f"{ANA.email}\x00",
        f"{ANA.email}\\2a",
    ):
        assert await directory.find_by_email(typed) is None, typed


async def test_the_bot_must_bind(shared_slapd: Slapd) -> None:
    anonymous = directory_on(shared_slapd, bind_dn=None, password=None)
    wrong = directory_on(shared_slapd, password="not-the-password")
    try:
        # Anonymous clients may read nothing on this server: slapd answers noSuchObject for
        # the search base, which is no directory to ask, not "nobody has that mail".
        with pytest.raises(DirectoryUnavailable, match="search base dc=example,dc=com"):
            await anonymous.find_by_email(ANA.email)
        with pytest.raises(DirectoryUnavailable, match="bind as cn=helpdesk-bot") as refused:
            await wrong.find_by_email(ANA.email)
        assert "not-the-password" not in str(refused.value)
        assert refused.value.source == "LDAP"
    finally:
        await anonymous.close()
        await wrong.close()


async def test_a_dropped_connection_is_reopened(own_slapd: Slapd) -> None:
    d = directory_on(own_slapd, cache_ttl=0)
    try:
        assert await d.find_by_email(ANA.email) is not None
        own_slapd.stop()  # the bot's open connection dies with the server
        own_slapd.start()
        bo = await d.find_by_email(BO.email)
        assert bo is not None and bo.name == "Bo Boss"
    finally:
        await d.close()


async def test_server_down_is_unavailable_and_back_works(own_slapd: Slapd) -> None:
    d = directory_on(own_slapd, cache_ttl=0)
    try:
        assert await d.find_by_email(ANA.email) is not None
        own_slapd.stop()
        started = time.monotonic()
        with pytest.raises(DirectoryUnavailable) as down:
            await d.find_by_email(ANA.email)
        assert time.monotonic() - started < 5
        assert down.value.source == "LDAP"
        own_slapd.start()
        assert await d.find_by_email(ANA.email) is not None
    finally:
        await d.close()


async def test_cache_ttl_is_honoured(own_slapd: Slapd) -> None:
    clock = Clock()
    d = directory_on(own_slapd, cache_ttl=60, clock=clock)
    try:
        ana = await d.find_by_email(ANA.email)
        assert ana is not None and await d.manager_of(ana) is not None
        own_slapd.stop()
        clock.now += 59  # within cache_ttl: answered from the cache, server down or not
        assert await d.find_by_email(ANA.email) == ana
        assert (await d.manager_of(ana) or Person(email="")).email == BO.email
        clock.now += 2
        with pytest.raises(DirectoryUnavailable):
            await d.find_by_email(ANA.email)
    finally:
        await d.close()


async def test_a_server_that_never_answers_times_out() -> None:
    """A listener that accepts and stays silent: the receive timeout (an int for ldap3's
    SO_RCVTIMEO) ends the wait, well within the look-up's limit."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    url = f"ldap://127.0.0.1:{silent.getsockname()[1]}"
    d = LdapDirectory.from_url(
        url, bind_dn=BOT_DN, password=BOT_PASSWORD, base_dn=SUFFIX, receive_timeout=1.0
    )
    try:
        started = time.monotonic()
        with pytest.raises(DirectoryUnavailable):
            await d.find_by_email(ANA.email)
        assert time.monotonic() - started < 6
    finally:
        await d.close()
        silent.close()


async def test_ldaps_checks_the_certificate() -> None:
    require_slapd()
    server = start_slapd(tls=True)
    assert server.tls is not None
    trusted = directory_on(server, server.ldaps_url, ca_bundle=server.tls.ca_file)
    untrusted = directory_on(server, server.ldaps_url)
    try:
        assert (await trusted.find_by_email(ANA.email) or Person(email="")).name == "Ana Lopez"
        with pytest.raises(DirectoryUnavailable):  # a CA the system does not trust
            await untrusted.find_by_email(ANA.email)
    finally:
        await trusted.close()
        await untrusted.close()
        server.cleanup()


async def test_factory_builds_ldap_from_config_and_env(shared_slapd: Slapd) -> None:
    directory, env = ldap_directory(shared_slapd, cache_ttl="1m")
    config = DirectoryConfig.model_validate(directory)
    d = await create_directory(config, config_dir=None, env=env)
    try:
        vic = await d.find_by_email(VIC.email)
        assert vic is not None and vic.vip
    finally:
        await d.close()


async def test_lookups_share_one_connection_thread(directory: LdapDirectory) -> None:
    """Concurrent look-ups queue on the directory's one LDAP thread and all succeed."""
    found = await asyncio.gather(*(directory.find_by_email(p.email) for p in (ANA, BO, CY, PAT)))
    assert [p.email if p else None for p in found] == [ANA.email, BO.email, CY.email, PAT.email]


BOARD_DN = f"cn=Board,{GROUPS_OU}"


def _teams(n: int, *, board_members: tuple[str, ...]) -> str:
    """`n` groups Pat is directly in, then the Board group with `board_members`."""
    blocks = [
        f"dn: cn=Team {i},{GROUPS_OU}\nobjectClass: groupOfNames\ncn: Team {i}\nmember: {PAT.dn}\n"
        for i in range(n)
    ]
    members = "".join(f"member: {m}\n" for m in board_members)
    blocks.append(f"dn: {BOARD_DN}\nobjectClass: groupOfNames\ncn: Board\n{members}")
    return "\n".join(blocks)


@pytest.mark.parametrize("fillers", [10, 500])
async def test_a_direct_vip_group_member_is_vip_however_many_groups(
    own_slapd: Slapd, fillers: int
) -> None:
    """The VIP group in the person's own memberOf counts even past the nested walk's cap."""
    own_slapd.load(_teams(fillers, board_members=(PAT.dn,)))
    d = directory_on(own_slapd, vip_group_dn=BOARD_DN)
    try:
        pat = await d.find_by_email(PAT.email)
        assert pat is not None and pat.vip and not pat.technician
    finally:
        await d.close()


async def test_a_vip_group_beyond_the_walks_cap_is_unavailable_not_no_vip(
    own_slapd: Slapd, caplog: pytest.LogCaptureFixture
) -> None:
    """Pat's 501 direct groups fill the walk's cap; the VIP group (Board, holding Team 0) is
    one level further up: not known, so the look-up cannot answer (the intake gates)."""
    own_slapd.load(_teams(501, board_members=(f"cn=Team 0,{GROUPS_OU}",)))
    d = directory_on(own_slapd, vip_group_dn=BOARD_DN)
    try:
        with pytest.raises(DirectoryUnavailable, match="500 groups"):
            await d.find_by_email(PAT.email)
    finally:
        await d.close()
    assert any(PAT.email in r.getMessage() and "500" in r.getMessage() for r in caplog.records)


async def test_a_second_entry_with_a_vips_mail_does_not_hide_the_vip(own_slapd: Slapd) -> None:
    """A stale account carrying Vic's mail: Vic is not "nobody", so not "no VIP" either."""
    own_slapd.load(
        f"dn: cn=Vic Old,{PEOPLE_OU}\nobjectClass: inetOrgPerson\ncn: Vic Old\nsn: Old\n"
        f"mail: {VIC.email}\n"
    )
    d = directory_on(own_slapd)
    try:
        with pytest.raises(DirectoryAmbiguous, match=re.escape(f"2 entries have mail {VIC.email}")):
            await d.find_by_email(VIC.email)
    finally:
        await d.close()


async def test_an_address_that_is_an_alias_finds_its_entry(own_slapd: Slapd) -> None:
    """An address typed for the requester (or on a profile) may be an alias: Active
    Directory keeps it in `proxyAddresses` (`smtp:`). Found by it, the person is known by their
    `mail`; an alias two entries carry is ambiguous, not nobody."""
    own_slapd.load(
        f"dn: cn=Al Alias,{PEOPLE_OU}\nobjectClass: inetOrgPerson\nobjectClass: helpdeskChatIds\n"
        "cn: Al Alias\nsn: Alias\nmail: al@example.com\nproxyAddresses: SMTP:al@example.com\n"
        "proxyAddresses: smtp:al.alias@example.com\nproxyAddresses: smtp:team@example.com\n"
        f"\ndn: cn=Bea Alias,{PEOPLE_OU}\nobjectClass: inetOrgPerson\n"
        "objectClass: helpdeskChatIds\ncn: Bea Alias\nsn: Alias\nmail: bea@example.com\n"
        "proxyAddresses: smtp:team@example.com\n"
    )
    d = directory_on(own_slapd)
    try:
        al = await d.find_by_email("Al.Alias@example.com")
        assert al is not None and (al.name, al.email) == ("Al Alias", "al@example.com")
        assert await d.find_by_email("nobody@example.com") is None
        with pytest.raises(DirectoryAmbiguous, match="2 entries have e-mail alias team@"):
            await d.find_by_email("team@example.com")
    finally:
        await d.close()


async def test_a_look_up_by_chat_id_does_not_settle_who_an_ambiguous_mail_is(
    own_slapd: Slapd,
) -> None:
    """Vic found by his Slack id first: his mail, which a stale entry carries too, still names
    two entries (the answer to "who is vic@" does not depend on what was asked before), and
    his manager is not read off whichever entry the cache happened to hold."""
    own_slapd.load(
        f"dn: cn=Vic Old,{PEOPLE_OU}\nobjectClass: inetOrgPerson\ncn: Vic Old\nsn: Old\n"
        f"objectClass: helpdeskChatIds\nmail: {VIC.email}\nextensionAttribute2: 29:1vicold\n"
    )
    d = directory_on(own_slapd)
    try:
        old = await d.find_by_platform_id("teams", "29:1vicold")
        assert old is not None and old.name == "Vic Old"
        with pytest.raises(DirectoryAmbiguous, match=re.escape(f"2 entries have mail {VIC.email}")):
            await d.find_by_email(VIC.email)
        with pytest.raises(DirectoryAmbiguous):
            await d.manager_of(old)
    finally:
        await d.close()


async def test_a_size_limited_answer_with_one_entry_is_ambiguous_not_that_entry() -> None:
    """A server whose administrative size limit for the bot is 1 answers one of two entries
    with Vic's mail and sizeLimitExceeded: more matched than came back, so the one that came
    back is not "the" entry (it may be the stale one, with another manager)."""
    require_slapd()
    server = start_slapd(limits=f'limits dn.exact="{BOT_DN}" size=1')
    try:
        server.load(
            f"dn: cn=Vic Old,{PEOPLE_OU}\nobjectClass: inetOrgPerson\ncn: Vic Old\nsn: Old\n"
            f"mail: {VIC.email}\ntelephoneNumber: +1 555 0666\n"
        )
        d = directory_on(server)
        try:
            with pytest.raises(DirectoryAmbiguous, match=re.escape(f"mail {VIC.email}")):
                await d.find_by_email(VIC.email)
            ana = await d.find_by_email(ANA.email)  # one entry: the limit is not exceeded
            assert ana is not None and ana.phone == "+1 555 0100"
        finally:
            await d.close()
    finally:
        server.cleanup()


def _modify(server: Slapd, ldif: str) -> None:
    subprocess.run(
        [
            "ldapmodify",
            "-x",
            "-H",
            server.url,
            "-D",
            server.admin_dn,
            "-y",
            str(server.dir / "admin.pw"),
        ],
        input=ldif.encode(),
        check=True,
        capture_output=True,
        timeout=30,
    )


async def test_a_manager_change_is_seen_once_cache_ttl_has_passed(own_slapd: Slapd) -> None:
    """The manager comes from Ana's cached entry: it is not kept longer than that entry (a
    manager asked for at 299 s must not stay cached until 599 s)."""
    clock = Clock()
    d = directory_on(own_slapd, cache_ttl=300, clock=clock)
    try:
        ana = await d.find_by_email(ANA.email)
        assert ana is not None
        _modify(
            own_slapd, f"dn: {ANA.dn}\nchangetype: modify\nreplace: manager\nmanager: {CY.dn}\n"
        )
        clock.now += 299
        assert (await d.manager_of(ana) or Person(email="")).email == BO.email  # still cached
        clock.now += 2  # 301 s after Ana's entry was read
        manager = await d.manager_of(ana)
        assert manager is not None and manager.email == CY.email, manager
    finally:
        await d.close()


async def test_a_group_nesting_change_is_seen_once_cache_ttl_has_passed(own_slapd: Slapd) -> None:
    """Execs' place in VIPs, cached when Vic was first read, is not stretched by a later read
    of Vic's own entry: Execs leaving VIPs is seen cache_ttl after it was read."""
    clock = Clock()
    d = directory_on(own_slapd, cache_ttl=300, clock=clock)
    try:
        vic = await d.find_by_email(VIC.email)  # Execs -> VIPs cached from here
        assert vic is not None and vic.vip
        _modify(
            own_slapd,
            # groupOfNames needs a member: the bot's account takes Execs' place
            f"dn: {VIP_GROUP_DN}\nchangetype: modify\nreplace: member\nmember: {BOT_DN}\n",
        )
        clock.now += 299
        by_slack = await d.find_by_platform_id("slack", VIC.slack)  # a new read of Vic's entry
        assert by_slack is not None and by_slack.vip  # the groups above are still cached
        clock.now += 2
        by_slack = await d.find_by_platform_id("slack", VIC.slack)
        assert by_slack is not None and not by_slack.vip
    finally:
        await d.close()


async def test_an_entry_without_display_name_is_named_by_its_cn(own_slapd: Slapd) -> None:
    """SPEC: name is `displayName`, else `cn` (plain inetOrgPerson entries have no
    displayName); memberOf matches the group DN in any case."""
    own_slapd.modify(
        f"dn: {PAT.dn}\nchangetype: modify\ndelete: displayName\n"
    )  # fmt: skip
    d = directory_on(own_slapd, technician_group_dn=TECH_GROUP_DN.swapcase())
    try:
        pat = await d.find_by_email(PAT.email)
        assert pat is not None and pat.name == PAT.name, pat
        tom = await d.find_by_email(TOM.email)
        assert tom is not None and tom.technician and tom.name == TOM.name
    finally:
        await d.close()
