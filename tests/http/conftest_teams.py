"""Teams test support: the fake connector fixture and activities as Teams sends them."""

from __future__ import annotations

import itertools
from typing import Any

from tests.adaptive_schema import validate_adaptive_card

TECH_ID = "29:1tech"
ANA_ID = "29:1ana"
BOT_ID = "28:helpdesk-bot"
PERSONAL = "a:1personal-chat-with-tech"
CHANNEL = "19:helpdesk@thread.tacv2"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CARD_TYPE = "application/vnd.microsoft.card.adaptive"
PEOPLE = [
    {"email": "ana@example.com", "name": "Ana Lopez", "teams_id": ANA_ID},
    {"email": "tech@example.com", "name": "Tom Tech", "teams_id": TECH_ID, "technician": True},
]
CONFIG = {"sla": {"clients": {"acme": "gold"}}}
_ids = itertools.count(1_700_000_000_001)


def next_id() -> str:
    return str(next(_ids))


def activity(
    service_url: str,
    *,
    conversation: str = PERSONAL,
    user: str = TECH_ID,
    user_name: str = "Tom Tech",
    activity_id: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """An inbound Teams activity (defaults: a message in the technician's 1:1 chat)."""
    kind = "personal" if conversation.startswith("a:") else "channel"
    body: dict[str, Any] = {
        "type": "message",
        "id": activity_id or next_id(),
        "timestamp": "2025-01-06T09:10:00.000Z",
        "channelId": "msteams",
        "serviceUrl": service_url,
        "from": {
            "id": user,
            "name": user_name,
            "aadObjectId": "7faf8ab2-3d56-4244-b585-20c8a42ed2b8",
        },
        "conversation": {
            "id": conversation,
            "conversationType": kind,
            "tenantId": TENANT,
            **({"isGroup": True} if kind == "channel" else {}),
        },
        "recipient": {"id": BOT_ID, "name": "Helpdesk"},
        "channelData": {"tenant": {"id": TENANT}},
        "locale": "en-US",
    }
    body.update(fields)
    return body


def message(service_url: str, text: str, **kwargs: Any) -> dict[str, Any]:
    return activity(service_url, text=text, textFormat="plain", **kwargs)


def card_of(posted: dict[str, Any]) -> dict[str, Any]:
    """The Adaptive Card in a posted activity, validated against the schema."""
    [attachment] = posted["attachments"]
    assert attachment["contentType"] == CARD_TYPE
    card = attachment["content"]
    validate_adaptive_card(card)
    return card


def inputs(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in card["body"] if e["type"].startswith("Input.")]


def submit_action(card: dict[str, Any]) -> dict[str, Any]:
    """The form's primary action (Action.Execute with an Action.Submit fallback)."""
    return card["actions"][0]


def form_values(**overrides: Any) -> dict[str, Any]:
    """What a technician types into the intake card (Teams sends inputs as strings)."""
    values = {
        "requester": "ana@example.com",
        "summary": "Printer jams  on floor 3 ",
        "error_text": "Error 0x8007001F: paper path <at>x</at> **not bold**",
        "doing": "Printing the Q3 report",
        "reproducible": "intermittent",
        "users_affected": "1",
        "priority": "P2",
        "category": "printer",
        "asset": "PRN-0042",
        "client": "Acme",
    }
    values.update(overrides)
    return values


def note_under(card: dict[str, Any], ident: str) -> str:
    """The text shown right under input `ident` of a form ("" when none is)."""
    body = card["body"]
    at = next(i for i, e in enumerate(body) if e.get("id") == ident)
    after = body[at + 1] if at + 1 < len(body) else {}
    return str(after.get("text", "")) if after.get("type") == "TextBlock" else ""
