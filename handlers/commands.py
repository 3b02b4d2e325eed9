"""Parse the text after `/ticket` (Slack) or `ticket` (Teams) into a neutral command."""

from __future__ import annotations

import re
from dataclasses import dataclass

VERBS = ("new", "show", "mine", "verify", "p1", "escalate", "time", "close", "report", "help")
TICKET_REF = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,9}-\d{1,12}$")

USAGE = "\n".join(
    [
        "Usage:",
        "  ticket new [summary]        open the intake form",
        "  ticket show HD-7            show a ticket",
        "  ticket mine                 your open tickets",
        "  ticket verify HD-7          confirm the requester's identity with their manager",
        "  ticket p1 HD-7              raise to P1 (incident notice + page)",
        "  ticket escalate HD-7        escalate with the required facts",
        "  ticket time HD-7 45m [note] log time",
        "  ticket close HD-7           close with a resolution note",
        "  ticket report [client] [YYYY-MM-DD YYYY-MM-DD]",
        "                              the QBR report with a chart (default: all clients,",
        "                              the 90 days ending today)",
        "  ticket help                 this help",
    ]
)


@dataclass(frozen=True)
class Command:
    verb: str
    args: str = ""

    @property
    def words(self) -> list[str]:
        return self.args.split()


def parse(text: str) -> Command:
    """`new Printer jams` -> Command("new", "Printer jams"); empty -> new; unknown -> help."""
    text = (text or "").strip()
    if not text:
        return Command("new")
    head, _, rest = text.partition(" ")
    verb = head.lower()
    if verb not in VERBS:
        return Command("help", text)
    return Command(verb, rest.strip())


def strip_teams_prefix(text: str) -> str | None:
    """`ticket show HD-1` -> `show HD-1`; None when the message is not a ticket command."""
    stripped = (text or "").strip()
    head, _, rest = stripped.partition(" ")
    if head.lower() not in ("ticket", "/ticket"):
        return None
    return rest.strip()


def ticket_ref(command: Command) -> str | None:
    """The ticket number argument (`HD-7`), normalised to upper case, or None."""
    words = command.words
    if words and TICKET_REF.match(words[0]):
        return words[0].upper()
    return None
