"""The KB sources against loopback fakes of Hudu, IT Glue and Confluence: requests as the
vendors document them, titles without highlight markers, failures as KbUnavailable, caching;
and the settings that enable them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from pydantic import SecretStr

from bot.kb import create_kb
from bot.kb.cache import CachedKb
from bot.kb.confluence import ConfluenceSource, cql_string
from bot.kb.hudu import HuduSource
from bot.kb.itglue import ItGlueSource
from bot.settings import ConfigError, load_settings
from handlers.diagnosis import KbArticle, KbUnavailable, clean_title
from tests.fakes.kb_confluence import FakeConfluence, parse_cql
from tests.fakes.kb_hudu import FakeHudu
from tests.fakes.kb_itglue import FakeItGlue


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_hudu(http: aiohttp.ClientSession) -> None:
    async with FakeHudu() as fake:
        wanted = fake.add_article("Outlook 0x800CCC0E: SMTP port blocked", "Use port 587")
        fake.add_article("Outlook 0x800CCC0E draft", "not yet", draft=True)
        fake.add_article("Printer offline", "Restart the spooler")
        source = HuduSource(http, url=fake.url + "/", api_key=SecretStr(fake.api_key))
        assert await source.search("0x800ccc0e", limit=3) == [
            KbArticle("Outlook 0x800CCC0E: SMTP port blocked", wanted["url"])
        ]
        [call] = fake.calls("/api/v1/articles")
        assert call.headers["x-api-key"] == fake.api_key
        assert call.query["search"] == "0x800ccc0e"
        bad = HuduSource(http, url=fake.url, api_key=SecretStr("wrong-key-123"))
        with pytest.raises(KbUnavailable, match="HTTP 401"):
            await bad.search("x", limit=3)
        fake.fail("/api/v1/articles", 503)
        with pytest.raises(KbUnavailable, match="Hudu: HTTP 503"):
            await source.search("x", limit=3)


async def test_a_kb_that_cannot_be_reached_is_named_with_where_and_why(
    http: aiohttp.ClientSession,
) -> None:
    """Found by an operator's trial: the log said only `Hudu could not be searched: Hudu:
    ClientConnectorError`, neither the host and port it tried nor why it failed."""
    import socket

    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = HuduSource(http, url=f"http://127.0.0.1:{port}", api_key=SecretStr("key-123"))
    with pytest.raises(KbUnavailable) as refused:
        await source.search("0x800ccc0e", limit=3)
    assert str(refused.value) == f"Hudu: cannot connect to 127.0.0.1:{port} (Connection refused)"


async def test_itglue(http: aiohttp.ClientSession) -> None:
    async with FakeItGlue() as fake:
        ident = fake.add_document("VPN  Error 809 runbook", "Open UDP 500/4500")
        fake.add_document("Printer runbook")
        source = ItGlueSource(http, url=fake.url, api_key=SecretStr(fake.api_key))
        assert await source.search("error 809", limit=3) == [
            KbArticle("VPN Error 809 runbook", f"https://acme.itglue.com/1/docs/{ident}")
        ]
        [call] = fake.calls("/documents")
        assert call.headers["x-api-key"] == fake.api_key
        assert call.headers["Content-Type"] == "application/vnd.api+json"
        # IT Glue takes no name filter for documents: the bot matches the names itself.
        assert "filter[name]" not in call.query
        assert call.query["page[size]"] == "1000"
        # The list read serves the next searches too (IT Glue's rate limit is per account).
        assert [a.title for a in await source.search("printer", limit=3)] == ["Printer runbook"]
        assert len(fake.calls("/documents")) == 1


async def test_confluence(http: aiohttp.ClientSession) -> None:
    async with FakeConfluence() as fake:
        page = fake.add_page('AADSTS50126 "invalid password" loop', "Reset the password")
        fake.add_page("AADSTS50126 in the archive", space="OLD")
        for url in (fake.url, fake.url + "/wiki", fake.url + "/wiki/"):
            source = ConfluenceSource(
                http, url=url, username=fake.email, api_token=SecretStr(fake.token), space="IT"
            )
            assert await source.search("aadsts50126", limit=5) == [
                KbArticle(
                    'AADSTS50126 "invalid password" loop', f"{fake.url}/wiki/spaces/IT/pages/{page}"
                )
            ]
        call = fake.calls("/wiki/rest/api/search")[-1]
        assert call.query["cql"] == 'type=page AND space="IT" AND text ~ "aadsts50126"'
        assert call.headers["Authorization"].startswith("Basic ")
        # Quotes and backslashes in what is searched are escaped, not CQL.
        assert await source.search('"invalid password"', limit=5) != []
        assert cql_string('a "b" \\c') == '"a \\"b\\" \\\\c"'
        stranger = ConfluenceSource(
            http, url=fake.url, username="x@example.com", api_token=SecretStr("nope-token")
        )
        with pytest.raises(KbUnavailable, match="HTTP 401"):
            await stranger.search("x", limit=1)


def test_titles_lose_highlight_markers() -> None:
    assert clean_title("@@@hl@@@VPN@@@endhl@@@ error &amp; <b>fix</b>") == "VPN error & fix"


class CountingKb:
    name = "Counting"

    def __init__(self) -> None:
        self.calls = 0

    async def search(self, query: str, *, limit: int) -> list[KbArticle]:
        self.calls += 1
        await asyncio.sleep(0.05)
        if query == "boom":
            raise KbUnavailable("down")
        return [KbArticle(query, "https://kb.example.com/1")]


async def test_cache_asks_once_and_forgets_failures() -> None:
    now = [0.0]
    inner = CountingKb()
    cached = CachedKb(inner, ttl=60, clock=lambda: now[0])
    first = await asyncio.gather(*(cached.search("VPN  error", limit=3) for _ in range(3)))
    assert inner.calls == 1 and first[0] == first[2]
    await cached.search("vpn error", limit=3)
    assert inner.calls == 1
    now[0] = 61
    await cached.search("vpn error", limit=3)
    assert inner.calls == 2
    for _ in range(2):
        with pytest.raises(KbUnavailable):
            await cached.search("boom", limit=3)
    assert inner.calls == 4


def _settings(tmp_path: Path, config: dict[str, object], **env: str):  # type: ignore[no-untyped-def]
    (tmp_path / "helpdesk.yaml").write_text(yaml.safe_dump(config))
    return load_settings({"HELPDESK_CONFIG": str(tmp_path / "helpdesk.yaml"), **env})


async def test_settings_for_each_kb(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    hudu = _settings(tmp_path, {"kb": {"source": "hudu", "url": "https://docs.example.com"}},
                     KB_API_KEY="hudu-key-123")  # fmt: skip
    assert isinstance(create_kb(hudu, http), CachedKb)
    assert "hudu-key-123" not in repr(hudu) and "hudu-key-123" not in repr(create_kb(hudu, http))
    with pytest.raises(ConfigError, match="KB_API_KEY"):
        _settings(tmp_path, {"kb": {"source": "itglue", "url": "https://api.itglue.com"}})
    with pytest.raises(ConfigError, match="KB_USERNAME"):
        _settings(tmp_path, {"kb": {"source": "confluence", "url": "https://x.atlassian.net"}},
                  KB_API_KEY="tok-123")  # fmt: skip
    with pytest.raises(ConfigError, match=r"kb\.url"):
        _settings(tmp_path, {"kb": {"source": "hudu", "url": "ftp://docs"}}, KB_API_KEY="k")
    with pytest.raises(ConfigError, match=r"kb\.source"):
        _settings(tmp_path, {"kb": {"source": "notion", "url": "https://x"}}, KB_API_KEY="k")
    with pytest.raises(ConfigError, match=r"changes\.calendar"):
        _settings(tmp_path, {"changes": {"calendar": "missing.ics"}})
    assert create_kb(_settings(tmp_path, {}), http) is None


async def test_the_api_key_does_not_follow_a_redirect_to_another_host(
    http: aiohttp.ClientSession,
) -> None:
    """`x-api-key` is a custom header: aiohttp drops only Authorization and cookies on a redirect
    to another origin. A KB that redirects (a moved instance, an SSO page) must not hand the
    bot's Hudu or IT Glue key to wherever it points."""
    async with FakeHudu() as hudu, FakeItGlue() as itglue, FakeHudu() as elsewhere:
        hudu_source = HuduSource(http, url=hudu.url, api_key=SecretStr(hudu.api_key))
        itglue_source = ItGlueSource(http, url=itglue.url, api_key=SecretStr(itglue.api_key))
        sources: list[tuple[FakeHudu | FakeItGlue, HuduSource | ItGlueSource, str]] = [
            (hudu, hudu_source, "/api/v1/articles"),
            (itglue, itglue_source, "/documents"),
        ]
        for fake, source, path in sources:
            fake.fail(path, 302, headers={"Location": f"{elsewhere.url}/api/v1/articles"})
            with pytest.raises(KbUnavailable, match="HTTP 302"):
                await source.search("vpn", limit=3)
            assert fake.calls(path)[0].headers["x-api-key"] == fake.api_key
        assert [c.headers.get("x-api-key") for c in elsewhere.recorded] == []


async def test_operators_typed_inside_the_confluence_text_are_searched_as_words(
    http: aiohttp.ClientSession,
) -> None:
    """`kb outlook AND password`: the words go inside the quoted `text ~ "…"` value, valid CQL
    (an AND between clauses is the only one outside quotes); inside it Confluence would take
    capital `AND` / `OR` / `NOT` as operators, so they are sent as the words they are: `OR`
    does not turn a search for all the words into one for any of them."""
    async with FakeConfluence() as fake:
        page = fake.add_page("Outlook password prompt loop", "Clear the credential manager")
        fake.add_page("Printer offline", "Restart the spooler")
        source = ConfluenceSource(
            http, url=fake.url, username=fake.email, api_token=SecretStr(fake.token), space="IT"
        )
        wanted = [
            KbArticle("Outlook password prompt loop", f"{fake.url}/wiki/spaces/IT/pages/{page}")
        ]
        assert await source.search("outlook AND password", limit=5) == wanted
        assert await source.search("outlook OR spooler", limit=5) == []
        assert await source.search('"AND space=OLD" OR outlook', limit=5) == []
        sent = [parse_cql(c.query["cql"]) for c in fake.calls("/wiki/rest/api/search")]
        assert [c["text"] for c in sent] == [
            "outlook and password",
            "outlook or spooler",
            "and space=OLD or outlook",
        ]
        assert {c["space"] for c in sent} == {"IT"}
        assert {c.status for c in fake.calls("/wiki/rest/api/search")} == {200}
