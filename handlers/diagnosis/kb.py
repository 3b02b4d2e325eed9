"""The knowledge-base interface the core searches through; one source per system in bot/kb/."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any, Protocol

# KB look-ups take at most this long (SPEC), wherever they are made.
KB_TIMEOUT = 5.0
_HIGHLIGHT = re.compile(r"@@@(?:end)?hl@@@|</?(?:em|b|strong|mark|span)[^>]*>", re.IGNORECASE)


@dataclass(frozen=True)
class KbArticle:
    """One article a KB found: its title (no highlight markers) and where to read it."""

    title: str
    url: str

    def to_dict(self) -> dict[str, str]:
        return {"title": self.title, "url": self.url}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KbArticle:
        return cls(title=str(data.get("title", "")), url=str(data.get("url", "")))


class KbUnavailable(Exception):
    """The KB could not be asked or did not answer usefully; the message says why (no secrets).
    `status`: the HTTP status the KB answered with, if it answered; `retry_after`: the seconds
    the KB asked the bot to wait before asking again (429, 503); `not_api`: it answered, but
    not as its API does (an HTML page, broken JSON, JSON without the list of articles)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        not_api: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.not_api = not_api


class KbSource(Protocol):
    """A knowledge base the bot can search (Hudu, IT Glue, Confluence)."""

    @property
    def name(self) -> str:
        """The system's name as people know it: `Hudu`, `IT Glue`, `Confluence`."""
        ...

    async def search(self, query: str, *, limit: int) -> list[KbArticle]:
        """Up to `limit` articles matching `query`; KbUnavailable when the KB cannot answer."""
        ...


def clean_title(raw: str) -> str:
    """A title as people read it: search-highlight markers and tags removed, entities decoded,
    whitespace collapsed."""
    return " ".join(html.unescape(_HIGHLIGHT.sub("", raw)).split())
