"""One small card vocabulary both Slack (Block Kit) and Teams (Adaptive Cards) can show.

Text in a card says whose words it is. A plain `str` is the bot's own words: written for both
platforms (backticks for commands, nothing else that formats), it is never escaped for Teams.
`Typed` is what a person typed (or a directory or another system holds): it is shown
literally, so each renderer escapes in it exactly what would start markup on its platform
(a link, emphasis, code, a list or heading marker at a line start, `<`), and nothing else.
`Mention` names a person: Slack shows a `<@U…>` mention (its client renders the name), other
places `Name (email)`, an id only when nothing else is known. `Rich` strings these together:
`Rich("HD-1 (P2): ", Typed(summary))`. Slack escapes `&`, `<` and `>` in all of it but its
mentions, so typed text can never ping or link there either. Plain-text fields (fallback, input
labels and values, button and choice titles) are shown as given on both platforms.

Cards are plain dataclasses that round-trip through JSON (`to_dict` / `from_dict`), which is
how they travel through the outbox; a card queued by an earlier release (no `format` key, all
text plain strings) is read with every string as typed text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
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
    IDENTITY_CALLED_BACK = "identity.called_back"
    CSAT_RATE = "csat.rate"
    CSAT_COMMENT = "csat.comment"
    FIX_WORKS = "fix.works"
    FIX_BROKEN = "fix.broken"
    FIX_COMMENT = "fix.comment"
    FILE_UNDER_P1 = "ticket.file_under"


@dataclass(frozen=True)
class Typed:
    """Text a person typed (or a directory or another system holds): shown literally."""

    text: str
    kind: Literal["typed"] = "typed"


@dataclass(frozen=True)
class Mention:
    """A person the bot names, by what the directory (or the ticket) knows of them."""

    name: str = ""
    email: str = ""
    # Their Slack user id: Slack shows a mention, which its client renders as their name.
    slack_id: str = ""
    # Any id: shown only when neither name nor e-mail is known.
    id: str = ""
    kind: Literal["mention"] = "mention"

    def plain(self) -> str:
        """`Ana Lopez (ana@example.com)`, `Ana Lopez`, `ana@example.com`, else the id."""
        if self.name and self.email and self.name != self.email:
            return f"{self.name} ({self.email})"
        return self.name or self.email or self.id or self.slack_id or "someone"


Span = str | Typed | Mention


@dataclass(frozen=True, init=False)
class Rich:
    """A run of text: the bot's words (`str`), typed text and mentions, in order."""

    spans: tuple[Span, ...]
    kind: Literal["rich"] = "rich"

    def __init__(self, *parts: Span | Rich) -> None:
        spans: list[Span] = []
        for part in parts:
            spans.extend(part.spans if isinstance(part, Rich) else (part,))
        object.__setattr__(self, "spans", tuple(s for s in spans if s != ""))
        object.__setattr__(self, "kind", "rich")

    def plain(self) -> str:
        return "".join(plain(span) for span in self.spans)


# What a card's title, paragraphs and facts hold.
Inline = str | Typed | Mention | Rich


def spans(value: Inline) -> tuple[Span, ...]:
    """`value` as a sequence of spans."""
    return value.spans if isinstance(value, Rich) else (value,)


def plain(value: Inline) -> str:
    """What `value` says, as plain text (for fallbacks, plain-text fields and logs)."""
    if isinstance(value, str):
        return value
    if isinstance(value, Typed):
        return value.text
    return value.plain()


@dataclass(frozen=True)
class Text:
    """A paragraph. `heading` renders larger/bold; `muted` renders small/subtle. `about`: the
    form field it explains; a form shown again with an error on that field, left empty, leaves it
    out (the error, said under the field, replaces it)."""

    text: Inline
    heading: bool = False
    muted: bool = False
    about: str = ""
    kind: Literal["text"] = "text"


@dataclass(frozen=True)
class Facts:
    """Label/value pairs (ticket number, priority, due times...)."""

    items: Sequence[tuple[Inline, Inline]]
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


@dataclass(frozen=True)
class LinkButton:
    """A button that opens `url` in the browser (Slack link button, Teams Action.OpenUrl);
    the bot is not asked anything when it is pressed."""

    title: str
    url: str


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
    title: Inline
    body: list[Element] = field(default_factory=list)
    buttons: list[Button] = field(default_factory=list)
    form: Form | None = None
    # Plain-text fallback for notifications and clients that cannot show cards.
    fallback: str = ""
    # Shown after the buttons.
    links: list[LinkButton] = field(default_factory=list)

    def inputs(self) -> list[TextInput | NumberInput | Select | UserPicker]:
        return [e for e in self.body if e.kind in INPUT_KINDS]  # type: ignore[misc]

    def to_dict(self) -> dict[str, Any]:
        """What `dataclasses.asdict` gives (same containers), plus the format version."""
        return {**_data(self), "format": FORMAT}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Card:
        # Before FORMAT, every card string was literal text: read those as typed text.
        legacy = data.get("format") != FORMAT
        body: list[Element] = []
        for raw in data.get("body", []):
            item = dict(raw)
            kind = str(item.get("kind"))
            if kind == "text":
                item["text"] = _inline(item["text"], legacy)
            if kind == "facts":
                item["items"] = [
                    (_inline(label, legacy), _inline(value, legacy))
                    for label, value in item["items"]
                ]
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
        links = [LinkButton(str(k["title"]), str(k["url"])) for k in data.get("links") or []]
        return cls(
            title=_inline(data["title"], legacy),
            body=body,
            buttons=buttons,
            form=form,
            fallback=data.get("fallback", ""),
            links=links,
        )


# 2: text says whose words it is (str = the bot's, Typed, Mention, Rich).
FORMAT = 2


def _span(raw: Any, legacy: bool) -> Span:
    if isinstance(raw, str):
        return Typed(raw) if legacy and raw else raw
    kind = raw.get("kind")
    if kind == "typed":
        return Typed(str(raw["text"]))
    if kind == "mention":
        text = {k: str(raw.get(k) or "") for k in ("name", "email", "slack_id", "id")}
        return Mention(text["name"], text["email"], text["slack_id"], text["id"])
    raise ValueError(f"unknown text span {kind!r}")


def kept_text(text: Inline) -> dict[str, Any]:
    """A message's text as the outbox (or a kept answer) holds it: `text` in plain words (for
    logs, reports and other readers) and `words`, which says whose words they are."""
    return {"text": plain(text), "words": _data(text)}


def read_kept_text(data: Mapping[str, Any]) -> Inline:
    """The text `kept_text` kept; text kept without its `words` (by an earlier release, or
    cut to a size) is read as typed text, shown literally."""
    if "words" in data:
        try:
            return _inline(data["words"], legacy=False)
        except (TypeError, ValueError, KeyError, AttributeError):
            pass
    text = str(data.get("text") or "")
    return Typed(text) if text else ""


def _inline(raw: Any, legacy: bool) -> Inline:
    if isinstance(raw, dict) and raw.get("kind") == "rich":
        return Rich(*(_span(s, legacy) for s in raw["spans"]))
    return _span(raw, legacy)


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


# Field names per model class: `to_dict` without `dataclasses.asdict`, which deep-copies
# every leaf and looks up the fields again per object (a tenth of the card's cost to queue).
_FIELDS: dict[type, tuple[str, ...]] = {}
_LEAVES = (str, int, float, bool, type(None))


def _data(value: Any) -> Any:
    cls = type(value)
    if cls in _LEAVES:
        return value
    names = _FIELDS.get(cls)
    if names is None and is_dataclass(value):
        names = _FIELDS[cls] = tuple(f.name for f in fields(value))
    if names is not None:
        return {name: _data(getattr(value, name)) for name in names}
    if cls is list:
        return [_data(v) for v in value]
    if cls is tuple:
        return tuple(_data(v) for v in value)
    if cls is dict:
        return {k: _data(v) for k, v in value.items()}
    return value  # enums (ActionId) and other immutable leaves, as asdict keeps them
