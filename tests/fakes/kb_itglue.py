"""Fake IT Glue API (JSON:API, psa-kb-facts §5): `GET /documents` and
`GET /organizations/<id>/relationships/documents`.

Auth: `x-api-key` (401 otherwise). Documents are listed, not searched: IT Glue documents
no name or full-text filter for them (the documents index takes `filter[organization_id]`
and `filter[document_folder_id]`; Celerium.ITGlue's Get-ITGlueDocument offers only those, and
selic/mcp-itglue notes "The documents endpoint IGNORES filter[name]"), so a `filter[name]`
sent is ignored here too (`name_filters` records what was sent). `page[size]` (default 50,
at most 1000) / `page[number]` page the list. Answers
`{"data": [{"id", "type": "documents", "attributes": {kebab-case...}}], "meta": {...}}`.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from aiohttp import web

from .base import FakeServer, Recorded

_ids = itertools.count(5001)
MEDIA_TYPE = "application/vnd.api+json"


class FakeItGlue(FakeServer):
    def __init__(self, *, api_key: str = "ITG.itglue-test-key-0123") -> None:
        super().__init__()
        self.api_key = api_key
        self.documents: list[dict[str, Any]] = []
        self.name_filters: list[str] = []

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
        self.name_filters.clear()

    def _page(self, rec: Recorded, found: list[dict[str, Any]]) -> web.Response:
        size = int(rec.query.get("page[size]", "50") or 50)
        size = min(size, 1000)  # psa-kb-facts §5: "page[size] (default 50, max 1000)"
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
        if "filter[name]" in rec.query:
            self.name_filters.append(rec.query["filter[name]"])  # not a filter IT Glue applies
        found = [
            d for d in self.documents if organization in (None, d["attributes"]["organization-id"])
        ]
        return self._page(rec, found)
