"""Pure rules of the PSA sync: field mapping, texts written into the PSA, tier resolution."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from handlers.config import HelpdeskConfig, PsaConfig, client_key
from handlers.formatting import when
from handlers.sla import PRIORITY_MEANING
from storage.models import Ticket

NAMES = {
    "servicenow": "ServiceNow",
    "freshservice": "Freshservice",
    "connectwise": "ConnectWise",
    "autotask": "Autotask",
}
# Where a company's contract names its tier (SPEC); Freshservice has no contracts.
CONTRACTS = {
    "servicenow": "contract",
    "connectwise": "agreement",
    "autotask": "contract",
}
PLATFORMS = {"slack": "Slack", "teams": "Microsoft Teams"}

CREATE = "psa.create"
NOTE = "psa.note"
TIME = "psa.time"
PRIORITY = "psa.priority"
CLOSE = "psa.close"
KINDS = (CREATE, NOTE, TIME, PRIORITY, CLOSE)
# Writes that would repeat when sent twice: each carries its own reference in its text.
MARKED = (NOTE, TIME, CLOSE)
WHAT = {
    CREATE: "ticket",
    NOTE: "note",
    TIME: "time entry",
    PRIORITY: "priority",
    CLOSE: "closure",
}
PURPOSE = "psa"
# The shortest PSA title (ConnectWise's summary, in UTF-16 code units): a longer or
# multi-line summary is also written in full into the description.
TITLE_ROOM = 100
KEY_PREFIX = "helpdesk-bot"


def name_of(system: str) -> str:
    """The name people know the system by (`ServiceNow`)."""
    return NAMES.get(system, system)


def external_key(number: str) -> str:
    """The bot's reference written into the PSA (<= 100 characters, ConnectWise's limit).

    The random part keeps two bots (or a database restored from a backup) that reach the
    same HD number from finding each other's tickets.
    """
    return f"{KEY_PREFIX}:{number}:{secrets.token_hex(4)}"[:100]


def marked(text: str, marker: str) -> str:
    """`text` with the write's reference as its last line (`[helpdesk-bot:HD-7:3f2a9c1d]`),
    by which a write whose answer was lost is looked up in the PSA; unchanged without one."""
    if not marker:
        return text
    return f"{text.rstrip()}\n\n[{marker}]" if text.strip() else f"[{marker}]"


def units(text: str) -> int:
    """`text`'s length as ConnectWise and Autotask count it (.NET strings, SQL Server
    nvarchar): in UTF-16 code units, where an emoji or other non-BMP character is two."""
    return len(text.encode("utf-16-le")) // 2


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-16 code units, never inside a character (a field of
    100 on those PSAs takes 50 emoji, not 100)."""
    if len(text) * 2 <= limit:  # every character is at most two units
        return text
    encoded = text.encode("utf-16-le")
    if len(encoded) <= 2 * limit:
        return text
    # A character cut in half leaves a lone high surrogate, which "ignore" drops.
    return encoded[: 2 * limit].decode("utf-16-le", errors="ignore")


def clip_marked(text: str, limit: int) -> str:
    """`text` cut to `limit` UTF-16 code units (`clip`), its reference line (see `marked`)
    kept at the end."""
    if units(text) <= limit:
        return text
    body, _, last = text.rpartition("\n")
    if body and last.startswith(f"[{KEY_PREFIX}:") and last.endswith("]") and units(last) < limit:
        return f"{clip(body, limit - units(last) - 1)}\n{last}"
    return clip(text, limit)


# -- the contract tier --------------------------------------------------------------------------


def tier_source(config: HelpdeskConfig, client: str) -> str:
    """Where a new ticket's tier comes from: config, pending (ask the PSA) or default."""
    named = {client_key(k) for k in config.sla.clients}
    if client.strip() and client_key(client) in named:
        return "config"
    if asks_for_tier(config.psa, client):
        return "pending"
    return "default"


def asks_for_tier(psa: PsaConfig, client: str) -> bool:
    """The PSA is asked for the client's contract: it has contracts and psa.tiers maps some."""
    return bool(psa.system in CONTRACTS and psa.tiers and client.strip())


def tier_from_contracts(contracts: Iterable[str], tiers: Mapping[str, str]) -> tuple[str, str]:
    """(tier, contract name) of the first contract `tiers` names (ignoring case); ('', '')."""
    by_name = {name.strip().lower(): tier for name, tier in tiers.items()}
    for contract in contracts:
        tier = by_name.get(contract.strip().lower())
        if tier:
            return tier, contract
    return "", ""


def tier_targets(config: HelpdeskConfig) -> dict[str, dict[str, list[int]]]:
    """For each tier psa.tiers can give: priority -> [respond, resolve] seconds (the payload
    carries them, so the delivery needs no config)."""
    targets = {}
    for tier in sorted(set(config.psa.tiers.values())):
        matrix = config.sla.tiers[tier]
        targets[tier] = {
            str(p): [int(t.respond.total_seconds()), int(t.resolve.total_seconds())]
            for p, t in matrix.items()
        }
    return targets


def due_from_targets(
    targets: Mapping[str, list[int]], *, priority: str, opened_at: datetime
) -> tuple[datetime, datetime] | None:
    """Respond-by and resolve-by of `priority` from a tier's targets, from creation."""
    pair = targets.get(priority)
    if not pair:
        return None
    return opened_at + timedelta(seconds=pair[0]), opened_at + timedelta(seconds=pair[1])


# -- what the PSA is told -------------------------------------------------------------------------


IDENTITY_UNCONFIRMED = (
    "Identity: NOT CONFIRMED. The requester's manager must confirm this request comes from the "
    "requester (checked in chat; the outcome is added as a note) before anyone resets a "
    "password, changes MFA or discusses the account."
)


def description(ticket: Ticket, *, technician: str) -> str:
    """Everything the chat ticket knows, as plain text: what has no PSA field lives here."""
    source = PLATFORMS.get(ticket.source_platform, ticket.source_platform)
    requester = ticket.requester_name or ticket.requester_id
    if ticket.requester_email and ticket.requester_email != requester:
        requester = f"{requester} <{ticket.requester_email}>"
    lines = [
        f"Opened in {source} (channel {ticket.source_channel}) by {technician} as {ticket.number}.",
        "",
        f"Requester: {requester}",
        f"Client: {ticket.client or '-'}",
        f"Category: {ticket.category or '-'}",
        f"Asset: {ticket.asset or '-'}",
        f"Priority: {ticket.priority} ({PRIORITY_MEANING.get(ticket.priority, '')})",
        f"Users affected: {ticket.users_affected}",
        f"Reproducible: {ticket.reproducible}",
        f"Source: {source}, channel {ticket.source_channel}",
    ]
    if ticket.priority_warning:
        lines.append(f"Warning: {ticket.priority_warning}")
    if ticket.identity_state != "not_required":
        # Written when the ticket is opened, before the manager can have answered: whoever
        # works it in the PSA must not act on the caller's word (the outcome follows as a note).
        lines += ["", IDENTITY_UNCONFIRMED]
    summary = ticket.summary.strip()
    if "\n" in summary or units(summary) > TITLE_ROOM:
        # The PSA's title takes its first line, cut to fit: the whole of it lives here.
        lines += ["", "Summary:", summary]
    if ticket.error_text:
        lines += ["", "Exact error text:", ticket.error_text]
    if ticket.doing:
        lines += ["", "What they were doing:", ticket.doing]
    return "\n".join(lines)


def new_ticket(ticket: Ticket, *, key: str, technician_email: str) -> dict[str, object]:
    """The create payload: the ticket mapped onto the fields every PSA has a place for."""
    technician = ticket.technician_name or ticket.technician_id
    return {
        "key": key,
        "number": ticket.number,
        "title": ticket.summary.strip().splitlines()[0][:250] if ticket.summary.strip() else "-",
        "description": description(ticket, technician=technician),
        "priority": ticket.priority,
        "requester_email": ticket.requester_email,
        "requester_name": ticket.requester_name or ticket.requester_id,
        "company": ticket.client.strip(),
        "category": ticket.category,
        "asset": ticket.asset.strip(),
        "source_platform": ticket.source_platform,
        "technician_email": technician_email,
    }


def escalation_note(
    *, queue: str, by: str, facts: Mapping[str, str], labels: Mapping[str, str]
) -> str:
    """The escalation as a note: the queue, who escalated, every fact as typed."""
    lines = [f"Escalated to the {queue} queue by {by}."]
    lines += [f"{labels.get(key, key)}: {value or '-'}" for key, value in facts.items()]
    return "\n".join(lines)


def identity_note(
    *, outcome: str, manager: str, at: datetime, platform: str, check_id: int, phone: str = ""
) -> str:
    """The identity check's outcome with its facts (who answered, when, over which channel).
    `called_back`: `manager` is the technician who called the number on file, `phone`."""
    where = PLATFORMS.get(platform, platform)
    if outcome == "called_back":
        return (
            f"Identity CONFIRMED by call-back to the requester's number on file ({phone}): "
            f"recorded by technician {manager}, at {when(at)} over {where} (check {check_id}). "
            "No manager could confirm it. Work may proceed."
        )
    if outcome == "approved":
        head = "Identity CONFIRMED by the requester's manager"
        tail = "Work may proceed."
    elif outcome == "denied":
        head = "Identity DENIED by the requester's manager"
        tail = "Possible impersonation: work is stopped and the security queue is told."
    else:
        head = "Identity check EXPIRED: the requester's manager answered too late"
        tail = "The check must be started again before work that needs it."
    return f"{head} {manager}, at {when(at)} over {where} (check {check_id}). {tail}"


def resolution_text(*, note: str, category: str, kb_article: str, closed_by: str) -> str:
    """The resolution as written into the PSA: the note, its category, KB article, who."""
    lines = [note, "", f"Resolution category: {category}"]
    if kb_article:
        lines.append(f"KB article: {kb_article}")
    lines.append(f"Closed in chat by {closed_by}.")
    return "\n".join(lines)
