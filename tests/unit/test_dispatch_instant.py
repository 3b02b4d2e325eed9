"""Routes answered from memory (`help`) are answered at once: no task, no timer, no I/O."""

from __future__ import annotations

from typing import Any

import pytest

from cards.model import ActionId
from handlers import dispatch
from handlers.commands import usage
from handlers.config import HelpdeskConfig
from handlers.deps import Deps
from handlers.types import TICKET_MESSAGE, Actor, Conversation, Interaction


class Untouchable:
    """Sessions or a directory that a route answered from memory must never use."""

    def __call__(self, *_: Any, **__: Any) -> Any:
        raise AssertionError("a route answered from memory opened a database session")

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a route answered from memory asked the directory ({name})")


def command(text: str, platform: str = "slack") -> Interaction:
    return Interaction(
        actor=Actor(platform, "UTECH", "tech"),
        conversation=Conversation(platform, "C0HELP"),
        text=text,
        delivery_id=f"{platform}:command:trigger-1",
    )


def test_only_help_is_answered_from_memory() -> None:
    assert {verb for verb, route in dispatch.COMMANDS.items() if route.instant} == {"help"}
    # An unknown verb is answered with the help card: from memory too.
    assert dispatch.is_instant(command("help")) and dispatch.is_instant(command("frobnicate"))
    for text in ("", "new printer", "show HD-1", "mine", "report", "kb vpn"):
        assert not dispatch.is_instant(command(text))
    button = Interaction(
        actor=Actor("slack", "UTECH"),
        conversation=Conversation("slack", "C0HELP"),
        action=ActionId.VERIFY,
    )
    message = Interaction(
        actor=Actor("slack", "UTECH"),
        conversation=Conversation("slack", "C0HELP"),
        event=TICKET_MESSAGE,
    )
    assert not dispatch.is_instant(button) and not dispatch.is_instant(message)


@pytest.mark.parametrize(
    ("text", "platform"), [("help", "slack"), ("HELP", "slack"), ("no such verb", "teams")]
)
def test_help_is_answered_without_waiting_for_anything(text: str, platform: str) -> None:
    """`answer` gives help's reply in its first step: it never yields to the event loop (no
    task, no deadline timer), and uses neither the database nor the directory."""
    deps = Deps(config=HelpdeskConfig(), sessions=Untouchable(), directory=Untouchable())  # type: ignore[arg-type]
    step = dispatch.answer(deps, command(text, platform))
    with pytest.raises(StopIteration) as finished:
        step.send(None)
    reply = finished.value.value
    assert reply.card is usage(platform) and reply.static and reply.private
