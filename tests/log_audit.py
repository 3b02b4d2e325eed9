"""Audit of a whole test run's logs: no token, key or secret may appear in any line.

Every log record of the run goes through the production formatter into a file; every secret
a test hands to the app (the env values of secret settings, plus tokens the fakes issue) is
remembered; at the end of the session the file is searched for each of them.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from bot.logs import TextFormatter, _ContextFilter

SECRET_ENV = {
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_APP_TOKEN",
    "MicrosoftAppPassword",
    "PAGERDUTY_ROUTING_KEY",
    "OPSGENIE_API_KEY",
    "GRAPH_CLIENT_SECRET",
    "LDAP_BIND_PASSWORD",
    "PSA_PASSWORD",
    "PSA_API_KEY",
    "PSA_PUBLIC_KEY",
    "PSA_PRIVATE_KEY",
    "KB_API_KEY",
    "METRICS_TOKEN",
}
# Tokens the fakes hand to the app (Bot Framework outbound token, Graph access token).
ISSUED = {"fake-outbound-token", "fake-graph-access-token"}

SEEN: set[str] = set()


def remember(env: dict[str, str]) -> None:
    """Remember the secret values in an env mapping given to the app (and the password in
    DATABASE_URL)."""
    for key in SECRET_ENV:
        value = env.get(key, "")
        if len(value) >= 6:
            SEEN.add(value)
    password = urlsplit(env.get("DATABASE_URL", "")).password or ""
    if len(password) >= 6:
        SEEN.add(password)


class Audit:
    def __init__(self) -> None:
        handle, name = tempfile.mkstemp(prefix="helpdesk-test-logs-", suffix=".log")
        self.path = Path(name)
        self.handler = logging.FileHandler(self.path, encoding="utf-8")
        self.handler.addFilter(_ContextFilter())
        self.handler.setFormatter(TextFormatter())
        self.handler.setLevel(logging.DEBUG)
        os.close(handle)

    def install(self) -> None:
        root = logging.getLogger()
        root.addHandler(self.handler)
        if root.level > logging.INFO or root.level == logging.NOTSET:
            root.setLevel(logging.INFO)

    def leaks(self) -> list[str]:
        self.handler.flush()
        logging.getLogger().removeHandler(self.handler)
        self.handler.close()
        text = self.path.read_text(encoding="utf-8", errors="replace")
        found = []
        for secret in sorted(SEEN | ISSUED):
            for line in text.splitlines():
                if secret in line:
                    found.append(f"{secret[:4]}…: {line[:300]}")
                    break
        return found

    def lines(self) -> int:
        with self.path.open(encoding="utf-8", errors="replace") as handle:
            return sum(1 for _ in handle)
