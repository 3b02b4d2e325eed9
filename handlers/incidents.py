"""PLACEHOLDER: being written; replaced wholesale by its owner."""

from __future__ import annotations

from typing import Any

from handlers.types import InvalidInput, Reply


async def raise_p1_command(*args: Any) -> Reply:
    raise InvalidInput("This is not available yet.")


async def on_p1(*args: Any, **kwargs: Any) -> None:
    """PLACEHOLDER."""


async def on_ticket_closed(*args: Any, **kwargs: Any) -> None:
    """PLACEHOLDER."""
