"""Hudu articles: `GET <kb.url>/api/v1/articles?search=…` with the `x-api-key` header."""

from __future__ import annotations

from urllib.parse import urljoin

import aiohttp
from pydantic import SecretStr

from bot.kb.http import get_json
from handlers.diagnosis import KbArticle, KbUnavailable


class HuduSource:
    name = "Hudu"

    def __init__(self, http: aiohttp.ClientSession, *, url: str, api_key: SecretStr) -> None:
        self.http = http
        self.base = url.rstrip("/")
        self._api_key = api_key

    def __repr__(self) -> str:
        return f"HuduSource(url={self.base!r})"

    async def search(self, query: str, *, limit: int) -> list[KbArticle]:
        """Hudu's article search; drafts are left out."""
        data = await get_json(
            self.http,
            f"{self.base}/api/v1/articles",
            params={"search": query, "page": "1", "page_size": str(max(limit * 2, 10))},
            headers={"x-api-key": self._api_key.get_secret_value(), "Accept": "application/json"},
            service="Hudu",
        )
        articles = data.get("articles") if isinstance(data, dict) else None
        if not isinstance(articles, list):
            raise KbUnavailable("Hudu: the answer has no `articles` list", not_api=True)
        found: list[KbArticle] = []
        for item in articles:
            if not isinstance(item, dict) or item.get("draft"):
                continue
            # A plain-text name (no search highlights, not HTML): shown as written.
            title = " ".join(str(item.get("name") or "").split())
            url = self._link(item)
            if title and url:
                found.append(KbArticle(title, url))
            if len(found) == limit:
                break
        return found

    def _link(self, item: dict[str, object]) -> str:
        url = str(item.get("url") or "")
        if url:
            return urljoin(self.base + "/", url)
        slug = str(item.get("slug") or "")
        if slug:
            return f"{self.base}/kba/{slug}"
        return f"{self.base}/kba/{item.get('id')}" if item.get("id") else ""
