"""Fake Hudu REST API: `GET /api/v1/articles` (psa-kb-facts §5).

Auth: `x-api-key` (401 otherwise). `search` matches every word in the name or HTML content
(case-insensitive); `page` / `page_size` page the list (25 a page by default). Answers
`{"articles": [{id, name, content, company_id, folder_id, slug, url, draft, updated_at}]}`;
`GET /api/v1/articles/<id>` answers `{"article": {...}}`.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from aiohttp import web

from .base import FakeServer, Recorded

_ids = itertools.count(1)


def words_match(query: str, *texts: str) -> bool:
    haystack = " ".join(texts).lower()
    return all(word in haystack for word in query.lower().split())


class FakeHudu(FakeServer):
    def __init__(self, *, api_key: str = "hudu-test-key-0123") -> None:
        super().__init__()
        self.api_key = api_key
        self.articles: list[dict[str, Any]] = []

    def add_article(self, name: str, content: str = "", *, draft: bool = False) -> dict[str, Any]:
        ident = next(_ids)
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") + f"-{ident}"
        article = {
            "id": ident,
            "name": name,
            "content": f"<p>{content}</p>",
            "company_id": None,
            "folder_id": None,
            "slug": slug,
            "url": f"{self.url}/kba/{slug}",
            "draft": draft,
            "updated_at": "2026-12-01T10:00:00.000Z",
        }
        self.articles.append(article)
        return article

    def reset_state(self) -> None:
        self.articles.clear()

    async def handle(self, rec: Recorded, request: web.Request) -> web.StreamResponse:
        if rec.headers.get("x-api-key") != self.api_key:
            return web.json_response({"error": "Invalid API key"}, status=401)
        if rec.method != "GET":
            return web.json_response({"error": "Method not allowed"}, status=405)
        if rec.path == "/api/v1/articles":
            query = rec.query.get("search", "")
            found = [a for a in self.articles if words_match(query, a["name"], a["content"])]
            page = int(rec.query.get("page", "1") or 1)
            size = int(rec.query.get("page_size", "25") or 25)
            return web.json_response({"articles": found[(page - 1) * size : page * size]})
        match = re.fullmatch(r"/api/v1/articles/(\d+)", rec.path)
        if match:
            for article in self.articles:
                if article["id"] == int(match.group(1)):
                    return web.json_response({"article": article})
        return web.json_response({"error": "Not found"}, status=404)
