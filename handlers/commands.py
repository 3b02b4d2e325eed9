"""Parse the text after `/ticket` (Slack) or `ticket` (Teams) into a neutral command."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from cards.model import Card, Facts, Text

VERBS = (
    "new",
    "show",
    "mine",
    "verify",
    "p1",
    "escalate",
    "time",
    "confirm",
    "link",
    "close",
    "similar",
    "kb",
    "report",
    "help",
)
TICKET_REF = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,9}-\d{1,12}$")

# What each verb does, in the order `help` lists them (Slack shows `/ticket`, Teams `ticket`;
# `{prefix}` in what it does is that word too).
USAGE: list[tuple[str, str]] = [
    ("new [summary]", "open the intake form"),
    ("show HD-7", "show a ticket"),
    ("mine", "your open tickets"),
    (
        "verify HD-7",
        "confirm the requester's identity with their manager (no manager to ask: "
        "`{prefix} verify HD-7 called-back` once you called them back on the number on file)",
    ),
    ("p1 HD-7", "raise to P1 (incident notice + page)"),
    ("escalate HD-7", "escalate with the required facts"),
    ("time HD-7 45m [note]", "log time"),
    ("confirm HD-7", "ask the requester to try it again: Works now / Still broken"),
    ("link HD-9 HD-7", "file HD-9 under the open P1 HD-7 (one more report of it)"),
    ("close HD-7", "close with a resolution note"),
    ("similar HD-7", "resolved tickets and KB articles like HD-7 (only to you)"),
    ("kb <words>", "search the KB and resolved tickets (only to you)"),
    (
        "report [client] [YYYY-MM-DD YYYY-MM-DD]",
        "the QBR report with a chart (default: all clients, the 90 days ending today)",
    ),
    ("help", "this help"),
]
WELCOME_VERBS = ("new", "show", "mine", "help")


def _prefix(platform: str) -> str:
    return "/ticket" if platform == "slack" else "ticket"


@functools.cache  # static per platform; cards are frozen and never changed once built
def usage(platform: str) -> Card:
    """`help`: one line per command (a card, so Teams cannot run the lines together)."""
    prefix = _prefix(platform)
    lines = [(f"{prefix} {command}", does.format(prefix=prefix)) for command, does in USAGE]
    return Card(
        title="Help desk commands",
        body=[Facts(lines)],
        fallback="Help desk commands: " + "; ".join(f"{c}: {d}" for c, d in lines),
    )


def welcome(platform: str) -> Card:
    """What the bot says when it is added: who it is and the first commands to try."""
    prefix = _prefix(platform)
    lines = [
        (f"{prefix} {command}", "everything I can do" if command == "help" else does)
        for command, does in USAGE
        if command.split()[0] in WELCOME_VERBS
    ]
    return Card(
        title="Hi, I am the help-desk bot",
        body=[Text(f"Start a message with `{prefix}`:"), Facts(lines)],
        fallback=f"Hi, I am the help-desk bot. Start a message with {prefix} (try {prefix} help).",
    )


@dataclass(frozen=True)
class Command:
    verb: str
    args: str = ""

    @property
    def words(self) -> list[str]:
        return self.args.split()


# Said after a word in a sentence, not part of it: `mine.`, `show HD-7?`, `(HD-7)`.
_PUNCTUATION = ".,;:!?()[]{}\"'\u201c\u201d\u2018\u2019"
# The full-width forms of ASCII (U+FF01-U+FF5E: what an East Asian input method types in
# full-width mode, `show HD-1` as U+FF53 U+FF48 ...) read as the ASCII they show in a command
# word and a ticket number. Not NFKC, which also reads a superscript as a digit (`HD-1²`).
_FULL_WIDTH = {0xFF01 + n: 0x21 + n for n in range(0x5E)}


def _split(text: str) -> tuple[str, str]:
    """(first word, the rest): words end at any whitespace (a line break, a tab), not only
    at a space."""
    head, *rest = text.split(None, 1)
    return head, rest[0].strip() if rest else ""


def parse(text: str) -> Command:
    """`new Printer jams` -> Command("new", "Printer jams"); empty -> new; unknown -> help.
    A verb ending a sentence (`mine.`, `help?`) is that verb."""
    text = (text or "").strip()
    if not text:
        return Command("new")
    head, rest = _split(text)
    verb = head.translate(_FULL_WIDTH).lower()
    if verb not in VERBS:
        verb = verb.rstrip(_PUNCTUATION)
    if verb not in VERBS:
        return Command("help", text)
    return Command(verb, rest)


def strip_teams_prefix(text: str) -> str | None:
    """`ticket show HD-1` -> `show HD-1`; None when the message is not a ticket command."""
    stripped = (text or "").strip()
    if not stripped:
        return None
    head, rest = _split(stripped)
    if head.lower().rstrip(":,") not in ("ticket", "/ticket"):
        return None
    return rest


def ticket_ref(command: Command) -> str | None:
    """The ticket number argument (`HD-7`), normalised to upper case, or None."""
    words = command.words
    # `HD-7.`, `(HD-7)`, `HD-7` typed in full-width forms
    word = words[0].translate(_FULL_WIDTH).strip(_PUNCTUATION) if words else ""
    if TICKET_REF.match(word):
        # `hd-07` is HD-7, as ticket numbers named in messages are.
        prefix, _, number = word.upper().rpartition("-")
        return f"{prefix}-{int(number)}"
    return None
