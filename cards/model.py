"""One small card vocabulary both Slack (Block Kit) and Teams (Adaptive Cards) can show.

Every string in a card is literal text: renderers escape it for their platform (mrkdwn
control characters in Slack, Markdown in Teams), so user text can never ping or link.
Cards are plain dataclasses that round-trip through JSON (`to_dict` / `from_dict`), which
is how they travel through the outbox.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Literal


class ActionId(StrEnum):
    """Every button and form the bot understands; never loose strings per platform."""

    TICKET_CREATE = "ticket.create"
    VERIFY = "ticket.verify"
    ESCALATE = "ticket.escalate"
    CLOSE = "ticket.close"
    ESCALATE_SUBMIT = "ticket.escalate.submit"
    CLOSE_SUBMIT = "ticket.close.submit"
    IDENTITY_APPROVE = "identity.approve"
    IDENTITY_DENY = "identity.deny"
    CSAT_RATE = "csat.rate"
    CSAT_COMMENT = "csat.comment"


@dataclass(frozen=True)
class Text:
    """A paragraph. `heading` renders larger/bold; `muted` renders small/subtle."""

    text: str
    heading: bool = False
    muted: bool = False
    kind: Literal["text"] = "text"


@dataclass(frozen=True)
class Facts:
    """Label/value pairs (ticket number, priority, due times...)."""

    items: list[tuple[str, str]]
    kind: Literal["facts"] = "facts"


@dataclass(frozen=True)
class Link:
    """A titled link to a web page (a KB article). Only http(s) URLs become links; anything
    else is shown as text."""

    text: str
    url: str
    kind: Literal["link"] = "link"


@dataclass(frozen=True)
class TextInput:
    id: str
    label: str
    required: bool = False
    multiline: bool = False
    value: str = ""
    placeholder: str = ""
    max_length: int | None = None
    kind: Literal["text_input"] = "text_input"


@dataclass(frozen=True)
class NumberInput:
    id: str
    label: str
    required: bool = False
    value: int | None = None
    min: int | None = None
    kind: Literal["number_input"] = "number_input"


@dataclass(frozen=True)
class Select:
    """A single choice; `options` are (value, title) pairs."""

    id: str
    label: str
    options: list[tuple[str, str]]
    required: bool = False
    value: str = ""
    kind: Literal["select"] = "select"


@dataclass(frozen=True)
class UserPicker:
    """A person: Slack renders a users_select, Teams an e-mail text input (SPEC)."""

    id: str
    label: str
    required: bool = False
    value: str = ""
    kind: Literal["user_picker"] = "user_picker"


@dataclass(frozen=True)
class Button:
    """A button; `value` is context the bot needs back (never trusted for authorization)."""

    action: ActionId
    title: str
    value: dict[str, str] = field(default_factory=dict)
    style: Literal["default", "primary", "danger"] = "default"


Element = Text | Facts | Link | TextInput | NumberInput | Select | UserPicker
INPUT_KINDS = ("text_input", "number_input", "select", "user_picker")


@dataclass(frozen=True)
class Form:
    """Makes a card a form: submitting it sends `action` with `context` and the input values."""

    action: ActionId
    submit_title: str
    context: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Card:
    title: str
    body: list[Element] = field(default_factory=list)
    buttons: list[Button] = field(default_factory=list)
    form: Form | None = None
    # Plain-text fallback for notifications and clients that cannot show cards.
    fallback: str = ""

    def inputs(self) -> list[TextInput | NumberInput | Select | UserPicker]:
        return [e for e in self.body if e.kind in INPUT_KINDS]  # type: ignore[misc]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Card:
        body: list[Element] = []
        for raw in data.get("body", []):
            item = dict(raw)
            kind = str(item.get("kind"))
            if kind == "facts":
                item["items"] = [tuple(pair) for pair in item["items"]]
            if kind == "select":
                item["options"] = [tuple(pair) for pair in item["options"]]
            body.append(_ELEMENTS[kind](**item))
        buttons = [
            Button(
                action=ActionId(b["action"]),
                title=b["title"],
                value=dict(b.get("value", {})),
                style=b.get("style", "default"),
            )
            for b in data.get("buttons", [])
        ]
        form = None
        if data.get("form"):
            f = data["form"]
            form = Form(
                action=ActionId(f["action"]),
                submit_title=f["submit_title"],
                context=dict(f.get("context", {})),
            )
        return cls(
            title=data["title"],
            body=body,
            buttons=buttons,
            form=form,
            fallback=data.get("fallback", ""),
        )


_ELEMENTS: dict[str, type] = {
    "text": Text,
    "facts": Facts,
    "link": Link,
    "text_input": TextInput,
    "number_input": NumberInput,
    "select": Select,
    "user_picker": UserPicker,
}


def safe_url(url: str) -> str | None:
    """`url` when it is an http(s) URL that can be put in a link as is (no spaces, quotes or
    markup characters), else None."""
    url = url.strip()
    if not url.lower().startswith(("http://", "https://")) or len(url) > 2000:
        return None
    if any(c.isspace() or c in '<>|"`()[]\\' for c in url):
        return None
    return url
