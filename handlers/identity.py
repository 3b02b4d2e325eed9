"""PLACEHOLDER: being written; replaced wholesale by its owner."""

from __future__ import annotations

from typing import Any

from handlers.types import InvalidInput, Reply


async def verify_command(*args: Any) -> Reply:
    raise InvalidInput("This is not available yet.")


async def verify_button(*args: Any) -> Reply:
    raise InvalidInput("This is not available yet.")


async def approve(*args: Any) -> Reply:
    raise InvalidInput("This is not available yet.")


async def deny(*args: Any) -> Reply:
    raise InvalidInput("This is not available yet.")


async def start_check(*args: Any, **kwargs: Any) -> None:
    """PLACEHOLDER."""


def require_confirmed(*args: Any) -> None:
    """PLACEHOLDER."""
