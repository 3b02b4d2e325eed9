"""IT Glue documents (JSON:API): `GET <kb.url>/documents?filter[name]=…`, `x-api-key`.

IT Glue has no free-text search endpoint: documents are matched on their name.
"""

from __future__ import annotations

import aiohttp
from pydantic import SecretStr

from bot.kb.http import get_json
from handlers.diagnosis import KbArticle, KbUnavailable

MEDIA_TYPE = "application/vnd.api+json"


class ItGlueSource:
    name = "IT Glue"

    def __init__(self, http: aiohttp.ClientSession, *, url: str, api_key: SecretStr) -> None:
        self.http = http
        self.base = url.rstrip("/")
        self._api_key = api_key

    def __repr__(self) -> str:
        return f"ItGlueSource(url={self.base!r})"

    async def search(self, query: str, *, limit: int) -> list[KbArticle]:
        data = await get_json(
            self.http,
            f"{self.base}/documents",
            params={"filter[name]": query, "page[size]": str(max(limit, 1)), "page[number]": "1"},
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
        found: list[KbArticle] = []
        for item in items:
            if not isinstance(item, dict):
                continue
            attributes = item.get("attributes")
            if not isinstance(attributes, dict):
                continue
            # A plain-text name (no search highlights, not HTML): shown as written.
            title = " ".join(str(attributes.get("name") or "").split())
            # The page in IT Glue's web app; never the API's own address (`kb.url`), which
            # answers a browser with 401 JSON (it wants the key). None: the title alone.
            url = str(attributes.get("resource-url") or attributes.get("url") or "")
            if title:
                found.append(KbArticle(title, url))
            if len(found) == limit:
                break
        return found
