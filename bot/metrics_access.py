"""Who may read GET /metrics: said by check-config and at start-up. Apart from bot.metrics so
that check-config imports no web server or metrics registry to say it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.settings import Settings


def metrics_access(settings: Settings, port: int | None = None) -> str:
    """The start-up line saying who may read GET /metrics (served on `port`, else PORT)."""
    if settings.metrics_token is not None:
        return "GET /metrics: with 'Authorization: Bearer <METRICS_TOKEN>' only"
    return (
        f"GET /metrics: open to anyone who reaches {settings.host}:{port or settings.port} "
        "(set METRICS_TOKEN to require a bearer token)"
    )
