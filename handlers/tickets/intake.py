"""The intake form (SPEC labels, in order) and validation of what comes back from it."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from cards.model import ActionId, Card, Form, NumberInput, Select, TextInput, UserPicker
from handlers.config import HelpdeskConfig
from handlers.types import InvalidInput

REPRODUCIBLE = [("yes", "Yes"), ("no", "No"), ("intermittent", "Intermittent")]
PRIORITIES = [
    ("P1", "P1 - system down / multi-user"),
    ("P2", "P2 - single user blocked"),
    ("P3", "P3 - degraded"),
    ("P4", "P4 - request"),
]
MAX_TEXT = 3000
MAX_SHORT = 200
# Built-in categories; the config's identity, tier-1 and escalation categories are added.
BASE_CATEGORIES = (
    "access",
    "account",
    "email",
    "hardware",
    "mfa",
    "network",
    "password-reset",
    "printer",
    "security",
    "server",
    "software",
)
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
FULL_WIDTH_DIGITS = {0xFF10 + n: str(n) for n in range(10)}
# The longest e-mail address there is (RFC 5321's 256-octet path, less its angle brackets);
# a Requester kept as typed must also fit its 255-character column.
EMAIL_MAX = 254


def categories(config: HelpdeskConfig) -> list[str]:
    """Known categories: identity-gated, tier-1 scope, escalation and Patch Tuesday ones, plus
    `other`.

    A closed list (not free text) so `Password reset` cannot slip past the identity gate.
    """
    known = {
        *BASE_CATEGORIES,
        *config.identity.categories,
        *config.tier1_scope,
        *config.escalation.queues,
        *config.changes.patch_tuesday_categories,
    }
    known.discard("other")
    return [*sorted(known), "other"]


def intake_card(config: HelpdeskConfig, *, summary: str = "", context: dict[str, str]) -> Card:
    """The intake form, prefilled with `summary`; `context` comes back with the submission."""
    return Card(
        title="New ticket",
        body=[
            UserPicker(id="requester", label="Requester", required=True),
            TextInput(
                id="summary",
                label="Summary",
                required=True,
                value=summary[:MAX_TEXT],  # a form field holds at most this much
                max_length=MAX_TEXT,
                placeholder="The symptom in the user's own words",
            ),
            TextInput(
                id="error_text",
                label="Exact error text",
                multiline=True,
                max_length=MAX_TEXT,
                placeholder="Copied exactly, codes included",
            ),
            TextInput(
                id="doing", label="What were they doing", multiline=True, max_length=MAX_TEXT
            ),
            Select(id="reproducible", label="Reproducible", options=REPRODUCIBLE, required=True),
            NumberInput(id="users_affected", label="Users affected", required=True, value=1, min=1),
            Select(id="priority", label="Priority", options=PRIORITIES, required=True),
            Select(
                id="category",
                label="Category",
                required=True,
                options=[(c, c) for c in categories(config)],
            ),
            TextInput(
                id="asset",
                label="Asset",
                max_length=MAX_SHORT,
                placeholder="Hostname, asset tag or serial",
            ),
            TextInput(
                id="client",
                label="Client",
                max_length=MAX_SHORT,
                placeholder="MSP client (sets the SLA tier)",
            ),
        ],
        form=Form(action=ActionId.TICKET_CREATE, submit_title="Open ticket", context=context),
        fallback="New ticket form",
    )


@dataclass(frozen=True)
class Intake:
    requester: str
    summary: str
    error_text: str
    doing: str
    reproducible: str
    users_affected: int
    priority: str
    category: str
    asset: str
    client: str


def _text(values: dict[str, Any], key: str) -> str:
    value = values.get(key)
    return "" if value is None else str(value)


def _visible(text: str) -> str:
    """`text` without invisible format characters (zero-width space, joiners, BOM)."""
    return "".join(c for c in text if unicodedata.category(c) != "Cf")


# Quotes and brackets a pasted address comes wrapped in (`"vic@example.com"`, smart quotes
# from a word processor, `(vic@example.com)`, Markdown's backticks), by their opening mark.
_WRAPPERS = {
    '"': '"',
    "'": "'",
    "`": "`",
    "\u201c": "\u201d",
    "\u2018": "\u2019",
    "\u00ab": "\u00bb",
    "(": ")",
    "[": "]",
    "{": "}",
    "<": ">",
}
# What may follow a pasted address but never ends one (a domain ends in a letter or digit): a
# sentence's or a list's punctuation, and the closing half of a wrapper left on its own.
_TRAILING = ";,.:!?)]}>\"'`\u201d\u2019\u00bb"


def shown_address(typed: str) -> str:
    """An e-mail address as it reads: compatibility forms folded (full-width letters),
    invisible format characters (zero-width space, joiners, direction marks) and the wrapping
    of a pasted address dropped, so a pasted look-alike of a directory address is that
    address, not "nobody" (not a VIP)."""
    folded = unicodedata.normalize("NFKC", typed)
    text = _visible(folded).strip()
    # What comes with an address copied from elsewhere: a recipient list's separator, an
    # address line (`Vic VIP <vic@example.com>`, or only its angle brackets), quotes or
    # brackets around it, an e-mail link (`mailto:`, maybe with `?subject=`), a sentence's
    # full stop. None can be part of an address, and each made a VIP "nobody".
    while True:
        before = text
        text = text.rstrip(";,").strip()
        if "<" in text and text.endswith(">") and not text.startswith("<"):
            text = text.rsplit("<", 1)[1]  # the address of a `Name <address>` line
        elif len(text) > 1 and _WRAPPERS.get(text[0]) == text[-1]:
            text = text[1:-1].strip()
        elif text[:1] in _WRAPPERS and _WRAPPERS[text[0]] not in text[1:]:
            text = text[1:].strip()  # its closing half was left behind (or cut off)
        if text[:7].lower() == "mailto:":
            text = text[7:].split("?", 1)[0].strip()
        if "@" in text:
            text = text.rstrip(_TRAILING)
        if text == before:
            return text


# Letters of other scripts (Cyrillic, Greek, Armenian), Latin variants (dotless i, script g)
# and small Roman numerals drawn like an ASCII letter, by the letter they pass for in an
# address (from Unicode TR39's confusables of the Latin letters; either case, as addresses are
# compared case-insensitively). Written as escapes: each looks like the letter it maps to.
_LOOK_ALIKES = str.maketrans(
    {
        **dict.fromkeys("\u0430\u0410\u03b1\u0391\u0251", "a"),
        **dict.fromkeys("\u0412\u0392\u0432\u03b2", "b"),
        **dict.fromkeys("\u0441\u0421\u03f2\u03f9\u217d", "c"),
        **dict.fromkeys("\u0501\u217e", "d"),
        **dict.fromkeys("\u0435\u0415\u0395\u04bd", "e"),
        **dict.fromkeys("\u0261\u0581", "g"),
        **dict.fromkeys("\u04bb\u041d\u0397\u0570", "h"),
        **dict.fromkeys("\u0456\u0406\u03b9\u0399\u0131\u04c0\u2170", "i"),
        **dict.fromkeys("\u0458\u0408\u03f3\u0237", "j"),
        **dict.fromkeys("\u041a\u039a\u03ba\u043a", "k"),
        **dict.fromkeys("\u04cf\u217c", "l"),
        **dict.fromkeys("\u041c\u039c\u217f", "m"),
        **dict.fromkeys("\u039d\u0578", "n"),
        **dict.fromkeys("\u043e\u041e\u03bf\u039f\u0585", "o"),
        **dict.fromkeys("\u0440\u0420\u03c1\u03a1", "p"),
        **dict.fromkeys("\u051b\u051a\u0566", "q"),
        **dict.fromkeys("\u0455\u0405", "s"),
        **dict.fromkeys("\u0422\u03a4", "t"),
        **dict.fromkeys("\u03c5\u057d", "u"),
        **dict.fromkeys("\u03bd\u0474\u0475\u2174", "v"),
        **dict.fromkeys("\u051d\u051c\u0461", "w"),
        **dict.fromkeys("\u0445\u0425\u03c7\u03a7\u2179", "x"),
        **dict.fromkeys("\u0443\u0423\u04af\u04ae\u03a5", "y"),
        **dict.fromkeys("\u0396", "z"),
    }
)


def look_alike(address: str) -> str:
    """The plain-ASCII address `address` passes for ('' when it is plain ASCII already, or
    still is not once folded): accents and other combining marks dropped (a dot below an i),
    letters of other scripts drawn like a Latin one read as that letter (a Cyrillic i, U+0456,
    in `vic`). A requester address the directory does not know is looked up by this too, so a
    pasted look-alike of a VIP's address is the VIP (as a full-width one is: `shown_address`)."""
    if address.isascii():
        return ""
    decomposed = unicodedata.normalize("NFKD", address)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    folded = unicodedata.normalize("NFKC", bare).translate(_LOOK_ALIKES)
    return folded if folded.isascii() and folded != address else ""


def validate(values: dict[str, Any], config: HelpdeskConfig, *, email_requester: bool) -> Intake:
    """Check a submitted intake form; raises InvalidInput with one message per bad field."""
    errors: dict[str, str] = {}
    requester = _text(values, "requester").strip()
    if email_requester:
        requester = shown_address(requester)
    if not requester:
        errors["requester"] = "Who is this ticket for?"
    elif email_requester and len(requester) > EMAIL_MAX:
        errors["requester"] = (
            f"An e-mail address has at most {EMAIL_MAX} characters: enter the person's address."
        )
    elif email_requester and not EMAIL.match(requester):
        errors["requester"] = "Enter the person's e-mail address, e.g. ana@example.com"
    summary = _text(values, "summary")
    if not _visible(summary).strip():  # blank, or only zero-width characters pasted
        errors["summary"] = "Describe the symptom in the user's own words."
    for key in ("summary", "error_text", "doing"):
        if len(_text(values, key)) > MAX_TEXT:
            errors[key] = f"Keep this under {MAX_TEXT} characters."
    for key in ("asset", "client"):
        if len(_text(values, key)) > MAX_SHORT:
            errors[key] = f"Keep this under {MAX_SHORT} characters."
    reproducible = _text(values, "reproducible").strip().lower()
    if reproducible not in {v for v, _ in REPRODUCIBLE}:
        errors["reproducible"] = "Choose Yes, No or Intermittent."
    users_affected = 0
    # Full-width digits (U+FF10-U+FF19, what an East Asian input method types) are the
    # digits they show; not NFKC, which would also read a superscript (`10²` as 102).
    raw_users = _text(values, "users_affected").translate(FULL_WIDTH_DIGITS).strip()
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
    digits = raw_users.lstrip("0")
    if not (raw_users.isascii() and raw_users.isdigit()) or not digits:
        errors["users_affected"] = "Enter a whole number of users, 1 or more."
    elif len(digits) > 7 or int(digits) > 1_000_000:
        errors["users_affected"] = "Enter at most 1000000 users."
    else:
        users_affected = int(digits)
    priority = _text(values, "priority").strip().upper()
    if priority not in {v for v, _ in PRIORITIES}:
        errors["priority"] = "Choose P1, P2, P3 or P4."
    category = _text(values, "category").strip().lower()
    if category not in categories(config):
        errors["category"] = "Choose a category from the list."
    if errors:
        raise InvalidInput("Please fix the highlighted fields.", errors)
    return Intake(
        requester=requester,
        summary=summary,
        error_text=_text(values, "error_text"),
        doing=_text(values, "doing"),
        reproducible=reproducible,
        users_affected=users_affected,
        priority=priority,
        category=category,
        asset=_text(values, "asset"),
        client=_text(values, "client"),
    )
