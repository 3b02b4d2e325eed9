"""Confluence Cloud: CQL `text ~ "…"` through `GET <site>/wiki/rest/api/search`, HTTP Basic
with the account e-mail (`KB_USERNAME`) and an API token (`KB_API_KEY`)."""

from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import urljoin

import aiohttp
from pydantic import SecretStr

from bot.kb.http import get_json
from handlers.diagnosis import KbArticle, KbUnavailable, clean_title


def cql_string(value: str) -> str:
    """A CQL string literal: double quotes, with `"` and `\\` escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# Confluence reads the text of `text ~ "…"` as Lucene's query syntax: these characters would
# make phrases, groups, ranges, wildcards, fuzzy or boosted terms, fields, exclusions or
# escapes of what a technician typed (or a 400 "Could not parse cql" when unbalanced).
_LUCENE_SIGNS = re.compile(r'[+\-&|!(){}\[\]^"~*?:\\/]')
# Its operators, in capitals only; in lower case they are words (stop words) like any other.
_LUCENE_OPERATORS = frozenset({"AND", "OR", "NOT", "TO"})


def text_terms(typed: str) -> str:
    """What a technician typed as plain search words for `text ~`: Lucene's signs become
    spaces (its analyzer splits words there too) and its operators lower case, so every word
    is searched for and nothing typed can change the query or make it unparseable."""
    words = _LUCENE_SIGNS.sub(" ", typed).split()
    return " ".join(w.lower() if w in _LUCENE_OPERATORS else w for w in words)


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

    def cql(self, words: str) -> str:
        """The CQL for `words` (already `text_terms`)."""
        parts = ["type=page"]
        if self.space:
            parts.append(f"space={cql_string(self.space)}")
        parts.append(f"text ~ {cql_string(words)}")
        return " AND ".join(parts)

    async def search(self, query: str, *, limit: int) -> list[KbArticle]:
        words = text_terms(query)
        if not words:
            return []  # only signs: nothing to search for
        username, token = self._auth
        data = await get_json(
            self.http,
            f"{self.site}/wiki/rest/api/search",
            params={"cql": self.cql(words), "limit": str(max(limit, 1))},
            headers={"Accept": "application/json", "Authorization": basic(username, token)},
            service="Confluence",
        )
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list):
            raise KbUnavailable("Confluence: the answer has no `results` list", not_api=True)
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
