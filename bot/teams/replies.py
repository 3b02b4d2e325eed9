"""Teams rendering of the core's neutral Reply: message activities and invoke responses."""

from __future__ import annotations

import base64
import dataclasses
import html
import html.entities
import re
from collections.abc import Callable
from typing import Any

from botbuilder.schema import Activity, ActivityTypes, Attachment, ChannelAccount, Mention

from cards import teams as adaptive
from cards.model import (
    ActionId,
    Card,
    Element,
    Inline,
    NumberInput,
    Rich,
    Text,
    kept_text,
    plain,
    spans,
)
from handlers import closure, escalation
from handlers.deps import Deps
from handlers.tickets import intake_card
from handlers.types import Image, Reply

CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
MESSAGE_CONTENT_TYPE = "application/vnd.microsoft.activity.message"
HINT = "To work with tickets, start your message with `ticket` (try `ticket help`)."
DUPLICATE_TEXT = "Already done: that was handled before."
# What a text message keeps at least of each typed part when it must be cut to fit.
TEXT_CAP_MIN = 16
# A mention's name stops at the next `<at>` or `</at>`: a lazy `.*?` scanned from every `<at>`
# to the end of a text without `</at>` (quadratic: 40,000 of them held the event loop 100 s).
_NAME = r"(?:(?!</?at>).)*"
_MENTION = re.compile(rf"^\s*(?:<at>{_NAME}</at>\s*)+", re.IGNORECASE | re.DOTALL)
_INNER_MENTION = re.compile(rf"<at>({_NAME})</at>", re.IGNORECASE | re.DOTALL)
# An HTML character reference with its `;` (`&amp;`, `&#39;`, `&#x2F;`): a bare `&` and a
# name without `;` (`&copy 2024`, `AT&T`) are text as typed, not entities.
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")


def strip_mentions(text: str) -> str:
    """`<at>Helpdesk</at> ticket show HD-1` -> `ticket show HD-1`: leading mentions (the bot)
    are dropped; one further on (`ticket new VPN down for <at>Ana Lopez</at>`) becomes the
    name Teams shows, as the person wrote it. Teams sends the text as HTML does (`R&amp;D`,
    `&lt;error&gt;`, `it&#39;s`): entities are decoded once the mentions are out, so that a
    typed `&lt;at&gt;` stays text and what is stored is what was typed."""
    spaced = (text or "").replace("&nbsp;", " ").replace("\xa0", " ")
    plain = _ENTITY.sub(_decode, _INNER_MENTION.sub(r"\1", _MENTION.sub("", spaced)))
    return plain.replace("\xa0", " ").strip()


def without_bot_mentions(activity: Activity) -> str:
    """The activity's text without the mentions of the bot itself, wherever they are: in a
    channel the bot hears only messages that @mention it, and people put that mention at the
    end as often as at the start. A mention is the bot's when its entity names the recipient
    (`mentioned.id`); its `text` is the `<at>…</at>` Teams put in the message text."""
    text = activity.text if isinstance(activity.text, str) else ""
    bot = getattr(activity.recipient, "id", None)
    if not bot or "<at" not in text.lower():
        return text
    for entity in activity.entities or []:
        if str(getattr(entity, "type", "") or "").lower() != "mention":
            continue
        fields = getattr(entity, "additional_properties", None)
        fields = fields if isinstance(fields, dict) else {}
        mentioned, tag = fields.get("mentioned"), fields.get("text")
        if isinstance(mentioned, dict) and mentioned.get("id") == bot and isinstance(tag, str):
            if tag.strip():
                text = text.replace(tag, " ")
    return text


def _decode(entity: re.Match[str]) -> str:
    reference = entity.group(0)
    if reference.startswith("&#"):
        return html.unescape(reference)
    return html.entities.html5.get(reference[1:], reference)  # `&notify;` is no `&not;`


def with_text(reply: Reply) -> Card | None:
    """The reply's card with its text on top (as the Slack edge does), or None.

    A reply's text is plain text (it may quote what people typed): shown literally.
    """
    card = reply.card
    if card is None:
        return None
    if not reply.text:
        return card
    return dataclasses.replace(
        card, body=[Text(reply.text), *card.body], fallback=card.fallback or plain(reply.text)
    )


def card_activity(card: Card) -> Activity:
    """A message carrying the card, within Teams' message size limit as a whole (the card,
    its summary and what botbuilder adds): long texts people typed are cut to fit."""

    def message(content: dict[str, Any]) -> Activity:
        return Activity(
            type=ActivityTypes.message,
            attachments=[Attachment(content_type=CARD_CONTENT_TYPE, content=content)],
            # plain text (notifications, previews): the card's fallback, cut as it is
            summary=content.get("fallbackText") or None,
        )

    def size(content: dict[str, Any]) -> int:
        return adaptive.payload_size(message(content).serialize())

    return message(adaptive.render_card(card, execute=True, size=size))


def image_attachment(image: Image, png: bytes) -> Attachment:
    """An inline `image/png` attachment (Teams shows it in the message; base64 images do not
    count towards its 40 KB message limit)."""
    return png_attachment(image_content(image, png))


def image_content(image: Image, png: bytes) -> dict[str, str]:
    """The image as an answer's content keeps it (`{"image": ...}` beside `card`/`text`), so
    that an answer sent later through the outbox (throttled) still carries it."""
    return {"name": image.filename, "png": base64.b64encode(png).decode("ascii")}


def png_attachment(kept: dict[str, str]) -> Attachment:
    """The attachment of an image kept by `image_content`."""
    url = "data:image/png;base64," + kept["png"]
    return Attachment(content_type="image/png", content_url=url, name=kept["name"])


def text_activity(text: Inline) -> Activity:
    """A text message that shows `text` line by line: the bot's words as written (backticks
    for commands), what people typed literally.

    Teams runs the lines of a message together (also with `textFormat: plain`) unless they are
    Markdown paragraphs, so the text goes as Markdown (cards.teams.markdown: typed parts
    escaped, nothing else), one paragraph per line, leading spaces kept as no-break spaces
    (four would start a code block).
    """

    def message(cap: int | None) -> Activity:
        lines = [_keep_indent(line) for line in adaptive.markdown(text, cap=cap).split("\n")]
        joined = "\n\n".join(lines)
        return Activity(type=ActivityTypes.message, text=joined, text_format="markdown")

    def fits(activity: Activity) -> bool:
        return adaptive.payload_size(activity.serialize()) <= adaptive.MAX_PAYLOAD_BYTES

    whole = message(None)
    if fits(whole):
        return whole
    # Over Teams' size limit (a quoted comment of emoji, each sent as twelve characters): what
    # people typed is cut (with "…") to the largest common length that fits, as on cards.
    typed = [len(plain(span)) for span in spans(text) if not isinstance(span, str)]
    low, high = TEXT_CAP_MIN, max(typed, default=0)
    best = message(low)
    while low <= high:
        middle = (low + high) // 2
        candidate = message(middle)
        if fits(candidate):
            best, low = candidate, middle + 1
        else:
            high = middle - 1
    return best


def with_mention(activity: Activity, *, user_id: str, name: str) -> Activity:
    """`activity` starting with a mention of the person `user_id` (their Teams id): its text
    begins with `<at>Name</at>` and its entities hold the mention, whose `text` Teams finds in
    the message text. A card's message gets the mention as its text, beside the card: the
    card stays as the Adaptive Cards schema has it (no `msteams` entities in the card)."""
    tag = adaptive.at_mention(name)
    activity.text = f"{tag} {activity.text}" if activity.text else tag
    activity.text_format = "markdown"
    mention = Mention(mentioned=ChannelAccount(id=user_id, name=name), text=tag, type="mention")
    activity.entities = [*(activity.entities or []), mention]
    return activity


def _keep_indent(line: str) -> str:
    stripped = line.lstrip(" ")
    return "\u00a0" * (len(line) - len(stripped)) + stripped


def reply_message(reply: Reply) -> tuple[Activity, dict[str, Any]] | None:
    """The message that answers `reply` in a conversation and its content as the outbox
    keeps it (`{"card"}` or `{"text"}`); None: nothing to send."""
    if reply.duplicate:
        return None
    card = with_text(reply)
    if card is not None:
        return card_activity(card), {"card": card.to_dict()}
    if reply.text:
        return text_activity(reply.text), kept_text(reply.text)
    return None


# Forms the edge can rebuild from what was submitted, to show field errors on the form itself.
FormBuilder = Callable[[Deps, dict[str, str]], Card]


def _intake_form(deps: Deps, data: dict[str, str]) -> Card:
    context = {k: data[k] for k in ("channel", "thread") if data.get(k)}
    return intake_card(deps.config, summary=data.get("summary", ""), context=context)


FORMS: dict[ActionId, FormBuilder] = {
    ActionId.TICKET_CREATE: _intake_form,
    ActionId.CLOSE_SUBMIT: closure.rebuild_closure_form,
    ActionId.ESCALATE_SUBMIT: escalation.rebuild_escalation_form,
}


def _refill(element: Element, data: dict[str, str], errors: dict[str, Inline]) -> list[Element]:
    if element.kind not in ("text_input", "number_input", "select", "user_picker"):
        return [element]
    ident: str = element.id  # type: ignore[union-attr]
    out: list[Element] = []
    if ident in data:
        if isinstance(element, NumberInput):
            try:
                element = dataclasses.replace(element, value=int(data[ident]))
            except ValueError:
                element = dataclasses.replace(element, value=None)
        else:
            element = dataclasses.replace(element, value=data[ident])  # type: ignore[call-arg]
    out.append(element)
    if ident in errors:
        out.append(Text(errors[ident], muted=True))
    return out


def _said_under_field(element: Element, data: dict[str, str], errors: dict[str, Inline]) -> bool:
    """A paragraph explaining a field left empty that has an error: the error (why it is
    needed) says it again under the field. Where something was typed, the error is about what
    was typed, and the paragraph (the time already logged, why a KB article is needed) stays."""
    if not isinstance(element, Text) or element.about not in errors:
        return False
    return not str(data.get(element.about) or "").strip()


def error_form(deps: Deps, action: ActionId | None, data: dict[str, str], reply: Reply) -> Card:
    """The submitted form again, values kept, the problem on top and under each field
    (the form as the core gave it with the errors, else rebuilt from the submission; for a
    form the edge cannot rebuild, the problems as a list)."""
    top: list[Element] = [Text(reply.text)] if reply.text else []
    builder = FORMS.get(action) if action is not None else None
    if reply.card is not None and reply.field_errors:
        form = reply.card
    elif builder is None:
        lines = [Text(Rich(f"{field}: ", problem)) for field, problem in reply.field_errors.items()]
        return Card(title="", body=[*top, *lines], fallback=plain(reply.text))
    else:
        form = builder(deps, data)
    body = list(top)
    for element in form.body:
        if _said_under_field(element, data, reply.field_errors):
            continue
        body.extend(_refill(element, data, reply.field_errors))
    return dataclasses.replace(form, body=body)


def _card_body(content: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": 200, "type": CARD_CONTENT_TYPE, "value": content}


def invoke_body(
    deps: Deps, action: ActionId | None, data: dict[str, str], reply: Reply
) -> dict[str, Any]:
    """`adaptiveCard/action` response: a card replaces the card, text shows as a message."""
    if reply.duplicate:
        return {"statusCode": 200, "type": MESSAGE_CONTENT_TYPE, "value": DUPLICATE_TEXT}
    in_form = reply.field_errors or (reply.form_error and action in FORMS)
    card = error_form(deps, action, data, reply) if in_form else with_text(reply)
    if card is not None:
        # Measured as the front sends it (adaptive.invoke_json): a form given back with the
        # values typed in it keeps them whole in any script (a cut value, sent again, would be
        # stored cut).
        value = adaptive.render_card(
            card, execute=True, size=lambda content: adaptive.invoke_size(_card_body(content))
        )
        return _card_body(value)
    return {"statusCode": 200, "type": MESSAGE_CONTENT_TYPE, "value": plain(reply.text) or "Done."}
