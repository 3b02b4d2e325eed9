"""One entry point for both platforms: route an Interaction to its use case."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from cards.model import ActionId
from handlers import closure, csat, escalation, identity, incidents, reports, tickets
from handlers.commands import USAGE, Command, parse
from handlers.deps import Deps
from handlers.types import DomainError, Duplicate, Interaction, InvalidInput, Reply
from storage.errors import is_unavailable

log = logging.getLogger(__name__)
UNAVAILABLE = (
    "The help desk cannot save tickets right now (its database is not answering). Nothing "
    "was saved: please try again in a few minutes."
)
# Slack and Teams give a bot 3 s to answer.
ANSWER_BUDGET = 2.5

CommandHandler = Callable[[Deps, Interaction, Command], Awaitable[Reply]]
ActionHandler = Callable[[Deps, Interaction], Awaitable[Reply]]


async def _new(deps: Deps, interaction: Interaction, command: Command) -> Reply:
    return tickets.open_form(deps, interaction, command)


async def _mine(deps: Deps, interaction: Interaction, command: Command) -> Reply:
    return await tickets.mine(deps, interaction)


async def _help(deps: Deps, interaction: Interaction, command: Command) -> Reply:
    return Reply(text=USAGE)


COMMANDS: dict[str, CommandHandler] = {
    "new": _new,
    "show": tickets.show,
    "mine": _mine,
    "verify": identity.verify_command,
    "p1": incidents.raise_p1_command,
    "escalate": escalation.escalate_command,
    "time": closure.time_command,
    "close": closure.close_command,
    "report": reports.report_command,
    "help": _help,
}

ACTIONS: dict[ActionId, ActionHandler] = {
    ActionId.TICKET_CREATE: tickets.create_ticket,
    ActionId.VERIFY: identity.verify_button,
    ActionId.ESCALATE: escalation.escalate_button,
    ActionId.ESCALATE_SUBMIT: escalation.submit,
    ActionId.CLOSE: closure.close_button,
    ActionId.CLOSE_SUBMIT: closure.submit,
    ActionId.IDENTITY_APPROVE: identity.approve,
    ActionId.IDENTITY_DENY: identity.deny,
    ActionId.CSAT_RATE: csat.rate,
    ActionId.CSAT_COMMENT: csat.comment,
}


async def handle(deps: Deps, interaction: Interaction) -> Reply:
    """Answer one interaction; known domain errors become a message to the person."""
    try:
        if interaction.action is not None:
            return await ACTIONS[interaction.action](deps, interaction)
        command = parse(interaction.text)
        return await COMMANDS[command.verb](deps, interaction, command)
    except Duplicate as exc:
        log.info("duplicate delivery ignored: %s", exc)
        return Reply(duplicate=True)
    except InvalidInput as exc:
        log.info("invalid input: %s %s", exc, sorted(exc.field_errors))
        return Reply(text=str(exc), field_errors=exc.field_errors)
    except DomainError as exc:
        log.info("refused: %s", exc)
        return Reply(text=str(exc))
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        deps.database_trouble(exc)
        return unavailable()


def unavailable() -> Reply:
    """What a person is told while the database cannot be reached (nothing was stored)."""
    return Reply(text=UNAVAILABLE, form_error=UNAVAILABLE)


async def answer(deps: Deps, interaction: Interaction, *, budget: float = ANSWER_BUDGET) -> Reply:
    """`handle`, answered within `budget` seconds whatever the database does.

    Slack and Teams want an answer within 3 s. Work still running then is cancelled (its
    transaction is rolled back, its connection dropped; nothing it did is committed) and the
    person is told to try again.
    """
    task = asyncio.ensure_future(handle(deps, interaction))
    done, _ = await asyncio.wait({task}, timeout=budget)
    if task in done:
        return task.result()
    task.cancel()
    _LATE.add(task)  # finishes its clean-up in the background
    task.add_done_callback(_forget)
    deps.database_trouble(TimeoutError(f"no answer within {budget:.1f} s"))
    return unavailable()


_LATE: set[asyncio.Task[Reply]] = set()


def _forget(task: asyncio.Task[Reply]) -> None:
    _LATE.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.info("work given up after the answer budget ended with %r", task.exception())
