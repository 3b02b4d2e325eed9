"""Render a neutral `Card` to Slack Block Kit (plain dicts, no slack_sdk imports).

Card text is escaped exactly once here (`&`, `<`, `>`; platform-facts §5), the bot's words and
typed text alike, and `mrkdwn` is marked `verbatim` so Slack does not auto-parse `@here`-style
words either. The one markup the bot makes itself is a `Mention` with a Slack id: `<@U…>`,
which Slack shows as the person's name. `plain_text` objects (headers, labels, buttons,
options, modal title) are escaped the same way (Slack decodes the entities there too) and show
mentions as names. mrkdwn has no escape for `*`, `_`, `~` and backticks, so a paragraph, fact
line or long title whose typed part holds one where it could start bold, italic, strike or code
(`*urgent*`, `~/.config`, `` `x` ``) is a `plain_text` object instead (`emoji: false`, shown
exactly as typed); everything else stays mrkdwn, so a normal card keeps its bold labels. Size
limits follow platform-facts §6: long text is split into several blocks, titles are cut with
"…", and data that cannot be cut without corrupting it (button values, private_metadata,
option values) raises `ValueError`. The core quotes commands as Teams takes them (`ticket
show HD-7`); the bot's own words say `/ticket show HD-7` here (`slack_words`), typed text never
changes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from cards.model import (
    Button,
    Card,
    Element,
    Facts,
    Inline,
    Link,
    LinkButton,
    Mention,
    NumberInput,
    Rich,
    Select,
    Span,
    Text,
    TextInput,
    Typed,
    UserPicker,
    plain,
    safe_url,
    spans,
)

SECTION_TEXT_MAX = 3000
HEADER_TEXT_MAX = 150
MESSAGE_BLOCKS_MAX = 50
MODAL_BLOCKS_MAX = 100
MODAL_TEXT_MAX = 24
PRIVATE_METADATA_MAX = 3000
BUTTON_TEXT_MAX = 75
BUTTON_VALUE_MAX = 2000
BUTTON_URL_MAX = 3000
# Link buttons carry an action id too (Slack still reports the click): not one of the bot's
# actions, so the click is acknowledged and nothing else happens.
LINK_ACTION = "link"
ACTIONS_PER_BLOCK = 25
LABEL_MAX = 2000
PLACEHOLDER_MAX = 150
OPTION_TEXT_MAX = 75
OPTION_VALUE_MAX = 150
OPTIONS_MAX = 100
TEXT_INPUT_MAX_LENGTH = 3000
TRUNCATED_NOTE = "… (truncated)"
# chat.postMessage / chat.update refuse a message whose blocks hold too much text in all with
# the undocumented `msg_blocks_too_long`: seen at 11,341-13,297 characters summed over every
# `text` (slackapi/bolt-js #2509, #2867; "12,000 with a buffer for block containers"). Our
# budget, counted the same way on what is sent (after escaping), keeps well below that.
MESSAGE_TEXT_BUDGET = 10_000
_MIN_CAP = 16
MENTION_MAX = 40  # `<@U0123ABCD>`: Slack user ids are short
# The bot's words quote its commands as Teams takes them (`ticket verify HD-7`); in Slack a
# command is the slash command, `/ticket verify HD-7`, as `help` lists them.
_QUOTED_COMMAND = re.compile(r"`ticket(?=[ `])")

Block = dict[str, Any]


def slack_words(text: str) -> str:
    """The bot's own words for Slack: a command quoted as `ticket …` reads `/ticket …`."""
    return _QUOTED_COMMAND.sub("`/ticket", text)


def _slack_inline(value: Inline) -> Inline:
    """`value` with the bot's words (its `str` spans) for Slack; typed text and mentions as
    they are."""
    if isinstance(value, str):
        return slack_words(value)
    if isinstance(value, Rich):
        return Rich(*(slack_words(s) if isinstance(s, str) else s for s in value.spans))
    return value


def slack_plain(value: Inline) -> str:
    """`plain(value)` with the bot's words for Slack (a form's field errors)."""
    return plain(_slack_inline(value))


def _slack_element(element: Element) -> Element:
    if isinstance(element, Text):
        return replace(element, text=_slack_inline(element.text))
    if isinstance(element, Facts):
        items = [(_slack_inline(k), _slack_inline(v)) for k, v in element.items]
        return replace(element, items=items)
    return element


def _for_slack(card: Card) -> Card:
    """`card` with the bot's words for Slack (`slack_words`) in its title and body. Its
    fallback is a plain string that may hold typed text: only one that says what a paragraph
    of the card says (a card made of an answer's text) is made again from that paragraph."""
    fallback = card.fallback
    for element in card.body:
        if isinstance(element, Text) and fallback and fallback == plain(element.text):
            fallback = slack_plain(element.text)
            break
    return replace(
        card,
        title=_slack_inline(card.title),
        body=[_slack_element(element) for element in card.body],
        fallback=fallback,
    )


def escape_mrkdwn(text: str) -> str:
    """Escape Slack's three control characters, and nothing else (platform-facts §5)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# What mrkdwn may take for bold, italic, strike or code, with no way to escape it there.
MARKUP_CHARS = "*_~`"


def could_format(text: str) -> bool:
    """Whether typed `text` holds a character mrkdwn may read as markup: a backtick anywhere,
    `*`, `_` or `~` where a word starts or ends (Slack leaves them alone inside a word, as in
    `first_last` or `2*3`; the text's ends count as word edges)."""
    for index, char in enumerate(text):
        if char == "`":
            return True
        if char in "*_~":
            before = text[index - 1] if index else " "
            after = text[index + 1] if index + 1 < len(text) else " "
            if not (before.isalnum() and after.isalnum()):
                return True
    return False


def needs_literal(value: Inline) -> bool:
    """Whether `value` must be `plain_text` to show what people typed: its typed text (or the
    name or e-mail address of a person it names) could turn into markup in mrkdwn."""
    for span in spans(value):
        if isinstance(span, Typed) and could_format(span.text):
            return True
        if isinstance(span, Mention) and could_format(
            span.email if span.slack_id else span.plain()
        ):
            return True
    return False


def mrkdwn(value: Inline) -> str:
    """`value` as mrkdwn: every string escaped, a mention with a Slack id as `<@U…>`."""
    out = []
    for span in spans(value):
        if isinstance(span, Mention) and span.slack_id:
            email = f" ({escape_mrkdwn(span.email)})" if span.email else ""
            out.append(f"<@{escape_mrkdwn(span.slack_id)}>{email}")
        else:
            out.append(escape_mrkdwn(plain(span)))
    return "".join(out)


def action_from_id(action_id: str) -> str:
    """The ActionId value behind a rendered button `action_id` (drops a `:<n>` suffix)."""
    return action_id.split(":", 1)[0]


def _cut(text: str, limit: int) -> str:
    """Cut raw text so that its escaped form fits `limit`, ending with "…" when cut."""
    if len(escape_mrkdwn(text)) <= limit:
        return text
    size = 0
    for index, char in enumerate(text):
        size += len(escape_mrkdwn(char))
        if size > limit - 1:
            return text[:index] + "…"
    return text


def _safe_cut(escaped: str, cut: int) -> int:
    """Move `cut` back so it never lands inside an entity (`&amp;`) or a mention (`<@U…>`),
    nor next to a `*`, `_`, `~` or backtick: one that mrkdwn leaves alone inside a word
    (`0~0`, `a_b`) may start or end markup at the edge of a chunk."""
    for _ in range(2):  # such a character is alone between letters or digits
        if cut > 1 and (escaped[cut - 1] in MARKUP_CHARS or escaped[cut] in MARKUP_CHARS):
            cut -= 1
    amp = escaped.rfind("&", max(0, cut - 4), cut)
    if amp != -1:
        end = escaped.find(";", amp)
        if end == -1 or end >= cut:
            return amp
    mention = escaped.rfind("<", max(0, cut - MENTION_MAX), cut)
    if mention > 0 and escaped.find(">", mention) >= cut:
        return mention
    return cut


def split_escaped(escaped: str, limit: int = SECTION_TEXT_MAX) -> list[str]:
    """Split already-escaped mrkdwn into chunks of at most `limit` characters.

    Prefers a line break, then a space, in the second half of the window; never splits
    inside an entity. The separator a chunk was split at is dropped.
    """
    chunks: list[str] = []
    rest = escaped
    while len(rest) > limit:
        cut = rest.rfind("\n", limit // 2, limit + 1)
        if cut == -1:
            cut = rest.rfind(" ", limit // 2, limit + 1)
        if cut > 0:
            chunks.append(rest[:cut])
            rest = rest[cut + 1 :]
            continue
        cut = _safe_cut(rest, limit)
        chunks.append(rest[:cut])
        rest = rest[cut:]
    if rest or not chunks:
        chunks.append(rest)
    return chunks


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _plain(text: str) -> dict[str, Any]:
    # Slack decodes &amp; &lt; &gt; in plain_text too; escaping keeps raw `<!channel>` out of
    # every payload we send (defence in depth, and what outside checks look for).
    return {"type": "plain_text", "text": escape_mrkdwn(text), "emoji": True}


def _literal(escaped: str) -> dict[str, Any]:
    """Text shown exactly as typed: no markup, no `:emoji:` codes (already escaped)."""
    return {"type": "plain_text", "text": escaped, "emoji": False}


def _literal_sections(text: str) -> list[Block]:
    """`text` (raw) as plain_text sections, split like mrkdwn ones."""
    return [
        {"type": "section", "text": _literal(chunk)}
        for chunk in split_escaped(escape_mrkdwn(text))
        if chunk.strip()
    ]


def _sections(escaped: str, words: str, *, bold: bool = False) -> list[Block]:
    """`escaped` mrkdwn as sections; when it has to be cut next to a markup character (see
    `_mrkdwn_chunks`), `words` (the same text, raw) as plain_text sections instead, as a
    paragraph whose typed text could format is: the sections beside such a cut, escaped
    mrkdwn shown as plain text, showed the bot's own `<@U…>` and `*Label:*` raw."""
    limit = SECTION_TEXT_MAX - (2 if bold else 0)
    chunks = _mrkdwn_chunks(escaped, limit)
    if not all(ok for _, ok in chunks):
        return _literal_sections(words)
    return [
        {"type": "section", "text": _mrkdwn(f"*{chunk}*" if bold else chunk)}
        for chunk, _ in chunks
        if chunk.strip()
    ]


def _mrkdwn_chunks(escaped: str, limit: int = SECTION_TEXT_MAX) -> list[tuple[str, bool]]:
    """`split_escaped` chunks of mrkdwn, each with whether it can stay mrkdwn: not when it was
    cut next to a `*`, `_`, `~` or backtick (`0~0~0…` with no blank to split at, where mrkdwn
    may read one at the cut as markup); then the whole text is plain text (`_sections`)."""
    chunks = split_escaped(escaped, limit)
    literal: set[int] = set()
    at = 0
    for index, chunk in enumerate(chunks[:-1]):
        at += len(chunk)
        if escaped[at : at + 1] in ("\n", " "):
            at += 1  # split at a blank, which it drops: a word edge already
            continue
        following = chunks[index + 1]
        if chunk[-1:] in tuple(MARKUP_CHARS) or following[:1] in tuple(MARKUP_CHARS):
            literal |= {index, index + 1}
    return [(chunk, index not in literal) for index, chunk in enumerate(chunks)]


def _heading(text: Inline) -> list[Block]:
    words = plain(text)
    if not words.strip():
        return []
    if len(escape_mrkdwn(words)) <= HEADER_TEXT_MAX:
        return [{"type": "header", "text": _plain(words)}]
    if needs_literal(text):
        return _literal_sections(words)
    return _sections(mrkdwn(text), words, bold=True)


def _text_blocks(element: Text) -> list[Block]:
    if element.heading:
        return _heading(element.text)
    words = plain(element.text)
    if not words.strip():
        return []
    if element.muted:
        if needs_literal(element.text):
            return [
                {"type": "context", "elements": [_literal(chunk)]}
                for chunk in split_escaped(escape_mrkdwn(words))
                if chunk.strip()
            ]
        chunks = _mrkdwn_chunks(mrkdwn(element.text))
        if not all(ok for _, ok in chunks):  # all plain text: see `_sections`
            chunks = [(chunk, False) for chunk in split_escaped(escape_mrkdwn(words))]
        return [
            {"type": "context", "elements": [_mrkdwn(chunk) if ok else _literal(chunk)]}
            for chunk, ok in chunks
            if chunk.strip()
        ]
    typed_only = all(isinstance(span, Typed) for span in spans(element.text))
    if typed_only or needs_literal(element.text):
        # A paragraph someone typed (the exact error text, a note, a comment), or one that
        # quotes typed text mrkdwn would format, is shown as typed: in mrkdwn `*.pst or *.ost`
        # would turn bold and backticks vanish, and Slack has no way to escape them there
        # (platform-facts §5: prefer plain_text). The bot's words beside it lose nothing but
        # their backticks.
        return _literal_sections(words)
    return _sections(mrkdwn(element.text), words)


def _facts_blocks(element: Facts) -> list[Block]:
    """`*Label:* value` lines in one mrkdwn section; a line whose typed part mrkdwn would
    format (a file named `*x*`, an error `~/.config`) is `Label: value` in plain_text, with
    the lines next to it that need it too (a section has one text object)."""
    blocks: list[Block] = []
    run: list[tuple[str, str]] = []  # each line as mrkdwn and as plain text
    run_literal = False
    for label, value in element.items:
        literal = needs_literal(label) or needs_literal(value)
        if run and literal != run_literal:
            blocks.extend(_facts_run(run, run_literal))
            run = []
        run_literal = literal
        run.append((f"*{mrkdwn(label)}:* {mrkdwn(value)}", f"{plain(label)}: {plain(value)}"))
    if run:
        blocks.extend(_facts_run(run, run_literal))
    return blocks


def _facts_run(lines: list[tuple[str, str]], literal: bool) -> list[Block]:
    words = "\n".join(said for _, said in lines)
    return _literal_sections(words) if literal else _sections("\n".join(m for m, _ in lines), words)


# The button that opens a KB article (its title is shown beside it, as plain text).
LINK_OPEN = "Open"


def _link_blocks(element: Link) -> list[Block]:
    """A link's title comes from outside (a KB): it is shown as plain text, where `*bold*`,
    `_x_`, `~x~` and backticks stay as written (mrkdwn, link labels included, has no escape
    for them), and the page opens from a link button beside it."""
    url = safe_url(element.url)
    title = _cut(element.text or element.url, 500)
    if url is None:
        shown = f"{title} ({element.url})" if element.url else title
        return [{"type": "section", "text": _plain(_cut(shown, SECTION_TEXT_MAX // 2))}]
    button = {"type": "button", "action_id": LINK_ACTION, "text": _plain(LINK_OPEN), "url": url}
    return [{"type": "section", "text": _plain(title), "accessory": button}]


def _element_blocks(element: Element) -> list[Block]:
    if isinstance(element, Text):
        return _text_blocks(element)
    if isinstance(element, Link):
        return _link_blocks(element)
    if isinstance(element, Facts):
        return _facts_blocks(element)
    return []  # inputs only render in modals


def _compact(data: dict[str, str]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _button(button: Button, action_id: str) -> dict[str, Any]:
    value = _compact(button.value)
    if len(value) > BUTTON_VALUE_MAX:
        raise ValueError(f"button value for {button.action} exceeds {BUTTON_VALUE_MAX} chars")
    rendered: dict[str, Any] = {
        "type": "button",
        "action_id": action_id,
        "text": _plain(_cut(button.title, BUTTON_TEXT_MAX)),
        "value": value,
    }
    if button.style in ("primary", "danger"):
        rendered["style"] = button.style
    return rendered


def _link(link: LinkButton, index: int) -> dict[str, Any]:
    if len(link.url) > BUTTON_URL_MAX:
        raise ValueError(f"link button url exceeds {BUTTON_URL_MAX} chars")
    return {
        "type": "button",
        "action_id": f"{LINK_ACTION}.{index}",
        "text": _plain(_cut(link.title, BUTTON_TEXT_MAX)),
        "url": link.url,
    }


def _actions_blocks(buttons: list[Button], links: list[LinkButton] | None = None) -> list[Block]:
    seen: dict[str, int] = {}
    elements = []
    for button in buttons:
        base = str(button.action)
        seen[base] = seen.get(base, 0) + 1
        action_id = base if seen[base] == 1 else f"{base}:{seen[base]}"
        elements.append(_button(button, action_id))
    elements += [_link(link, index) for index, link in enumerate(links or [], start=1)]
    return [
        {"type": "actions", "elements": elements[i : i + ACTIONS_PER_BLOCK]}
        for i in range(0, len(elements), ACTIONS_PER_BLOCK)
    ]


def _limit_blocks(blocks: list[Block], limit: int) -> list[Block]:
    """At most `limit` blocks: the body is cut (with a note), never the card's buttons."""
    if len(blocks) <= limit:
        return blocks
    keep = len(blocks)
    while keep > 0 and blocks[keep - 1]["type"] == "actions":
        keep -= 1
    actions = blocks[keep:]
    note = {"type": "context", "elements": [_mrkdwn(TRUNCATED_NOTE)]}
    return [*blocks[: max(limit - 1 - len(actions), 0)], note, *actions][:limit]


def _fallback_text(card: Card) -> str:
    escaped = escape_mrkdwn(card.fallback or plain(card.title))
    if len(escaped) <= SECTION_TEXT_MAX:
        return escaped
    return escaped[: _safe_cut(escaped, SECTION_TEXT_MAX - 1)] + "…"


def _texts(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "text" and isinstance(item, str):
                yield item
            else:
                yield from _texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)


def block_text_size(blocks: list[Block]) -> int:
    """Characters of every `text` string in `blocks`, as sent (what `msg_blocks_too_long`
    counts, as far as anyone outside Slack knows)."""
    return sum(len(text) for text in _texts(blocks))


def _cap_span(span: Span, cap: int) -> Span:
    return Typed(_cut(span.text, cap)) if isinstance(span, Typed) else span


def _cap_inline(value: Inline, cap: int) -> Inline:
    if isinstance(value, Rich):
        return Rich(*(_cap_span(span, cap) for span in value.spans))
    return _cap_span(value, cap)


def _cap_element(element: Element, cap: int) -> Element:
    if isinstance(element, Text):
        return replace(element, text=_cap_inline(element.text, cap))
    if isinstance(element, Facts):
        items = [(_cap_inline(k, cap), _cap_inline(v, cap)) for k, v in element.items]
        return replace(element, items=items)
    if isinstance(element, Link):
        # A link's title comes from outside (a KB), like typed text.
        return replace(element, text=_cut(element.text or element.url, cap))
    return element


def _capped(card: Card, cap: int) -> Card:
    """`card` with everything people typed (and link titles) cut to `cap` escaped characters,
    ending with "…"; the bot's own words, numbers, times and buttons as they are."""
    body = [_cap_element(element, cap) for element in card.body]
    return replace(card, title=_cap_inline(card.title, cap), body=body)


def _blocks(card: Card) -> list[Block]:
    blocks = _heading(card.title)
    for element in card.body:
        blocks.extend(_element_blocks(element))
    blocks.extend(_actions_blocks(card.buttons, card.links))
    return _limit_blocks(blocks, MESSAGE_BLOCKS_MAX)


def _fitting_blocks(card: Card, budget: int) -> list[Block]:
    """The card's blocks within `budget` characters of text: if they are over it, the typed
    texts are cut to the largest common length that fits; if even that is not enough, the
    body's last blocks give way to a note (the buttons stay)."""
    blocks = _blocks(card)
    if block_text_size(blocks) <= budget:
        return blocks
    low, high = _MIN_CAP, budget  # no one text can be longer than the whole budget
    best = _blocks(_capped(card, low))
    if block_text_size(best) > budget:
        return _drop_blocks(best, budget)
    while low <= high:
        mid = (low + high) // 2
        candidate = _blocks(_capped(card, mid))
        if block_text_size(candidate) <= budget:
            best, low = candidate, mid + 1
        else:
            high = mid - 1
    return best


def _drop_blocks(blocks: list[Block], budget: int) -> list[Block]:
    keep = len(blocks)
    while keep > 0 and blocks[keep - 1]["type"] == "actions":
        keep -= 1
    body, actions = blocks[:keep], blocks[keep:]
    note = {"type": "context", "elements": [_mrkdwn(TRUNCATED_NOTE)]}
    while body and block_text_size([*body, note, *actions]) > budget:
        body.pop()
    return [*body, note, *actions]


def render_message(card: Card, *, budget: int = MESSAGE_TEXT_BUDGET) -> dict[str, Any]:
    """`{"text", "blocks"}` for chat.postMessage / chat.postEphemeral / chat.update.

    Inputs (and the form) are not shown in messages: Slack forms are modals (`render_modal`).
    The blocks hold at most `budget` characters of text in all (`MESSAGE_TEXT_BUDGET`).
    """
    card = _for_slack(card)
    return {"text": _fallback_text(card), "blocks": _fitting_blocks(card, budget)}


def _option(value: str, title: str) -> dict[str, Any]:
    if len(value) > OPTION_VALUE_MAX:
        raise ValueError(f"select option value exceeds {OPTION_VALUE_MAX} chars: {value[:20]}…")
    return {"text": _plain(_cut(title, OPTION_TEXT_MAX)), "value": value}


def _input_element(element: TextInput | NumberInput | Select | UserPicker) -> dict[str, Any]:
    rendered: dict[str, Any]
    if isinstance(element, TextInput):
        rendered = {"type": "plain_text_input", "action_id": element.id}
        if element.multiline:
            rendered["multiline"] = True
        if element.value:
            rendered["initial_value"] = element.value
        if element.placeholder:
            rendered["placeholder"] = _plain(_cut(element.placeholder, PLACEHOLDER_MAX))
        if element.max_length is not None:
            rendered["max_length"] = min(element.max_length, TEXT_INPUT_MAX_LENGTH)
    elif isinstance(element, NumberInput):
        rendered = {"type": "number_input", "action_id": element.id, "is_decimal_allowed": False}
        if element.min is not None:
            rendered["min_value"] = str(element.min)
        if element.value is not None:
            rendered["initial_value"] = str(element.value)
    elif isinstance(element, Select):
        options = [_option(v, t) for v, t in element.options[:OPTIONS_MAX]]
        rendered = {"type": "static_select", "action_id": element.id, "options": options}
        initial = next((o for o in options if o["value"] == element.value), None)
        if element.value and initial is not None:
            rendered["initial_option"] = initial
    else:
        rendered = {"type": "users_select", "action_id": element.id}
        if element.value:
            rendered["initial_user"] = element.value
    return rendered


def _input_block(element: TextInput | NumberInput | Select | UserPicker) -> Block:
    return {
        "type": "input",
        "block_id": element.id,
        "label": _plain(_cut(element.label, LABEL_MAX)),
        "optional": not element.required,
        "element": _input_element(element),
    }


def render_modal(card: Card, *, callback_id: str | None = None) -> dict[str, Any]:
    """A `views.open` / `views.update` view for the card (normally a form card).

    `callback_id` defaults to the form's action value. `private_metadata` is the form
    context as compact JSON (ValueError above 3000 chars). When the title has to be cut to
    24 characters, the full title is repeated as the first block.
    """
    card = _for_slack(card)
    blocks: list[Block] = []
    title = plain(card.title).strip() or "Help desk"
    if len(title) > MODAL_TEXT_MAX:
        blocks.extend(_heading(card.title))
    for element in card.body:
        if isinstance(element, TextInput | NumberInput | Select | UserPicker):
            blocks.append(_input_block(element))
        else:
            blocks.extend(_element_blocks(element))
    blocks.extend(_actions_blocks(card.buttons))

    view: dict[str, Any] = {"type": "modal"}
    cb = callback_id if callback_id is not None else (str(card.form.action) if card.form else None)
    if cb is not None:
        view["callback_id"] = cb
    metadata = _compact(card.form.context) if card.form else ""
    if len(metadata) > PRIVATE_METADATA_MAX:
        raise ValueError(f"private_metadata exceeds {PRIVATE_METADATA_MAX} chars")
    view["private_metadata"] = metadata
    view["title"] = _plain(_cut(title, MODAL_TEXT_MAX))
    if card.form is not None or card.inputs():
        submit = card.form.submit_title if card.form else "Submit"
        view["submit"] = _plain(_cut(submit, MODAL_TEXT_MAX))
    view["close"] = _plain("Cancel")
    view["blocks"] = _limit_blocks(blocks, MODAL_BLOCKS_MAX)
    return view


def private_metadata(view: dict[str, Any]) -> dict[str, str]:
    """The form context back from a submitted view's `private_metadata` (empty when absent)."""
    raw = view.get("private_metadata") or ""
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): "" if v is None else str(v) for k, v in data.items()}


_SELECTED_KEYS = ("selected_user", "selected_conversation", "selected_channel", "selected_date")


def _state_value(state: dict[str, Any]) -> str:
    """One input's value: text/number `value`, a selected option's value or a selected id."""
    value: Any = state.get("value")
    if "selected_option" in state:
        value = (state["selected_option"] or {}).get("value")
    elif "selected_options" in state:
        value = ",".join(o.get("value", "") for o in state["selected_options"] or [])
    else:
        value = next((state[k] for k in _SELECTED_KEYS if k in state), value)
    return "" if value is None else str(value)


def view_values(state_values: dict[str, Any]) -> dict[str, str]:
    """Flatten `view.state.values` ({block_id: {action_id: state}}) into {action_id: value}."""
    values: dict[str, str] = {}
    for actions in state_values.values():
        for action_id, state in actions.items():
            values[action_id] = _state_value(state or {})
    return values
