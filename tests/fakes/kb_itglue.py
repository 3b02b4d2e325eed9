"""Fake IT Glue API (JSON:API, psa-kb-facts §5): `GET /documents` and
`GET /organizations/<id>/relationships/documents`.

Auth: `x-api-key` (401 otherwise). `filter[name]` matches the document name (every word,
case-insensitive); `page[size]` (default 50) / `page[number]` page it. Answers
`{"data": [{"id", "type": "documents", "attributes": {kebab-case...}}], "meta": {...}}`.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from aiohttp import web

from .base import FakeServer, Recorded
from .kb_hudu import words_match

_ids = itertools.count(5001)
MEDIA_TYPE = "application/vnd.api+json"


class FakeItGlue(FakeServer):
    def __init__(self, *, api_key: str = "ITG.itglue-test-key-0123") -> None:
        super().__init__()
        self.api_key = api_key
        self.documents: list[dict[str, Any]] = []

    def add_document(self, name: str, content: str = "", *, organization: int = 1) -> str:
        ident = str(next(_ids))
        self.documents.append(
            {
                "id": ident,
                "type": "documents",
                "attributes": {
                    "organization-id": organization,
                    "name": name,
                    "content": f"<p>{content}</p>",
                    "document-folder-id": None,
                    "resource-url": f"https://acme.itglue.com/{organization}/docs/{ident}",
                    "created-at": "2026-12-01T10:00:00.000Z",
                    "updated-at": "2026-12-01T10:00:00.000Z",
                },
            }
        )
        return ident

    def reset_state(self) -> None:
        self.documents.clear()

    def _page(self, rec: Recorded, found: list[dict[str, Any]]) -> web.Response:
        size = int(rec.query.get("page[size]", "50") or 50)
        number = int(rec.query.get("page[number]", "1") or 1)
        total_pages = max(1, -(-len(found) // size))
        body = {
            "data": found[(number - 1) * size : number * size],
            "meta": {
                "current-page": number,
                "next-page": number + 1 if number < total_pages else None,
                "prev-page": number - 1 if number > 1 else None,
                "total-pages": total_pages,
                "total-count": len(found),
                "filters": {},
            },
            "links": {},
        }
        return web.json_response(body, content_type=MEDIA_TYPE)

    async def handle(self, rec: Recorded, request: web.Request) -> web.StreamResponse:
        if rec.headers.get("x-api-key") != self.api_key:
            return web.json_response(
                {"errors": [{"status": "401", "title": "Unauthorized"}]},
                status=401,
                content_type=MEDIA_TYPE,
            )
        organization: int | None = None
        match = re.fullmatch(r"/organizations/(\d+)/relationships/documents", rec.path)
        if match:
            organization = int(match.group(1))
        elif rec.path != "/documents":
            return web.json_response(
                {"errors": [{"status": "404", "title": "Not Found"}]},
                status=404,
                content_type=MEDIA_TYPE,
            )
        if "filter[organization_id]" in rec.query:
            organization = int(rec.query["filter[organization_id]"])
        name = rec.query.get("filter[name]", "")
        found = [
            d
            for d in self.documents
            if words_match(name, d["attributes"]["name"])
            and organization in (None, d["attributes"]["organization-id"])
        ]
        return self._page(rec, found)
