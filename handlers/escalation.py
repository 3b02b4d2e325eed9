"""PLACEHOLDER: being written; replaced wholesale by its owner."""

from __future__ import annotations

from typing import Any

from handlers.types import InvalidInput, Reply


async def escalate_command(*args: Any) -> Reply:
    raise InvalidInput("This is not available yet.")


async def escalate_button(*args: Any) -> Reply:
    raise InvalidInput("This is not available yet.")


async def submit(*args: Any) -> Reply:
    raise InvalidInput("This is not available yet.")

