"""Confluence Cloud: CQL `text ~ "…"` through `GET <site>/wiki/rest/api/search`, HTTP Basic
with the account e-mail (`KB_USERNAME`) and an API token (`KB_API_KEY`)."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urljoin

import aiohttp
from pydantic import SecretStr

from bot.kb.http import get_json
from handlers.diagnosis import KbArticle, KbUnavailable, clean_title


def cql_string(value: str) -> str:
    """A CQL string literal: double quotes, with `"` and `\\` escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def basic(username: str, token: SecretStr) -> str:
    """HTTP Basic credentials, as Confluence Cloud wants them (e-mail and API token)."""
    raw = f"{username}:{token.get_secret_value()}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def site_of(url: str) -> str:
    """The site without a trailing `/wiki` (both spellings of `kb.url` are accepted)."""
    base = url.rstrip("/")
    return base[: -len("/wiki")] if base.lower().endswith("/wiki") else base


class ConfluenceSource:
    name = "Confluence"

    def __init__(
        self,
        http: aiohttp.ClientSession,
        *,
        url: str,
        username: str,
        api_token: SecretStr,
        space: str | None = None,
    ) -> None:
        self.http = http
        self.site = site_of(url)
        self.space = space
        self._auth = (username, api_token)

    def __repr__(self) -> str:
        return f"ConfluenceSource(site={self.site!r}, space={self.space!r})"

    def cql(self, query: str) -> str:
        parts = ["type=page"]
        if self.space:
            parts.append(f"space={cql_string(self.space)}")
        parts.append(f"text ~ {cql_string(query)}")
        return " AND ".join(parts)

    async def search(self, query: str, *, limit: int) -> list[KbArticle]:
        username, token = self._auth
        data = await get_json(
            self.http,
            f"{self.site}/wiki/rest/api/search",
            params={"cql": self.cql(query), "limit": str(max(limit, 1))},
            headers={"Accept": "application/json", "Authorization": basic(username, token)},
            service="Confluence",
        )
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list):
            raise KbUnavailable("Confluence: the answer has no `results` list")
        links = data.get("_links") if isinstance(data.get("_links"), dict) else {}
        base = str(links.get("base") or f"{self.site}/wiki")
        found: list[KbArticle] = []
        for item in results:
            if not isinstance(item, dict):
                continue
            content: dict[str, Any] = (
                item["content"] if isinstance(item.get("content"), dict) else {}
            )
            title = clean_title(str(item.get("title") or content.get("title") or ""))
            relative = str(item.get("url") or "")
            if not relative and isinstance(content.get("_links"), dict):
                relative = str(content["_links"].get("webui") or "")
            url = urljoin(base.rstrip("/") + "/", relative.lstrip("/")) if relative else ""
            if title and url:
                found.append(KbArticle(title, url))
            if len(found) == limit:
                break
        return found
