"""Small text renderings every domain shares: times and people."""

from __future__ import annotations

from datetime import datetime


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "-"


def person(name: str, ident: str) -> str:
    return f"{name} ({ident})" if name and name != ident else ident
