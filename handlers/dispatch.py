"""One entry point for both platforms: route an Interaction to its use case."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from cards.model import ActionId
from handlers import closure, csat, escalation, identity, incidents, tickets
from handlers.commands import USAGE, Command, parse
from handlers.deps import Deps
from handlers.directory import DirectoryUnavailable, unavailable_text
from handlers.types import DomainError, Duplicate, Interaction, InvalidInput, Reply

log = logging.getLogger(__name__)

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
    except DirectoryUnavailable as exc:
        # Whatever needed the directory (who is a technician, who the requester is) was not
        # done; the source logged why. Not "something went wrong": it is an outage.
        log.warning("directory unavailable: %s", exc)
        return Reply(text=unavailable_text(exc, "this could not be done"))
