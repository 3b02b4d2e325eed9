"""Render a neutral `Card` to an Adaptive Card 1.5 dict for Teams (no botbuilder imports).

TextBlock and FactSet text is Markdown in Teams. The bot's own words go there as written;
text a person typed (`Typed`, and people's names) is escaped, and only where a character would
start markup: links and images (`[`, `]`), emphasis (`*`, `_` unless inside a word, `~~`), code
(`` ` ``), HTML and autolinks (`<`), entities (`&name;`), a backslash that would escape the next
character, and list, heading, quote and rule markers at the start of a line. So a title
arrives as `HD-1 (P2): Outlook keeps crashing`, while a typed `[x](https://evil)` or `**bold**`
shows literally. Plain-text fields (`fallbackText`, input labels and values, choice and action
titles) carry the text unescaped. Forms and buttons use `Action.Execute` (Universal Actions)
with an equivalent `Action.Submit` as `fallback`, or plain `Action.Submit`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from cards.model import (
    Button,
    Card,
    Element,
    Facts,
    Inline,
    Link,
    NumberInput,
    Select,
    Text,
    TextInput,
    UserPicker,
    plain,
    safe_url,
    spans,
)

SCHEMA_URL = "http://adaptivecards.io/schemas/adaptive-card.json"
VERSION = "1.5"
# Teams answers a bot message over its size limit with 413 MessageSizeTooBig (the outbox
# gives up on it): "the entire message payload encoded as UTF-16", Base64 images excluded
# (msteams-docs bots/how-to/format-your-bot-messages.md; 40 KB for years, 100 KB since 2025
# with 80 KB advised). The strictest of these, in bytes.
MESSAGE_LIMIT_BYTES = 40_000
# What botbuilder adds to a message from the conversation reference (conversation, from,
# recipient, ids, service URL, channel data; a few hundred bytes in Teams), with room to spare.
ENVELOPE_BYTES = 6_000
MAX_PAYLOAD_BYTES = MESSAGE_LIMIT_BYTES - ENVELOPE_BYTES
_MIN_CAP = 16
PREVIEW_MAX = 300
EMAIL_PLACEHOLDER = "name@example.com"
TRUNCATED_NOTE = "… (truncated)"

# Characters that start markup wherever they are (each alternative matches the one character
# to escape): a backslash before ASCII punctuation (or at the end), `*`, `` ` ``, `[`, `]`, `<`,
# `_` not inside a word, `~` next to another, `&` starting an entity.
_INLINE = re.compile(
    r"\\(?=[!-/:-@\[-`{-~]|$)|[*`\[\]<]|(?<![^\W_])_|_(?![^\W_])|~(?=~)|(?<=~)~|&(?=#?[0-9A-Za-z]+;)"
)
# At the start of a line: a list item, a numbered item, a heading or a quote.
_LINE_MARKER = re.compile(r"^( {0,3})((?:[-+]|\d{1,9}[.)]|#{1,6})(?=[ \t]|$)|>)")
# A line break, as Markdown reads one.
_LINE_BREAK = re.compile(r"(\r\n?|\n)")
# A line that is only `-` or `=` (a rule, or a heading underline for the line before).
_RULE = re.compile(r"^( {0,3})([-=])[-= \t]*$")

# A line of the bot's own words that is only hyphens (its "none"), with blanks around them.
_HYPHENS = re.compile(r"^[ \t]*-[- \t]*$")

_STYLES = {"primary": "positive", "danger": "destructive"}


def _escape_line(line: str, *, line_start: bool) -> str:
    prefix, rest = _block_marker(_indented(line)) if line_start else ("", line)
    return prefix + _INLINE.sub(r"\\\g<0>", rest)


def _indented(line: str) -> str:
    """`line` with its indentation, when that is four columns or more (a tab, four spaces:
    an indented code block, shown with the escapes in it), in no-break spaces, which Markdown
    does not count as indentation. A line of blanks only is left alone: it is a blank line (a
    paragraph break), which no-break spaces would turn into text."""
    text = line.lstrip(" \t")
    indent = line[: len(line) - len(text)]
    if not text or ("\t" not in indent and len(indent) < 4):
        return line
    return indent.replace("\t", "    ").replace(" ", "\u00a0") + text


def escape_markdown(text: str, *, line_start: bool = True) -> str:
    """Escape, in text a person typed, what would start Markdown in Teams, and nothing else.

    `line_start` says whether `text` begins a line where it is shown (then list, heading and
    quote markers are escaped there too; they always are after a line break in it).
    """
    # Lines and the breaks between them (Markdown ends a line at `\r` too).
    parts = _LINE_BREAK.split(text)
    return "".join(
        part if index % 2 else _escape_line(part, line_start=line_start or index > 0)
        for index, part in enumerate(parts)
    )


# A mention's shown name: at most this many characters (the message's size stays bounded).
MENTION_NAME_MAX = 100
# What stands for a character that would start markup in a mention's name: a character
# reference, which HTML and Markdown both read as the character itself (a backslash is
# Markdown only, and would let a name close the `<at>` element or show literally).
_REFERENCES = {"&": "&amp;", "<": "&lt;"}


def _reference(found: re.Match[str]) -> str:
    char = found.group(0)
    return _REFERENCES.get(char, f"&#{ord(char)};")


def at_mention(name: str) -> str:
    """`<at>Tom Tech</at>`: the text of a Teams mention of someone named `name` (from the
    directory or their Teams profile, never typed into a message). What would start markup in
    the name (`<`, an entity's `&`, and the Markdown characters `escape_markdown` escapes) is
    written as a character reference, so a name cannot close the element, start a tag or
    format the message; anything else (`O'Brien`, `R&D`, `Anne-Marie`) stays as it is. Line
    breaks become spaces, and a long name is cut."""
    shown = _cap(" ".join(name.split()), MENTION_NAME_MAX)
    return f"<at>{_INLINE.sub(_reference, shown)}</at>"


# A placeholder in the bot's own words (`kb <words>`): Teams takes it for an HTML tag and
# drops it, and an escape (`\<`) is what some Teams clients show literally; single angle
# quotation marks read the same and mean nothing to Markdown.
_PLACEHOLDER = re.compile(r"<([A-Za-z][\w -]*)>")
# `[label](` in the bot's own words: the start of a Markdown link.
_LINK = re.compile(r"\[([^\]\n]*)\]\(")


def markdown(value: Inline, *, cap: int | None = None, own_cap: int | None = None) -> str:
    """TextBlock/FactSet text for `value`: the bot's words as written (a `<placeholder>` in
    single angle quotation marks), the rest escaped. `cap` cuts what people typed (and
    names), `own_cap` the bot's words."""
    out = ""
    for span in spans(value):
        if isinstance(span, str):
            own = _PLACEHOLDER.sub("\u2039\\g<1>\u203a", _cap(span, own_cap))
            # The bot never writes a Markdown link: one here is typed text not marked as such.
            own = _LINK.sub(r"\\[\g<1>\\](", own)
            out += _own_words(own, line_start=_at_line_start(out))
        elif _at_line_start(out):
            # The line's blanks so far count towards the typed line's indentation.
            own = out.rstrip(" \t")
            out = own + escape_markdown(out[len(own) :] + _cap(plain(span), cap))
        else:
            out += escape_markdown(_cap(plain(span), cap), line_start=False)
    return out


def _at_line_start(text: str) -> bool:
    """Whether what comes after `text` starts a line: only blanks since its last line break
    (up to three spaces before a list, heading or quote marker still make one)."""
    end = len(text)
    while end and text[end - 1] in " \t":  # only the tail is read: a card has many spans
        end -= 1
    return not end or text[end - 1] in "\r\n"


def _block_marker(line: str) -> tuple[str, str]:
    """`line` as (its list, heading or quote marker or its rule, escaped; the rest)."""
    if marker := _LINE_MARKER.match(line):
        indent, sign = marker.groups()
        escaped = sign[:-1] + "\\" + sign[-1] if sign[0].isdigit() else "\\" + sign
        return indent + escaped, line[marker.end() :]
    if rule := _RULE.match(line):
        return rule.group(1) + "\\" + rule.group(2), line[rule.end(2) :]
    return "", line


def _own_words(text: str, *, line_start: bool) -> str:
    """The bot's words as written, except a line that is only hyphens (its `-` for "none"):
    Markdown draws that as a bullet or a rule, and a backslash before it shows literally in
    some Teams clients (as in every other place the bot's words are never escaped), so its
    hyphens become en dashes."""
    lines = text.split("\n")
    return "\n".join(
        line.replace("-", "\u2013") if (line_start or index) and _HYPHENS.match(line) else line
        for index, line in enumerate(lines)
    )


def _cap(text: str, cap: int | None) -> str:
    if cap is None or len(text) <= cap:
        return text
    return text[: cap - 1] + "…"


def _text_block(text: str, *, heading: bool = False, muted: bool = False) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "TextBlock", "text": text, "wrap": True}
    if heading:
        block.update(size="Large", weight="Bolder")
    elif muted:
        block.update(isSubtle=True, size="Small")
    return block


def _input(
    element: TextInput | NumberInput | Select | UserPicker, cap: int | None, own: int | None
) -> dict:
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
            rendered["placeholder"] = _cap(element.placeholder, own)
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


def _element(element: Element, cap: int | None, own: int | None) -> dict[str, Any] | None:
    if isinstance(element, Text):
        if not plain(element.text):
            return None
        return _text_block(
            markdown(element.text, cap=cap, own_cap=own),
            heading=element.heading,
            muted=element.muted,
        )
    if isinstance(element, Link):
        # A link's title comes from outside (a KB): escaped like typed text, on one line (a
        # blank line in it would end the link's paragraph, and the link with it).
        title = escape_markdown(_LINE_BREAK.sub(" ", _cap(element.text or element.url, cap)))
        url = safe_url(element.url)
        if url is None:
            shown = f"{element.text} ({element.url})" if element.url else element.text
            return _text_block(escape_markdown(_cap(shown, cap)))
        return {"type": "TextBlock", "text": f"[{title}]({url})", "wrap": True}
    if isinstance(element, Facts):
        if not element.items:
            return None
        facts = [
            {
                "title": markdown(label, cap=cap, own_cap=own),
                "value": markdown(value, cap=cap, own_cap=own),
            }
            for label, value in element.items
        ]
        return {"type": "FactSet", "facts": facts}
    return _input(element, cap, own)


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


def _render(
    card: Card, *, execute: bool, cap: int | None, own: int | None = None
) -> dict[str, Any]:
    body: list[dict[str, Any]] = []
    if plain(card.title):
        body.append(_text_block(markdown(card.title, cap=cap, own_cap=own), heading=True))
    for element in card.body:
        rendered = _element(element, cap, own)
        if rendered is not None:
            body.append(rendered)
    actions: list[dict[str, Any]] = []
    if card.form is not None:
        form = card.form
        actions.append(
            _action(str(form.action), form.submit_title, form.context, "primary", execute=execute)
        )
    actions.extend(_button_action(b, execute=execute) for b in card.buttons)
    actions.extend({"type": "Action.OpenUrl", "title": k.title, "url": k.url} for k in card.links)
    result: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": SCHEMA_URL,
        "version": VERSION,
        "body": body,
        "actions": actions,
    }
    if card.fallback:
        # Plain text, shown as given. A preview (it is also the message's summary): once texts
        # must be cut it is cut first, so the card itself keeps more.
        preview = None if cap is None else min(cap, PREVIEW_MAX)
        result["fallbackText"] = _cap(card.fallback, preview)
    return result


def payload_size(value: Any) -> int:
    """Bytes of `value` as Teams counts them: its JSON as botbuilder sends it (msrest's
    `json.dumps`: ASCII, any other character escaped as `\\uXXXX`, an emoji as two), encoded
    as UTF-16, so two bytes for each character sent."""
    return 2 * len(json.dumps(value))


def card_size(card: dict[str, Any]) -> int:
    """`payload_size` of a rendered card."""
    return payload_size(card)


def invoke_json(value: Any) -> str:
    """`value` as the bot writes an invoke response (its own HTTP answer, unlike messages,
    which botbuilder writes in ASCII): JSON with every character as itself, not `\\uXXXX`
    (six characters for one, twelve for an emoji), so that text in any script takes as much
    of Teams' size limit as it has characters. A lone surrogate (typed text can hold one),
    which no encoding takes as itself, makes it all escaped."""
    text = json.dumps(value, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value)
    return text


def invoke_size(value: Any) -> int:
    """Bytes of `value` as Teams counts them in an invoke response: `invoke_json` in UTF-16."""
    return len(invoke_json(value).encode("utf-16-le", "surrogatepass"))


def _longest_text(card: Card) -> int:
    texts: list[Inline] = [card.title, card.fallback]
    for element in card.body:
        if isinstance(element, Text | Link):
            texts.append(element.text)
        elif isinstance(element, Facts):
            texts.extend(part for pair in element.items for part in pair)
        elif isinstance(element, TextInput):
            texts.extend((element.value, element.placeholder))
    return max(len(plain(span)) for text in texts for span in spans(text))


def render_card(
    card: Card,
    *,
    execute: bool = True,
    size: Callable[[dict[str, Any]], int] = card_size,
    limit: int = MAX_PAYLOAD_BYTES,
) -> dict[str, Any]:
    """The Adaptive Card 1.5 dict for `card` (an attachment's `content`).

    `size` measures what is sent with the card (by default the card alone; a message measures
    the whole activity). If it would exceed `limit`, the longest texts people typed are cut
    (with "…") to the largest common length that fits; only if that is not enough are the
    bot's own words cut too, and then the body's last rows dropped (with a note). Buttons stay.
    """
    rendered = _render(card, execute=execute, cap=None)
    if size(rendered) <= limit:
        return rendered
    longest = _longest_text(card)
    for own_too in (False, True):
        fits = _largest_fit(card, execute, size, limit, own_too=own_too, high=longest)
        if fits is not None:
            return fits
    return _drop_rows(card, execute=execute, size=size, limit=limit)


def _largest_fit(
    card: Card,
    execute: bool,
    size: Callable[[dict[str, Any]], int],
    limit: int,
    *,
    own_too: bool,
    high: int,
) -> dict[str, Any] | None:
    """The card with its texts cut to the largest common length that fits, or None."""

    def at(cap: int) -> dict[str, Any]:
        return _render(card, execute=execute, cap=cap, own=cap if own_too else None)

    low = _MIN_CAP
    best = at(low)
    if size(best) > limit:
        return None
    while low <= high:
        mid = (low + high) // 2
        candidate = at(mid)
        if size(candidate) <= limit:
            best, low = candidate, mid + 1
        else:
            high = mid - 1
    return best


def _drop_rows(
    card: Card, *, execute: bool, size: Callable[[dict[str, Any]], int], limit: int
) -> dict[str, Any]:
    body = list(card.body)
    while body:
        # A list of facts loses half its rows at a time before the element itself goes.
        last = body[-1]
        if isinstance(last, Facts) and len(last.items) > 1:
            body[-1] = replace(last, items=list(last.items)[: len(last.items) // 2])
        else:
            body.pop()
        shorter = replace(card, body=[*body, Text(TRUNCATED_NOTE, muted=True)])
        rendered = _render(shorter, execute=execute, cap=_MIN_CAP, own=_MIN_CAP)
        if size(rendered) <= limit:
            return rendered
    bare = replace(card, body=[Text(TRUNCATED_NOTE, muted=True)])
    return _render(bare, execute=execute, cap=_MIN_CAP, own=_MIN_CAP)


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
