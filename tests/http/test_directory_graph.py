"""GraphDirectory against a fake Graph and token endpoint on 127.0.0.1 (real msal, real HTTP)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient

from bot.directory.chat_links import ChatLinks
from bot.directory.factory import create_directory
from bot.directory.graph import GraphDirectory
from bot.slack.people import SlackPeople
from handlers.config import DirectoryConfig
from handlers.directory import DirectoryAmbiguous, DirectoryError, DirectoryUnavailable, Person
from tests.fakes.base import Recorded, stream_huge
from tests.fakes.graph import GRAPH_TOKEN, FakeGraph
from tests.fakes.slack_api import FakeSlack
from tests.harness import wait_until

ANA, BO, CY = "11111111-aaaa", "22222222-bbbb", "33333333-cccc"
VIP_GROUP, TECH_GROUP = "group-vip", "group-tech"


class Clock:
    """A hand-moved monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraph]:
    fake = FakeGraph()
    fake.add_user(
        ANA,
        "ana@example.com",
        displayName="Ana Lopez",
        mobilePhone="+1 555 0100",
        businessPhones=["+1 555 0199"],
        manager=BO,
    )
    fake.add_user(BO, "bo@example.com", displayName="Bo Chen", businessPhones=["+1 555 0200"])
    fake.add_user(CY, "cy.upn@corp.example.com", mail="Cy@Example.com", displayName="Cy")
    fake.groups[BO] = {VIP_GROUP}
    fake.groups[CY] = {TECH_GROUP}
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def directory(graph: FakeGraph, clock: Clock) -> AsyncIterator[GraphDirectory]:
    d = GraphDirectory(
        tenant_id=graph.tenant,
        client_id=graph.client_id,
        client_secret=graph.client_secret,
        base_url=graph.https_url,
        authority_host=graph.https_url,
        vip_group_id=VIP_GROUP,
        technician_group_id=TECH_GROUP,
        cache_ttl=300,
        ca_bundle=graph.ca_file,
        clock=clock,
    )
    yield d
    await d.close()


async def test_token_acquired_once_and_sent_as_bearer(
    graph: FakeGraph, directory: GraphDirectory
) -> None:
    assert (await directory.find_by_email("ana@example.com")) is not None
    assert (await directory.find_by_email("bo@example.com")) is not None
    assert len(graph.token_calls()) == 1
    calls = graph.graph_calls()
    assert calls and all(c.headers["Authorization"] == f"Bearer {GRAPH_TOKEN}" for c in calls)
    token_form = graph.token_calls()[0].form or {}
    assert token_form["grant_type"] == "client_credentials"
    assert token_form["scope"] == f"{graph.https_url}/.default"


async def test_user_fields_and_phone_prefers_mobile(directory: GraphDirectory) -> None:
    ana = await directory.find_by_email("ANA@example.com")
    assert ana == Person(
        email="ana@example.com", name="Ana Lopez", aad_object_id=ANA, phone="+1 555 0100"
    )


async def test_manager_resolved_via_manager_endpoint(
    graph: FakeGraph, directory: GraphDirectory
) -> None:
    ana = await directory.find_by_email("ana@example.com")
    assert ana is not None
    bo = await directory.manager_of(ana)
    assert bo is not None
    assert (bo.email, bo.name, bo.aad_object_id) == ("bo@example.com", "Bo Chen", BO)
    assert bo.phone == "+1 555 0200"  # no mobilePhone: first businessPhones
    assert any(c.path == f"/v1.0/users/{ANA}/manager" for c in graph.graph_calls())
    assert await directory.manager_of(bo) is None  # 404 from /manager


async def test_a_manager_who_is_an_outside_contact_is_no_user_to_message(
    graph: FakeGraph, directory: GraphDirectory
) -> None:
    """Graph allows an organisational contact as a manager: they are on file (name, mail,
    number) but are no user of the tenant: no object id to open a Teams chat with, no Slack
    id looked up by their outside address, no groups (whose check would 404)."""
    graph.contacts["66666666-ffff"] = {
        "id": "66666666-ffff",
        "displayName": "Outside Boss",
        "mail": "boss@partner.example",
        "mobilePhone": "+1 555 0777",
    }
    graph.managers[ANA] = "66666666-ffff"
    ana = await directory.find_by_email("ana@example.com")
    assert ana is not None
    boss = await directory.manager_of(ana)
    assert boss == Person(email="boss@partner.example", name="Outside Boss", phone="+1 555 0777")
    assert not any("66666666-ffff/checkMemberGroups" in c.path for c in graph.graph_calls())


async def test_unknown_user_is_none(directory: GraphDirectory) -> None:
    assert await directory.find_by_email("nobody@example.com") is None


async def test_mail_differs_from_upn_found_by_filter(
    graph: FakeGraph, directory: GraphDirectory
) -> None:
    cy = await directory.find_by_email("cy@example.com")
    assert cy is not None and cy.aad_object_id == CY
    assert any("$filter" in c.query for c in graph.graph_calls())


async def test_an_address_that_is_an_alias_finds_its_user(
    graph: FakeGraph, directory: GraphDirectory
) -> None:
    """A Slack profile (or a requester) may carry an alias rather than the primary address
    (the address before a name change): Exchange keeps it in `proxyAddresses` as `smtp:`.
    Found by it, the person is known by their primary mail; an address that is a mail or UPN
    is settled without the second look-up."""
    graph.users[ANA]["proxyAddresses"] = ["SMTP:ana@example.com", "smtp:ana.lopez@example.com"]
    ana = await directory.find_by_email("Ana.Lopez@example.com")
    assert ana is not None and (ana.aad_object_id, ana.email) == (ANA, "ana@example.com")
    filters = [c.query["$filter"] for c in graph.graph_calls() if "$filter" in c.query]
    assert filters[-1] == "proxyAddresses/any(p:p eq 'smtp:ana.lopez@example.com')"
    before = len(filters)
    assert await directory.find_by_email("bo@example.com") is not None
    filters = [c.query["$filter"] for c in graph.graph_calls() if "$filter" in c.query]
    assert len(filters) == before + 1 and "proxyAddresses" not in filters[-1]
    assert await directory.find_by_email("nobody@example.com") is None


async def test_an_alias_two_users_carry_is_ambiguous(
    graph: FakeGraph, directory: GraphDirectory
) -> None:
    graph.users[ANA]["proxyAddresses"] = ["SMTP:ana@example.com", "smtp:help@example.com"]
    graph.users[BO]["proxyAddresses"] = ["SMTP:bo@example.com", "smtp:help@example.com"]
    with pytest.raises(DirectoryAmbiguous, match=r"2 users have e-mail alias help@example\.com"):
        await directory.find_by_email("help@example.com")


async def test_two_users_with_one_mail_are_ambiguous_not_nobody(
    graph: FakeGraph, directory: GraphDirectory
) -> None:
    """A stale account carrying Cy's mail: Cy is not "nobody", so not "no VIP" either."""
    graph.add_user("44444444-dddd", "cy.old@corp.example.com", mail="cy@example.com")
    with pytest.raises(DirectoryAmbiguous, match=r"2 users have mail or UPN cy@example\.com") as e:
        await directory.find_by_email("CY@example.com")
    assert isinstance(e.value, DirectoryUnavailable) and e.value.source == "Graph"


async def test_one_users_upn_that_is_another_users_mail_is_ambiguous(
    graph: FakeGraph, directory: GraphDirectory
) -> None:
    """Dee's UPN is Cy's mail: the address names two users, and the one whose UPN it is was
    taken without a look at mail (Dee's manager asked to vouch for a caller claiming Cy)."""
    graph.add_user("55555555-eeee", "cy@example.com", mail="dee@example.com", manager=ANA)
    with pytest.raises(DirectoryAmbiguous, match=r"2 users have mail or UPN cy@example\.com"):
        await directory.find_by_email("cy@example.com")
    assert await directory.find_by_email("dee@example.com") is not None  # hers alone


async def test_a_typed_address_never_reaches_a_graph_path(
    graph: FakeGraph, directory: GraphDirectory
) -> None:
    """What a person typed goes only into a quoted `$filter` literal, never a URL path
    segment: `/`, `?`, `#`, `%2F` and quotes in it name nobody else. Found by a review: a
    value without "@" went into `/users/{typed}`, where an object id names that user and
    `delta` a function answering a page of everyone (read as a nameless person)."""
    typed = [
        BO,
        "delta",
        "ana@example.com/../bo@example.com",
        "bo@example.com%2F..%2Fana@example.com",
        "ana@example.com?$select=id",
        "ana@example.com#x",
        "ana@example.com' or mail eq 'bo@example.com",
        "*)(mail=*@example.com",
        "ana@example.com\x00",
        "ana@example.com\\",
    ]
    for address in typed:
        assert await directory.find_by_email(address) is None, address
    lookups = [c for c in graph.graph_calls() if c.method == "GET"]
    assert lookups and all(c.raw_path == "/v1.0/users" for c in lookups)


async def test_a_look_up_by_teams_or_slack_id_does_not_settle_who_a_mail_is(
    graph: FakeGraph, clock: Clock
) -> None:
    """Cy found by his Teams id (AAD object id) and as someone's manager: his mail, which a
    stale account carries too, still names two users, also through a Slack id whose profile
    e-mail is that mail (the answer does not depend on what was asked before)."""
    graph.add_user("44444444-dddd", "cy.old@corp.example.com", mail="cy@example.com")
    graph.managers[ANA] = CY
    async with FakeSlack() as slack:
        slack.add_user("U0CY", email="cy@example.com")
        client = AsyncWebClient(token="xoxb-test", base_url=f"{slack.url}/api/")
        d = GraphDirectory(
            tenant_id=graph.tenant,
            client_id=graph.client_id,
            client_secret=graph.client_secret,
            base_url=graph.https_url,
            authority_host=graph.https_url,
            ca_bundle=graph.ca_file,
            chat=ChatLinks(slack=SlackPeople(client)),
            clock=clock,
        )
        try:
            cy = await d.find_by_platform_id("teams", "29:1cy", aad_object_id=CY)
            assert cy is not None and cy.slack_id == "U0CY"
            ana = await d.find_by_email("ana@example.com")
            manager = await d.manager_of(ana) if ana else None
            assert manager is not None and manager.aad_object_id == CY
            with pytest.raises(DirectoryAmbiguous, match=r"cy@example\.com"):
                await d.find_by_email("cy@example.com")
            with pytest.raises(DirectoryAmbiguous, match=r"cy@example\.com"):
                await d.find_by_platform_id("slack", "U0CY")
        finally:
            await d.close()


async def test_a_second_user_with_one_mail_on_the_next_page_is_ambiguous(
    graph: FakeGraph, directory: GraphDirectory
) -> None:
    """Graph pages every collection: the first page of `mail eq` holding one user is not
    "the one user" while `@odata.nextLink` says there is more (the first is not picked)."""
    graph.add_user("44444444-dddd", "cy.old@corp.example.com", mail="cy@example.com")
    graph.page_size = 1
    with pytest.raises(DirectoryAmbiguous, match=r"2 users have mail or UPN cy@example\.com"):
        await directory.find_by_email("cy@example.com")
    assert any("$skiptoken" in c.query for c in graph.graph_calls())


async def test_a_next_page_after_the_one_user_is_read_before_answering(
    graph: FakeGraph, directory: GraphDirectory
) -> None:
    graph.page_size = 1
    cy = await directory.find_by_email("cy@example.com")  # one user: the link is followed
    assert cy is not None and cy.aad_object_id == CY


async def test_a_next_link_off_graph_is_not_followed_with_the_token(
    graph: FakeGraph, directory: GraphDirectory
) -> None:
    """A nextLink naming another host would carry the bearer token there: never followed,
    and the page before it is not taken as the whole answer either."""
    graph.add_user("44444444-dddd", "cy.old@corp.example.com", mail="cy@example.com")
    graph.page_size = 1
    graph.next_link_base = "https://127.0.0.2:9"
    with pytest.raises(DirectoryUnavailable, match="next page"):
        await directory.find_by_email("cy@example.com")


async def test_ttl_cache_avoids_second_call(
    graph: FakeGraph, directory: GraphDirectory, clock: Clock
) -> None:
    await directory.find_by_email("ana@example.com")
    await directory.find_by_email("nobody@example.com")
    count = len(graph.graph_calls())
    await directory.find_by_email("Ana@Example.com")
    await directory.find_by_email("nobody@example.com")
    assert len(graph.graph_calls()) == count
    clock.now += 301
    await directory.find_by_email("ana@example.com")
    assert len(graph.graph_calls()) > count


async def test_a_cached_user_read_again_by_teams_id_is_not_kept_longer(
    graph: FakeGraph, directory: GraphDirectory, clock: Clock
) -> None:
    """Bo, cached by e-mail, asked for at 299 s by his Teams id (answered from that cache):
    the answer is not cached afresh, so his leaving the VIP group is seen after cache_ttl."""
    bo = await directory.find_by_email("bo@example.com")
    assert bo is not None and bo.vip
    graph.groups[BO] = set()
    clock.now += 299
    on_teams = await directory.find_by_platform_id("teams", "29:1bo", aad_object_id=BO)
    assert on_teams is not None and on_teams.vip  # still within cache_ttl
    clock.now += 2
    bo = await directory.find_by_email("bo@example.com")
    on_teams = await directory.find_by_platform_id("teams", "29:1bo", aad_object_id=BO)
    assert bo is not None and not bo.vip
    assert on_teams is not None and not on_teams.vip


async def test_vip_and_technician_from_groups(graph: FakeGraph, directory: GraphDirectory) -> None:
    bo = await directory.find_by_email("bo@example.com")
    cy = await directory.find_by_email("cy@example.com")
    ana = await directory.find_by_email("ana@example.com")
    assert bo is not None and bo.vip and not bo.technician
    assert cy is not None and cy.technician and not cy.vip
    assert ana is not None and not ana.vip and not ana.technician
    check = next(c for c in graph.graph_calls() if c.path.endswith("/checkMemberGroups"))
    assert sorted((check.json or {})["groupIds"]) == sorted([VIP_GROUP, TECH_GROUP])
    assert await directory.has_technicians()


async def test_a_vip_whose_group_check_is_not_found_is_not_taken_for_no_vip(
    graph: FakeGraph, directory: GraphDirectory
) -> None:
    """checkMemberGroups answering 404 for a user Graph has just returned (replication lag)
    says nothing about the groups: not "in none" (not a VIP, cached for cache_ttl)."""
    graph.fail("/v1.0/users/*/checkMemberGroups", 404)
    with pytest.raises(DirectoryUnavailable, match="checkMemberGroups"):
        await directory.find_by_email("bo@example.com")
    bo = await directory.find_by_email("bo@example.com")  # nothing was cached
    assert bo is not None and bo.vip


async def test_teams_lookup_by_aad_object_id(directory: GraphDirectory) -> None:
    ana = await directory.find_by_platform_id("teams", "29:1ana", aad_object_id=ANA)
    assert ana is not None and ana.email == "ana@example.com" and ana.teams_id == "29:1ana"
    assert (await directory.find_by_platform_id("teams", "29:1ana")) == ana
    assert await directory.find_by_platform_id("teams", "29:zz", aad_object_id="nope") is None


async def test_slack_users_by_profile_email_and_managers_by_lookup(
    graph: FakeGraph, clock: Clock
) -> None:
    """A Slack user is the Graph user with their Slack profile e-mail (users.info); a
    manager read from Graph gets the Slack id users.lookupByEmail finds."""
    async with FakeSlack() as slack:
        slack.add_user("U0ANA", email="Ana@Example.com")
        slack.add_user("U0BO", email="bo@example.com")
        slack.add_user("U0GHOST", email="ghost@example.com")
        slack.add_user("U0NOMAIL")
        client = AsyncWebClient(token="xoxb-test", base_url=f"{slack.url}/api/")
        d = GraphDirectory(
            tenant_id=graph.tenant,
            client_id=graph.client_id,
            client_secret=graph.client_secret,
            base_url=graph.https_url,
            authority_host=graph.https_url,
            ca_bundle=graph.ca_file,
            chat=ChatLinks(slack=SlackPeople(client)),
            clock=clock,
        )
        try:
            ana = await d.find_by_platform_id("slack", "U0ANA")
            assert ana is not None and (ana.email, ana.aad_object_id) == ("ana@example.com", ANA)
            assert ana.slack_id == "U0ANA"
            assert slack.method_calls("users.info") == [{"user": "U0ANA"}]
            bo = await d.manager_of(ana)
            assert bo is not None and bo.slack_id == "U0BO" and bo.aad_object_id == BO
            assert slack.method_calls("users.lookupByEmail")[-1] == {"email": "bo@example.com"}
            assert await d.find_by_platform_id("slack", "U0GHOST") is None  # not in Graph
            assert await d.find_by_platform_id("slack", "U0NOMAIL") is None  # no e-mail
            assert await d.find_by_platform_id("slack", "U0NOBODY") is None  # not in Slack
            cy = await d.find_by_email("cy@example.com")
            assert cy is not None and cy.slack_id is None  # not in the workspace
            calls = len(slack.api_calls())
            assert (await d.find_by_platform_id("slack", "U0ANA")) == ana  # cached
            assert len(slack.api_calls()) == calls
            slack.fail_ok_false("users.info", "fatal_error")
            with pytest.raises(DirectoryUnavailable, match="Slack"):
                await d.find_by_platform_id("slack", "U0OTHER")
            # Slack failing to say who has an e-mail does not hide the person; they are
            # asked about again next time.
            slack.fail_ok_false("users.lookupByEmail", "internal_error")
            graph.add_user("44444444-dddd", "dee@example.com", displayName="Dee")
            slack.add_user("U0DEE", email="dee@example.com")
            dee = await d.find_by_email("dee@example.com")
            assert dee is not None and dee.name == "Dee" and dee.slack_id is None
            dee = await d.find_by_email("dee@example.com")
            assert dee is not None and dee.slack_id == "U0DEE"
        finally:
            await d.close()


async def test_429_is_retried_after_its_retry_after_and_nothing_calls_before(
    graph: FakeGraph, directory: GraphDirectory
) -> None:
    await directory.find_by_email("bo@example.com")  # token and a first call out of the way
    graph.fail("/v1.0/users*", 429, headers={"Retry-After": "1"})
    first = asyncio.create_task(directory.find_by_email("ana@example.com"))
    await graph.wait_for(lambda r: r.status == 429)
    # Another look-up meanwhile waits for the same Retry-After.
    cy = await directory.find_by_email("cy@example.com")
    ana = await first
    assert ana is not None and ana.name == "Ana Lopez" and cy is not None
    calls = graph.graph_calls()
    refused = next(c for c in calls if c.status == 429)
    after = [c for c in calls if c.at > refused.at]
    # The fake stamps the 429 as it sends it and the bot counts the second from its arrival,
    # but asyncio may run a timer up to its clock resolution early: a few ms of slack.
    assert after and all(c.at >= refused.at + 1.0 - 0.02 for c in after)


async def test_503_persisting_gives_up_within_the_wait(
    graph: FakeGraph, directory: GraphDirectory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    graph.fail("/v1.0/*", 503, times=50, headers={"Retry-After": "4"})
    started = time.monotonic()
    with pytest.raises(DirectoryUnavailable) as caught:
        await directory.find_by_email("ana@example.com")
    assert 7.5 <= time.monotonic() - started < 10.5  # tries at 0, 4 and 8 s; 12 is too late
    assert caught.value.source == "Graph"
    attempts = [c.at for c in graph.graph_calls()]
    assert len(attempts) == 3 and all(b - a >= 4.0 for a, b in itertools.pairwise(attempts))
    assert "bot.directory.graph" in {r.name for r in caplog.records}
    assert GRAPH_TOKEN not in caplog.text and graph.client_secret not in caplog.text
    assert graph.client_secret not in repr(directory)


async def test_a_retry_after_longer_than_a_person_waits_is_not_waited_for(
    graph: FakeGraph, directory: GraphDirectory
) -> None:
    graph.fail("/v1.0/*", 429, headers={"Retry-After": "30"})
    started = time.monotonic()
    with pytest.raises(DirectoryUnavailable, match="wait"):
        await directory.find_by_email("ana@example.com")
    with pytest.raises(DirectoryUnavailable, match="wait"):  # and nothing is sent meanwhile
        await directory.find_by_email("bo@example.com")
    assert time.monotonic() - started < 2
    assert len(graph.graph_calls()) == 1


async def test_token_endpoint_down_is_unavailable(graph: FakeGraph, clock: Clock) -> None:
    d = GraphDirectory(
        tenant_id=graph.tenant,
        client_id=graph.client_id,
        client_secret=graph.client_secret,
        base_url=graph.https_url,
        authority_host=graph.https_url,
        ca_bundle=graph.ca_file,
        clock=clock,
    )
    graph.fail("/*/oauth2/v2.0/token", 503, times=5)
    try:
        with pytest.raises(DirectoryUnavailable):
            await d.find_by_email("ana@example.com")
        assert not graph.graph_calls()
    finally:
        await d.close()


async def test_bad_secret_raises_directory_error(graph: FakeGraph, clock: Clock) -> None:
    d = GraphDirectory(
        tenant_id=graph.tenant,
        client_id=graph.client_id,
        client_secret="wrong",
        base_url=graph.https_url,
        authority_host=graph.https_url,
        ca_bundle=graph.ca_file,
        clock=clock,
    )
    try:
        with pytest.raises(DirectoryUnavailable, match="invalid_client"):
            await d.find_by_email("ana@example.com")
        assert not await d.has_technicians()
    finally:
        await d.close()


async def test_factory_builds_graph_from_config_and_env(graph: FakeGraph) -> None:
    config = DirectoryConfig.model_validate(
        {
            "source": "graph",
            "graph": {
                "base_url": graph.https_url,
                "authority_host": graph.https_url,
                "ca_bundle": graph.ca_file,
                "cache_ttl": "1m",
            },
        }
    )
    env = {
        "MicrosoftAppId": graph.client_id,
        "MicrosoftAppTenantId": graph.tenant,
        "MicrosoftAppPassword": "ignored",
        "GRAPH_CLIENT_SECRET": graph.client_secret,
    }
    d = await create_directory(config, config_dir=None, env=env)
    try:
        assert (await d.find_by_email("ana@example.com")) is not None
    finally:
        await d.close()
    with pytest.raises(DirectoryError, match=r"directory\.graph\.tenant_id"):
        await create_directory(config, config_dir=None, env={"MicrosoftAppId": "x"})
    with pytest.raises(DirectoryError, match="GRAPH_CLIENT_SECRET"):
        await create_directory(
            config, config_dir=None, env={"MicrosoftAppId": "x", "MicrosoftAppTenantId": "t"}
        )


async def test_a_user_without_mail_is_known_by_the_upn(
    graph: FakeGraph, directory: GraphDirectory
) -> None:
    """SPEC: e-mail is `mail`, else `userPrincipalName` (guests and unlicensed users often
    have no mail); whether found by address or by Teams' AAD object id."""
    dee = "44444444-dddd"
    graph.add_user(dee, "dee@example.com", mail=None, displayName="Dee", mobilePhone=None,
                   businessPhones=["+1 555 0400", "+1 555 0401"])  # fmt: skip
    by_mail = await directory.find_by_email("Dee@Example.com")
    assert by_mail is not None and by_mail.email == "dee@example.com"
    assert by_mail.phone == "+1 555 0400"  # no mobilePhone: the first businessPhones
    by_aad = await directory.find_by_platform_id("teams", "29:1dee", aad_object_id=dee)
    assert by_aad is not None and by_aad.email == "dee@example.com"


async def test_tenant_client_and_secret_default_to_the_bots_app_registration(
    graph: FakeGraph,
) -> None:
    """SPEC: `tenant_id` defaults to MicrosoftAppTenantId, `client_id` to MicrosoftAppId and
    GRAPH_CLIENT_SECRET to MicrosoftAppPassword: with none of the three set, the token is
    asked for with the app's and Graph answers."""
    config = DirectoryConfig.model_validate(
        {
            "source": "graph",
            "graph": {
                "base_url": graph.https_url,
                "authority_host": graph.https_url,
                "ca_bundle": graph.ca_file,
            },
        }
    )
    env = {
        "MicrosoftAppId": graph.client_id,
        "MicrosoftAppTenantId": graph.tenant,
        "MicrosoftAppPassword": graph.client_secret,
    }
    d = await create_directory(config, config_dir=None, env=env)
    try:
        ana = await d.find_by_email("ana@example.com")
        assert ana is not None and ana.aad_object_id == ANA
    finally:
        await d.close()
    # Read stripped, as the Bot Framework reads it: a .env line's trailing space is no part of it.
    spaced = {
        **env,
        "MicrosoftAppPassword": f" {graph.client_secret} \n",
        "GRAPH_CLIENT_SECRET": " ",
    }
    d = await create_directory(config, config_dir=None, env=spaced)
    try:
        assert await d.find_by_email("ana@example.com") is not None
    finally:
        await d.close()
    wrong = {**env, "MicrosoftAppPassword": "not-the-secret"}
    d = await create_directory(config, config_dir=None, env=wrong)
    try:
        with pytest.raises(DirectoryError):
            await d.find_by_email("ana@example.com")
    finally:
        await d.close()


async def test_an_answer_of_many_mb_is_not_read_into_memory(
    graph: FakeGraph, directory: GraphDirectory
) -> None:
    # Something in front of Graph (a TLS-inspecting proxy gone wrong) streams a body of many MB
    # for a look-up. Before, the bot read all of it into memory and parsed it on the event loop
    # (holding up every request), and again on the retry. It stops reading after 4 MB: the
    # answer is not Graph's, tried once more, then the directory is unavailable.
    sent: list[int] = []
    answer = graph.handle

    async def streaming(rec: Recorded, request: web.Request) -> web.StreamResponse:
        if not rec.path.startswith("/v1.0/users"):
            return await answer(rec, request)
        head = b'{"value": [{"id": "'
        response, n = await stream_huge(request, status=200, head=head, megabytes=64, tail=b'"}]}')
        sent.append(n)
        return response

    graph.handle = streaming  # type: ignore[method-assign]
    with pytest.raises(DirectoryUnavailable):
        await directory.find_by_email("ana@example.com")
    await wait_until(lambda: len(sent) == 2, timeout=10, what="both answers cut off")
    assert all(n < 40 * 1024 * 1024 for n in sent), [n >> 20 for n in sent]


async def test_an_error_answer_of_many_mb_is_read_for_its_status_only(
    graph: FakeGraph, directory: GraphDirectory
) -> None:
    # A refusal (HTTP 400) whose body is many MB, streamed slowly: only its error code is
    # wanted, read from at most 256 KB; the status says enough. Before, the bot read the whole
    # body (all the while the person waited) to parse it on the event loop.
    answer = graph.handle

    async def refused(rec: Recorded, request: web.Request) -> web.StreamResponse:
        if not rec.path.startswith("/v1.0/users"):
            return await answer(rec, request)
        head, tail = b'{"error": {"code": "Request_BadRequest", "message": "', b'"}}'
        response, _ = await stream_huge(
            request, status=400, head=head, megabytes=40, tail=tail, pause=0.05
        )
        return response

    graph.handle = refused  # type: ignore[method-assign]
    started = time.monotonic()
    with pytest.raises(DirectoryUnavailable) as caught:
        await directory.find_by_email("ana@example.com")
    took = time.monotonic() - started
    assert "HTTP 400" in str(caught.value)
    assert took < 1.0, f"{took:.1f} s: the body was read (streaming it takes 2 s)"
