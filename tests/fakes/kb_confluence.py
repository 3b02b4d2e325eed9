"""Fake Confluence Cloud search (psa-kb-facts §5): `GET /wiki/rest/api/search?cql=…`.

Auth: HTTP Basic `<email>:<api token>` (401 otherwise). Understands the CQL the bot writes:
`type=page`, `space="KEY"` and `text ~ "words"` joined by AND (quoted values with `\\"` and
`\\\\` escapes; an AND inside quotes is part of the value). The text inside is parsed as
Confluence parses it, Lucene's query syntax (`text_matches`): unbalanced quotes or parentheses,
a leading wildcard, a range or a trailing backslash answer 400 ("Could not parse cql"), and
`NOT` / `-` exclude, `OR` alternates, `field:` names a field. Titles come back
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


class LuceneSyntaxError(ValueError):
    """What Confluence answers 400 for: text it cannot parse as its Lucene query syntax."""


# Lucene's query syntax inside `text ~ "…"` (Confluence "Performing text searches using CQL"):
# quotes make phrases, `(` `)` group, `[` `]` `{` `}` ranges, `*` `?` wildcards (never first),
# `~` fuzzy, `^` boost, `field:` a field, `-` `!` `NOT` exclude, `+` require, `AND` `OR` `&&`
# `||` combine (operators in capitals only), `\\` escapes the next character.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|(?:[^\s"\\]|\\.)+')
_MODIFIER = re.compile(r"(?<!\\\\)[~^][0-9.]*$")  # fuzzy `roam~`, boost `word^2`
_STOP_WORDS = {"and", "or", "not", "the", "a", "an", "to", "of", "in", "is"}


def _check_syntax(query: str) -> None:
    depth = 0
    quoted = escaped = False
    for index, char in enumerate(query):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif quoted:
            continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise LuceneSyntaxError(f"unbalanced ')' at {index}")
        elif char in "[]{}":
            raise LuceneSyntaxError(f"range syntax at {index}")
        elif char in "*?" and (index == 0 or query[index - 1] in " \t\n(:"):
            raise LuceneSyntaxError(f"'{char}' not allowed as first character in WildcardQuery")
    if escaped:
        raise LuceneSyntaxError("the query ends with a backslash")
    if quoted:
        raise LuceneSyntaxError("unbalanced quotes")
    if depth:
        raise LuceneSyntaxError("unbalanced '('")


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def text_matches(query: str, *texts: str) -> bool:
    """The text search, as Lucene parses it: LuceneSyntaxError where Confluence answers 400;
    words (phrases as one) that must all be found, `OR` between alternatives, `NOT` / `-` /
    `!` before a word excluding it, `field:word` searching a field pages here do not have
    (only `title:` and `text:` are known), stop words ignored."""
    _check_syntax(query)
    # Lucene's analyzer: whole words (letters and digits), lower case; `aadsts50076` is one
    # word, which a search for `50076` does not find.
    haystack = set(re.findall(r"\w+", " ".join(texts).lower()))
    groups: list[list[tuple[bool, str]]] = [[]]
    negate = False
    for token in _TOKEN.findall(query):
        if token in ("OR", "||"):
            groups.append([])
            continue
        if token in ("AND", "&&", "+"):
            continue
        if token in ("NOT", "!", "-"):
            negate = True
            continue
        token = token.strip("()")
        if token[:1] in ("-", "!"):
            negate, token = True, token[1:]
        token = token.lstrip("+")
        field, colon, value = token.partition(":")
        if colon and not field.startswith('"') and not field.endswith("\\"):
            if field.lower() not in ("title", "text"):
                groups[-1].append((negate, "\x00no such field\x00"))
                negate = False
                continue
            token = value
        word = _unescape(_MODIFIER.sub("", token).strip('"')).replace("*", "").lower()
        if word not in _STOP_WORDS and re.search(r"\w", word):
            groups[-1].append((negate, word))
        negate = False

    def found(word: str) -> bool:  # a phrase: every word of it (order not checked)
        return all(w in haystack for w in re.findall(r"\w+", word)) and "\x00" not in word

    def matches(group: list[tuple[bool, str]]) -> bool:
        wanted = [w for negated, w in group if not negated]
        unwanted = [w for negated, w in group if negated]
        # A query of exclusions only finds nothing (Lucene's pure negative query).
        return (
            bool(wanted) and all(found(w) for w in wanted) and not any(found(w) for w in unwanted)
        )

    return any(matches(group) for group in groups if group)


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
        try:
            found = [
                p
                for p in self.pages
                if clauses.get("type", "page") == "page"
                and clauses.get("space", p["space"]) == p["space"]
                and text_matches(text, p["title"], p["body"])
            ]
        except LuceneSyntaxError as exc:
            message = f"Could not parse cql : {clauses.get('text', '')!r}: {exc}"
            return web.json_response({"statusCode": 400, "message": message}, status=400)
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
