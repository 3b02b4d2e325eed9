"""Knowledge-base sources (Hudu, IT Glue, Confluence) behind the core's KbSource interface."""

from __future__ import annotations

import aiohttp

from bot.kb.cache import CachedKb
from bot.kb.confluence import ConfluenceSource
from bot.kb.hudu import HuduSource
from bot.kb.itglue import ItGlueSource
from bot.settings import Settings
from handlers.diagnosis import KbSource


def create_kb(settings: Settings, http: aiohttp.ClientSession) -> KbSource | None:
    """The configured KB on the app's shared HTTP session, cached briefly; None without
    `kb.source` (settings already checked its URL and credentials)."""
    config = settings.config.kb
    if config.source is None or config.url is None or settings.kb_api_key is None:
        return None
    source: KbSource
    if config.source == "hudu":
        source = HuduSource(http, url=config.url, api_key=settings.kb_api_key)
    elif config.source == "itglue":
        source = ItGlueSource(http, url=config.url, api_key=settings.kb_api_key)
    else:
        source = ConfluenceSource(
            http,
            url=config.url,
            username=settings.kb_username or "",
            api_token=settings.kb_api_key,
            space=config.space,
        )
    return CachedKb(source)
