"""Durations as people type them: `45m`, `1h30m`, `2h`, `1d`, `20s`, `0s`."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+)\s*([dhms])", re.IGNORECASE)
_WHOLE = re.compile(r"^\s*(?:\d+\s*[dhms]\s*)+$", re.IGNORECASE)
_UNIT = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> timedelta:
    """Parse `1h30m`-style text; raises ValueError naming the problem."""
    if not isinstance(text, str) or not _WHOLE.match(text):
        raise ValueError(f"{text!r} is not a duration like 45m, 1h30m, 2h or 1d")
    seconds = sum(int(n) * _UNIT[u.lower()] for n, u in _PART.findall(text))
    try:
        return timedelta(seconds=seconds)
    except OverflowError:  # more days than a timedelta holds
        raise ValueError(f"{text!r} is not a duration like 45m, 1h30m, 2h or 1d") from None


def format_duration(delta: timedelta) -> str:
    """Render as `1h 30m` / `45m` / `2d 3h`, with seconds when there are any (`20s`, `1m 5s`)."""
    total = int(delta.total_seconds())
    minutes, secs = divmod(total, 60)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    parts = [f"{days}d"] * bool(days) + [f"{hours}h"] * bool(hours) + [f"{mins}m"] * bool(mins)
    parts += [f"{secs}s"] * bool(secs)
    return " ".join(parts) or "0m"
