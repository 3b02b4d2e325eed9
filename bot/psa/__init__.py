"""The system of record at the edge: one connector per PSA on the app's aiohttp session."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

# Imported where used: bot.settings imports bot.psa.settings, so this package is loaded by
# every `python -m bot` command, most of which need no HTTP client, ORM or PSA handlers.
if TYPE_CHECKING:
    import aiohttp
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from bot.notifiers import Notifiers
    from bot.psa.settings import PsaSettings
    from handlers.psa import PsaConnector


def create_connector(settings: PsaSettings, http: aiohttp.ClientSession) -> PsaConnector:
    """The connector for `psa.system`."""
    from bot.psa.autotask import AutotaskConnector
    from bot.psa.connectwise import ConnectWiseConnector
    from bot.psa.freshservice import FreshserviceConnector
    from bot.psa.servicenow import ServiceNowConnector

    connectors: dict[str, Callable[[aiohttp.ClientSession, PsaSettings], PsaConnector]] = {
        "servicenow": ServiceNowConnector,
        "freshservice": FreshserviceConnector,
        "connectwise": ConnectWiseConnector,
        "autotask": AutotaskConnector,
    }
    return connectors[settings.system](http, settings)


def register(
    notifiers: Notifiers, connector: PsaConnector, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Deliver every PSA outbox kind through `connector`."""
    from bot.psa.notifier import PsaNotifier
    from handlers import psa

    notifier = PsaNotifier(connector, sessions)
    for kind in psa.KINDS:
        notifiers.register(kind, notifier)


def describe(settings: PsaSettings | None, tiers: dict[str, str]) -> str:
    """What check-config and the start-up log say about the system of record."""
    if settings is None:
        return "none (set psa.system and psa.url in the config to sync tickets to a PSA)"
    from handlers import psa

    text = f"{psa.name_of(settings.system)} at {settings.url}"
    if tiers:
        text += "; contract tiers: " + ", ".join(f"{k} -> {v}" for k, v in tiers.items())
    return text
