"""Fake Confluence Cloud search (psa-kb-facts §5): `GET /wiki/rest/api/search?cql=…`.

Auth: HTTP Basic `<email>:<api token>` (401 otherwise). Understands the CQL the bot writes:
`type=page`, `space="KEY"` and `text ~ "words"` joined by AND (quoted values with `\\"` and
`\\\\` escapes; an AND inside quotes is part of the value); a page matches when every word is
in its title or body, the text search's own `AND` / `OR` taken as operators. Titles come back
with search-highlight markers (`@@@hl@@@word@@@endhl@@@`) around matched words, as Confluence
does; `url` is relative to `_links.base` (`<site>/wiki`).
"""

from __future__ import annotations

import base64
import itertools
import re
from typing import Any

from aiohttp import web

from .base import FakeServer, Recorded
from .kb_hudu import words_match

_ids = itertools.count(98001)
_CLAUSE = re.compile(r'(\w+)\s*(=|~)\s*("(?:[^"\\]|\\.)*"|\w+)')


def _unquote(value: str) -> str:
    if value.startswith('"'):
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


_JOINED = re.compile(r'\s*(\w+\s*(?:=|~)\s*(?:"(?:[^"\\]|\\.)*"|\w+))\s*(AND\s+|$)')


def parse_cql(cql: str) -> dict[str, str]:
    """{field: value} of an AND of simple clauses; ValueError for anything else."""
    clauses: dict[str, str] = {}
    rest = cql.strip()
    if not rest:
        raise ValueError("cql is required")
    while rest:
        joined = _JOINED.match(rest)
        if not joined or (not joined.group(2) and joined.end() != len(rest)):
            raise ValueError(f"could not parse CQL near {rest!r}")
        match = _CLAUSE.fullmatch(joined.group(1))
        assert match is not None
        clauses[match.group(1).lower()] = _unquote(match.group(3))
        rest = rest[joined.end() :]
        if joined.group(2) and not rest:
            raise ValueError("could not parse CQL: AND at the end")
    return clauses


def text_matches(query: str, *texts: str) -> bool:
    """The text search: words (phrase quotes ignored) that must all be found, `AND` between
    them adds nothing, `OR` separates alternatives."""
    words = [w.strip('"') for w in query.split()]
    groups: list[list[str]] = [[]]
    for word in words:
        if word == "OR":
            groups.append([])
        elif word and word != "AND":
            groups[-1].append(word)
    return any(words_match(" ".join(group), *texts) for group in groups if group) or not any(groups)


def highlight(title: str, query: str) -> str:
    out = title
    for word in set(query.lower().split()):
        out = re.sub(rf"(?i)\b({re.escape(word)})\b", r"@@@hl@@@\1@@@endhl@@@", out)
    return out


class FakeConfluence(FakeServer):
    def __init__(self, *, email: str = "kb@example.com", token: str = "atl-test-token-0123"):
        super().__init__()
        self.email = email
        self.token = token
        self.pages: list[dict[str, Any]] = []

    @property
    def site(self) -> str:
        return self.url

    def add_page(self, title: str, body: str = "", *, space: str = "IT") -> str:
        ident = str(next(_ids))
        self.pages.append({"id": ident, "title": title, "body": body, "space": space})
        return ident

    def reset_state(self) -> None:
        self.pages.clear()

    def _authorized(self, rec: Recorded) -> bool:
        header = rec.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:]).decode()
        except ValueError:
            return False
        return decoded == f"{self.email}:{self.token}"

    async def handle(self, rec: Recorded, request: web.Request) -> web.StreamResponse:
        if not self._authorized(rec):
            return web.json_response({"message": "Unauthorized"}, status=401)
        if rec.path != "/wiki/rest/api/search":
            return web.json_response({"message": "Not Found"}, status=404)
        try:
            clauses = parse_cql(rec.query.get("cql", ""))
        except ValueError as exc:
            return web.json_response({"statusCode": 400, "message": str(exc)}, status=400)
        text = clauses.get("text", "")
        found = [
            p
            for p in self.pages
            if clauses.get("type", "page") == "page"
            and clauses.get("space", p["space"]) == p["space"]
            and text_matches(text, p["title"], p["body"])
        ]
        limit = int(rec.query.get("limit", "25") or 25)
        results = [
            {
                "content": {"id": p["id"], "type": "page", "title": p["title"]},
                "title": highlight(p["title"], text),
                "excerpt": p["body"][:100],
                "url": f"/spaces/{p['space']}/pages/{p['id']}",
                "lastModified": "2026-12-01T10:00:00.000Z",
                "score": 1.0,
            }
            for p in found[:limit]
        ]
        return web.json_response(
            {
                "results": results,
                "start": 0,
                "limit": limit,
                "size": len(results),
                "totalSize": len(found),
                "_links": {"base": f"{self.url}/wiki", "context": "/wiki"},
            }
        )
