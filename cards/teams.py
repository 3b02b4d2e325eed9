"""Render a neutral `Card` to an Adaptive Card 1.5 dict for Teams (no botbuilder imports).

Every card string is literal. TextBlock and FactSet render a Markdown subset in Teams, so their
text is backslash-escaped (`escape_markdown`); input labels, choice titles and action titles
are plain text and carry the raw string. Forms and buttons use `Action.Execute` (Universal
Actions) with an equivalent `Action.Submit` as `fallback`, or plain `Action.Submit`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from cards.model import (
    Button,
    Card,
    Element,
    Facts,
    Link,
    NumberInput,
    Select,
    Text,
    TextInput,
    UserPicker,
    safe_url,
)

SCHEMA_URL = "http://adaptivecards.io/schemas/adaptive-card.json"
VERSION = "1.5"
# Teams rejects bot messages above ~40 KB; keep the card JSON well below that.
MAX_CARD_CHARS = 28_000
_MIN_CAP = 16
EMAIL_PLACEHOLDER = "name@example.com"

# Markdown control characters (CommonMark allows a backslash before any ASCII punctuation).
_MD_CHARS = re.compile(r"([\\`*_\[\]()#+\-!~>|<&])")
# "1. item" at the start of a line would become a numbered list.
_MD_ORDERED = re.compile(r"^(\s*\d+)\.", re.MULTILINE)

_STYLES = {"primary": "positive", "danger": "destructive"}


def escape_markdown(text: str) -> str:
    """Backslash-escape Markdown so `[x](https://evil)` or `**bold**` shows literally."""
    return _MD_ORDERED.sub(r"\1\\.", _MD_CHARS.sub(r"\\\1", text))


def _cap(text: str, cap: int | None) -> str:
    if cap is None or len(text) <= cap:
        return text
    return text[: cap - 1] + "…"


def _text_block(text: str, *, heading: bool = False, muted: bool = False) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "TextBlock", "text": escape_markdown(text), "wrap": True}
    if heading:
        block.update(size="Large", weight="Bolder")
    elif muted:
        block.update(isSubtle=True, size="Small")
    return block


def _input(element: TextInput | NumberInput | Select | UserPicker, cap: int | None) -> dict:
    if element.id == "action":
        raise ValueError("input id 'action' is reserved for the submitted action")
    rendered: dict[str, Any]
    if isinstance(element, TextInput):
        rendered = {"type": "Input.Text", "id": element.id, "label": element.label}
        rendered["isRequired"] = element.required
        if element.multiline:
            rendered["isMultiline"] = True
        if element.value:
            rendered["value"] = _cap(element.value, cap)
        if element.placeholder:
            rendered["placeholder"] = _cap(element.placeholder, cap)
        if element.max_length is not None:
            rendered["maxLength"] = element.max_length
    elif isinstance(element, NumberInput):
        rendered = {"type": "Input.Number", "id": element.id, "label": element.label}
        rendered["isRequired"] = element.required
        if element.min is not None:
            rendered["min"] = element.min
        if element.value is not None:
            rendered["value"] = element.value
    elif isinstance(element, Select):
        rendered = {"type": "Input.ChoiceSet", "id": element.id, "label": element.label}
        rendered["isRequired"] = element.required
        rendered["style"] = "compact"
        rendered["choices"] = [{"title": title, "value": value} for value, title in element.options]
        if element.value:
            rendered["value"] = element.value
    else:
        rendered = {"type": "Input.Text", "id": element.id, "label": element.label}
        rendered["isRequired"] = element.required
        rendered["style"] = "Email"
        rendered["placeholder"] = EMAIL_PLACEHOLDER
        if element.value:
            rendered["value"] = element.value
    if element.required:
        rendered["errorMessage"] = f"{element.label} is required."
    return rendered


def _element(element: Element, cap: int | None) -> dict[str, Any] | None:
    if isinstance(element, Text):
        if not element.text:
            return None
        return _text_block(_cap(element.text, cap), heading=element.heading, muted=element.muted)
    if isinstance(element, Link):
        title = escape_markdown(_cap(element.text or element.url, cap))
        url = safe_url(element.url)
        if url is None:
            return _text_block(f"{element.text} ({element.url})" if element.url else element.text)
        return {"type": "TextBlock", "text": f"[{title}]({url})", "wrap": True}
    if isinstance(element, Facts):
        if not element.items:
            return None
        facts = [
            {"title": escape_markdown(_cap(label, cap)), "value": escape_markdown(_cap(value, cap))}
            for label, value in element.items
        ]
        return {"type": "FactSet", "facts": facts}
    return _input(element, cap)


def _action(
    action: str, title: str, data: dict[str, str], style: str, *, execute: bool
) -> dict[str, Any]:
    payload = {"action": action, **{k: v for k, v in data.items() if k != "action"}}
    submit: dict[str, Any] = {"type": "Action.Submit", "title": title, "data": payload}
    if style in _STYLES:
        submit["style"] = _STYLES[style]
    if not execute:
        return submit
    rendered: dict[str, Any] = {"type": "Action.Execute", "verb": action, "title": title}
    rendered["data"] = dict(payload)
    if "style" in submit:
        rendered["style"] = submit["style"]
    rendered["fallback"] = submit
    return rendered


def _button_action(button: Button, *, execute: bool) -> dict[str, Any]:
    return _action(str(button.action), button.title, button.value, button.style, execute=execute)


def _render(card: Card, *, execute: bool, cap: int | None) -> dict[str, Any]:
    body: list[dict[str, Any]] = []
    if card.title:
        body.append(_text_block(_cap(card.title, cap), heading=True))
    for element in card.body:
        rendered = _element(element, cap)
        if rendered is not None:
            body.append(rendered)
    actions: list[dict[str, Any]] = []
    if card.form is not None:
        form = card.form
        actions.append(
            _action(str(form.action), form.submit_title, form.context, "primary", execute=execute)
        )
    actions.extend(_button_action(b, execute=execute) for b in card.buttons)
    result: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": SCHEMA_URL,
        "version": VERSION,
        "body": body,
        "actions": actions,
    }
    if card.fallback:
        result["fallbackText"] = escape_markdown(_cap(card.fallback, cap))
    return result


def card_size(card: dict[str, Any]) -> int:
    """Characters of the card as JSON; ASCII-escaped, so never below its UTF-8 byte count."""
    return len(json.dumps(card))


def _longest_text(card: Card) -> int:
    lengths = [len(card.title), len(card.fallback)]
    for element in card.body:
        if isinstance(element, Text | Link):
            lengths.append(len(element.text))
        elif isinstance(element, Facts):
            lengths.extend(max(len(k), len(v)) for k, v in element.items)
        elif isinstance(element, TextInput):
            lengths.extend((len(element.value), len(element.placeholder)))
    return max(lengths)


def render_card(card: Card, *, execute: bool = True) -> dict[str, Any]:
    """The Adaptive Card 1.5 dict for `card` (an attachment's `content`).

    If the JSON would reach `MAX_CARD_CHARS`, the longest texts are cut (with "…") to the
    largest common length that fits.
    """
    rendered = _render(card, execute=execute, cap=None)
    if card_size(rendered) < MAX_CARD_CHARS:
        return rendered
    low, high = _MIN_CAP, _longest_text(card)
    best = _render(card, execute=execute, cap=low)
    while low <= high:
        mid = (low + high) // 2
        candidate = _render(card, execute=execute, cap=mid)
        if card_size(candidate) < MAX_CARD_CHARS:
            best, low = candidate, mid + 1
        else:
            high = mid - 1
    return best


def submitted_values(value: Any) -> tuple[str | None, dict[str, str]]:
    """(action, other fields as strings) from an Action.Submit `activity.value` or an
    Action.Execute `value.action.data`; None values become ""."""
    if not isinstance(value, dict):
        return None, {}
    action = value.get("action")
    data = {
        str(k): "" if v is None else str(v)
        for k, v in value.items()
        if k not in ("action", "msteams")
    }
    return (None if action is None else str(action)), data
