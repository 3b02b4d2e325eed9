"""Pure rules of working a ticket to the end: the Tier 1 scope, the remote-session link, which
open P1 a new ticket repeats (same place; the same error is the diagnosis domain's rule), and
ticket numbers in a message."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote

TIER1 = "tier1"
TIER23 = "tier23"
LABELS = {TIER1: "Tier 1", TIER23: "Tier 2/3: escalate early"}


def support_tier(category: str, scope: Iterable[str]) -> str:
    """`tier1` when the category is one Tier 1 handles (`tier1_scope`), else `tier23`; ''
    when `tier1_scope` is set to `[]` (scope labels and nudges off)."""
    known = [s.strip().lower() for s in scope]
    if not known:
        return ""
    return TIER1 if category.strip().lower() in known else TIER23


def scope_label(tier: str) -> str:
    """What the card says: **Tier 1** or **Tier 2/3: escalate early** ('' when not known)."""
    return LABELS.get(tier, "")


# Slack's limit for a button's URL (cards.slack.BUTTON_URL_MAX): a longer link would keep the
# whole ticket card from being posted.
REMOTE_URL_MAX = 3000


def remote_url(template: str | None, asset: str) -> str:
    """The remote-session link for `asset` ('' without a template or an asset). The asset is
    percent-encoded as a query value: a space is `%20`, `/` is `%2F`. No link for an asset
    that is only `.` or `..` (in a path, a browser would resolve it to another page of the
    tool), nor for one too long for a link button."""
    asset = asset.strip()
    if not template or not asset or asset in (".", ".."):
        return ""
    url = template.replace("{asset}", quote(asset, safe=""))
    return url if len(url) <= REMOTE_URL_MAX else ""


def _same(a: str, b: str) -> bool:
    # Unicode's caseless match, as sla.clients and the report compare clients (`STRASSE AG`
    # is `Straße AG`); lower() leaves `ß` and `SS` apart.
    return bool(a.strip()) and a.strip().casefold() == b.strip().casefold()


def same_place(client: str, asset: str, other_client: str, other_asset: str) -> bool:
    """The same client and the same asset, both given (in any case)."""
    return _same(client, other_client) and _same(asset, other_asset)


# -- ticket numbers in a message ---------------------------------------------------------------


def ticket_numbers(text: str, prefix: str, *, limit: int | None = None) -> list[str]:
    """Ticket numbers of this help desk named in `text` (`HD-7`, any case), in order, once;
    the first `limit` of them when given."""
    pattern = re.compile(rf"(?<![A-Za-z0-9-]){re.escape(prefix)}-(\d{{1,12}})\b", re.IGNORECASE)
    numbers: dict[str, None] = {}  # ordered, and a linear check for repeats
    for match in pattern.finditer(text or ""):
        numbers.setdefault(f"{prefix.upper()}-{int(match.group(1))}")
        if limit is not None and len(numbers) >= limit:
            break
    return list(numbers)
