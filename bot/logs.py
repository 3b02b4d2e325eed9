"""Logging setup: text or JSON lines, each with correlation id and ticket number; no secrets."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime

from bot.correlation import correlation_id, ticket_number

# user:password in a URL (a calendar feed, a KB base URL) and credential-like query
# parameters (`?token=`, `&sig=`, the one-time `ticket=` of a Socket Mode URL).
_URL_PATTERNS = [
    # (The placeholder of the forms a message teaches, `://USER:PASSWORD@HOST`, stays.)
    re.compile(
        r"(?i)(?P<keep>\b[a-z][a-z0-9+.-]*://)(?!(?-i:USER:PASSWORD@))[^/\s@:]+:[^/\s@]+(?=@)"
    ),
    re.compile(
        r"(?i)(?P<keep>[?&](?:token|key|apikey|sig|signature|secret|code|ticket)=)[^\s&\"';]+"
    ),
]
# Shapes of credentials that must never reach a log line, whatever logged them:
# the `keep` group stays, the rest of the match becomes [redacted].
_SECRET_PATTERNS = [
    re.compile(r"(?P<keep>)xox[abposr]-[A-Za-z0-9-]+"),
    re.compile(r"(?P<keep>)xapp-[A-Za-z0-9-]+"),
    re.compile(r"(?i)(?P<keep>(?:bearer|basic|genie ?key)\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(
        r"(?i)(?P<keep>(?:routing_key|client_secret|password|access_token|signing_secret|x-api-key|api_key"
        r"|response_url)[\"']?\s*[:=]\s*[\"']?)[^\s\"',&]+"
    ),
    # An Authorization header's credentials, whatever its scheme (`Authorization: Token abc…`,
    # a dict's `'Authorization': 'abc…'`); a placeholder (`Bearer <METRICS_TOKEN>`) stays.
    re.compile(
        r"(?i)(?P<keep>authorization[\"']?\s*[:=]\s*[\"']?(?:[a-z][a-z-]*\s+)?)"
        r"[A-Za-z0-9._~+/=-]{8,}"
    ),
    # A Slack response_url (or incoming webhook) wherever it stands: whoever holds one can
    # post as the app for 30 minutes.
    re.compile(r"(?i)(?P<keep>https?://hooks\.slack\.com/)[^\s\"'<>]+"),
    *_URL_PATTERNS,
]


# Libraries that log credentials or whole payloads below WARNING (request headers with their
# Authorization, Slack envelopes with response_url and user text, LDAP binds, token requests,
# SQL with its parameters): whatever LOG_LEVEL says, only their warnings and errors are logged.
CAPPED_LOGGERS = (
    "slack_bolt",
    "slack_sdk",
    "aiohttp",
    "botbuilder",
    "botframework",
    "msrest",
    "msal",
    "azure",
    "urllib3",
    "requests",
    "ldap3",
    "asyncpg",
    "aiosqlite",
    "sqlalchemy",
    "apscheduler",
    "alembic",
)


def redact(text: str, patterns: list[re.Pattern[str]] = _SECRET_PATTERNS) -> str:
    """Mask tokens, keys and secrets in a log message."""
    for pattern in patterns:
        text = pattern.sub(lambda m: m.group("keep") + "[redacted]", text)
    return text


def one_line(text: str, limit: int) -> str:
    """An outside service's words (a PSA's or a KB's error message) fit for a log line and a
    card: whitespace runs (newlines too) as one space, other characters that do not print
    (terminal escapes, bidi overrides that would reorder the line) as U+FFFD, at most `limit`
    characters."""
    line = " ".join(text.split())
    if not line.isprintable():
        line = "".join(c if c.isprintable() else "\ufffd" for c in line)
    return line if len(line) <= limit else line[: limit - 1] + "…"


def redact_urls(text: str) -> str:
    """Mask the credentials of URLs (user:password, a key in the query) in what the CLI
    prints: its own words (`MicrosoftAppPassword: required ...`) stay as they are."""
    return redact(text, _URL_PATTERNS)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = correlation_id.get()
        if not getattr(record, "ticket", None):
            record.ticket = ticket_number.get()
        return True


class _CapThirdParty(logging.Filter):
    """Holds back a capped library's records below WARNING at the handler: some libraries
    set their own loggers' levels (Bolt gives its loggers the root level as an app starts),
    so the level setup_logging puts on their parent is not enough by itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        name = record.name
        return not any(name == top or name.startswith(top + ".") for top in CAPPED_LOGGERS)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),
            "correlation_id": getattr(record, "correlation_id", "-"),
            "ticket": getattr(record, "ticket", "-"),
        }
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


# Line breaks (and the other control characters) in what a line quotes: an activity id or a
# text someone sent, unauthenticated callers' included. Written as they came, they would start
# lines of their own in the text log, forged to read as the bot's (CWE-117).
_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def _escaped(found: re.Match[str]) -> str:
    return found.group(0).encode("unicode_escape").decode("ascii")


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s [%(correlation_id)s %(ticket)s] %(message)s"
        )

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The line itself, one line whatever it quotes (a traceback still follows it)."""
        return _CONTROLS.sub(_escaped, super().formatMessage(record))

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_logging(*, fmt: str = "text", level: str = "INFO") -> None:
    """Configure the root logger once (idempotent)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_helpdesk", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler()
    handler._helpdesk = True  # type: ignore[attr-defined]
    handler.addFilter(_CapThirdParty())
    handler.addFilter(_ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    # Our own loggers follow LOG_LEVEL; third-party ones log their warnings and errors only.
    for name in CAPPED_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


class Every:
    """Lets a message through about once per `seconds` per cause, counting the ones held back.

    For conditions that repeat on every attempt (the database is down, a place is throttled):
    one line now and then says it is still so, instead of a line, or a traceback, per attempt.
    """

    def __init__(self, seconds: float = 10.0, *, clock: Callable[[], float] = time.monotonic):
        self.seconds = seconds
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def due(self, cause: str) -> int | None:
        """None while `cause` was logged less than `seconds` ago (counted); else how many
        times it was held back since it was last logged."""
        now = self._clock()
        last = self._last.get(cause)
        if last is not None and now - last < self.seconds:
            self._held[cause] = self._held.get(cause, 0) + 1
            return None
        self._last[cause] = now
        return self._held.pop(cause, 0)

    def clear(self, cause: str) -> bool:
        """Forget `cause` (it is over); True when it had been logged."""
        self._held.pop(cause, None)
        return self._last.pop(cause, None) is not None
