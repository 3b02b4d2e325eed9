"""IT Glue documents (JSON:API): `GET <kb.url>/documents`, `x-api-key`.

IT Glue has no search for documents: its documents index lists them (per account or
organization, `filter[organization_id]` / `filter[document_folder_id]`) and takes no name or
text filter (psa-kb-facts §5: "No free-text search endpoint was found, so match ...
client-side"; a `filter[name]` is ignored, selic/mcp-itglue). So the bot reads the list a
page of 1000 at a time (IT Glue's most) while the search's time allows, keeps it for two
minutes, and answers the documents whose name holds every word searched for (ignoring case).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from typing import Any

import aiohttp
from pydantic import SecretStr

from bot.kb.http import get_json
from handlers.diagnosis import KB_TIMEOUT, KbArticle, KbUnavailable

MEDIA_TYPE = "application/vnd.api+json"
PAGE_SIZE = 1000  # psa-kb-facts §5: "page[size] (default 50, max 1000)"
MAX_PAGES = 10
# Another page is asked for only while this much of the search's KB_TIMEOUT is left unused:
# what was found by then is answered rather than lost to the timeout.
PAGING_TIME = KB_TIMEOUT * 0.6
# How long the list read is used for every search (IT Glue allows about 3000 requests in 5
# minutes: a page per search of each new ticket would spend them on reading the same list).
LISTING_TTL = 120.0


# The words of a search as typed (`kb Outlook, password?`): letters and digits, no punctuation.
_WORD = re.compile(r"[^\W_]+")


def name_matches(name: str, words: list[str]) -> bool:
    """Every word searched for is in the document's name (ignoring case)."""
    folded = name.casefold()
    return all(word in folded for word in words)


class ItGlueSource:
    name = "IT Glue"

    def __init__(self, http: aiohttp.ClientSession, *, url: str, api_key: SecretStr) -> None:
        self.http = http
        self.base = url.rstrip("/")
        self._api_key = api_key
        self._reading = asyncio.Lock()
        self._listing: list[KbArticle] | None = None
        self._listing_until = 0.0

    def __repr__(self) -> str:
        return f"ItGlueSource(url={self.base!r})"

    async def _page(self, number: int) -> tuple[list[Any], bool]:
        """One page of the documents list, and whether another follows."""
        data = await get_json(
            self.http,
            f"{self.base}/documents",
            params={"page[size]": str(PAGE_SIZE), "page[number]": str(number)},
            headers={
                "x-api-key": self._api_key.get_secret_value(),
                "Content-Type": MEDIA_TYPE,
                "Accept": MEDIA_TYPE,
            },
            service="IT Glue",
        )
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise KbUnavailable("IT Glue: the answer has no JSON:API `data` list", not_api=True)
        meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
        more = bool(meta.get("next-page")) if "next-page" in meta else len(items) >= PAGE_SIZE
        return items, more

    async def _documents(self) -> list[KbArticle]:
        """Every document IT Glue lists (as far as PAGING_TIME allows), read once for all the
        searches of LISTING_TTL: each search would otherwise read the whole list again."""
        async with self._reading:
            if self._listing is not None and time.monotonic() < self._listing_until:
                return self._listing
            started = time.monotonic()
            documents: list[KbArticle] = []
            for number in range(1, MAX_PAGES + 1):
                items, more = await self._page(number)
                documents += [a for a in map(self._article, items) if a is not None]
                if not more or time.monotonic() - started > PAGING_TIME:
                    break
            self._listing, self._listing_until = documents, time.monotonic() + LISTING_TTL
            return documents

    async def search(self, query: str, *, limit: int) -> list[KbArticle]:
        words = _WORD.findall(query.casefold())
        if not words:
            return []
        found = (a for a in await self._documents() if name_matches(a.title, words))
        return list(itertools.islice(found, limit))

    @staticmethod
    def _article(item: Any) -> KbArticle | None:
        if not isinstance(item, dict):
            return None
        attributes = item.get("attributes")
        if not isinstance(attributes, dict):
            return None
        # A plain-text name (no search highlights, not HTML): shown as written.
        title = " ".join(str(attributes.get("name") or "").split())
        # The page in IT Glue's web app; never the API's own address (`kb.url`), which
        # answers a browser with 401 JSON (it wants the key). None: the title alone.
        url = str(attributes.get("resource-url") or attributes.get("url") or "")
        return KbArticle(title, url) if title else None
