"""Error signatures: what identifies an error in a ticket's exact error text (pure rules).

A signature is `kind:value`. Codes are the kinds SPEC's "the same error" is about: two tickets
have the same error when their exact error texts are equal (ignoring case and surrounding
whitespace: kind `exact`) or when they carry the same error code: a hex code (`0x80070005`,
also written as a negative HRESULT or as Teams' `caa70004`), a Windows event ID, an `AADSTS`
code (also the sign-in page's own "Error Code: 53003", which is AADSTS53003), an HTTP error
status (4xx, 5xx), an Office error code (`30015-11`) or a numbered Windows/VPN error
(`Error 809`; not after "zip code", "area code"...). GUIDs (request, correlation and app ids)
hold no codes. Two more kinds only rank look-alikes (`similar`): exception names, and the
message text with what varies between two reports of one error (numbers, paths, GUIDs,
timestamps, addresses, host names) taken out.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus

# Kinds whose shared value makes two tickets have "the same error" (SPEC).
CODE_KINDS = ("hex", "event", "aadsts", "http", "office", "error")
SAME_ERROR_KINDS = ("exact", *CODE_KINDS)
# Kinds that only say two errors look alike.
LOOKALIKE_KINDS = ("text", "exception")
MAX_SIGNATURE = 120

_HEX = re.compile(r"(?<![0-9a-z])0x([0-9a-f]{1,16})(?![0-9a-z])", re.IGNORECASE)
# An HRESULT written in decimal, e.g. Office's "(-2147024891)" = 0x80070005.
_NEGATIVE_HRESULT = re.compile(r"(?<![\w.-])-(2\d{9})(?!\d)")
# Eight hex digits without 0x after "error code", "hr=" ... and Teams' caaXXXXX codes.
_BARE_HEX = re.compile(
    r"(?:\b(?:error|code|hresult|hr|status)\s*(?:code)?\s*[:=#-]?\s*|(?<![0-9a-z]))"
    r"((?:[89a-f][0-9a-f]{7})(?=\b))",
    re.IGNORECASE,
)
# Hex values that are not error codes: addresses, offsets, build time stamps, a process's
# start time (event 1000: "Faulting application start time: 0x01da..."), ids. Whole
# words: "database 0x80004005" and "filehandle 0x..." are codes.
_NOT_A_CODE = re.compile(
    r"\b(?:offset|time\s*stamp|stamp|start\s*time|address|addr|process id|thread id|pid|tid|"
    r"handle|image\s*base|base)\s*[:=]?\s*$",
    re.IGNORECASE,
)
_CAA = re.compile(r"(?<![0-9a-z])(caa[0-9a-f]{5})(?![0-9a-z])", re.IGNORECASE)
# A date or time after "event" ("event 2026-12-08", "event 12/08", "event 10:31") is no ID.
# Also as a Windows in German, French, Spanish, Italian, Portuguese or Dutch writes it
# ("Ereignis-ID: 4625", "ID de l'événement : 4625", "Id. del evento: 4625").
_EVENT = re.compile(
    r"(?:\bevent\s*(?:id|code)?|\bereignis(?:-?id)?|\bgebeurtenis(?:-?id)?|"
    r"\bid\.?\s*(?:de\s+l['\u2019]\s*|del\s+|de\s+|do\s+)?(?:événement|evento)|\bévénement|\bevento)"
    r"\s*[:#=]?\s*(\d{1,5})\b(?![-/.:]\d)",
    re.IGNORECASE,
)
_AADSTS = re.compile(r"\bAADSTS(\d{4,7})\b", re.IGNORECASE)
# The Entra sign-in page shows the AADSTS code without its prefix ("Error Code: 53003") above
# its troubleshooting details (Request Id, Correlation Id, Timestamp, App id...). The number
# is read as AADSTS only with those details or where the text names Entra; alone it stays a
# generic error code (many products have a five-digit "error code").
_SIGN_IN_CODE = re.compile(r"\berror\s*code\s*[:#]?\s*(\d{5,7})\b(?![-.]\d)", re.IGNORECASE)
_SIGN_IN_DETAILS = (
    re.compile(r"\brequest\s*id\s*:", re.IGNORECASE),
    re.compile(r"\bcorrelation\s*id\s*:", re.IGNORECASE),
)
_ENTRA = re.compile(
    r"\b(?:microsoft\s+entra|entra\s+id|azure\s+ad|azure\s+active\s+directory|"
    r"conditional\s+access|login\.microsoftonline\.com|aadsts\d)",
    re.IGNORECASE,
)
# Request, correlation, trace and app ids: their first group ("d3590ed6-...", Office's app
# id) would otherwise read as a bare hex code shared by unrelated sign-in errors.
_GUID = re.compile(
    r"(?<![0-9a-z-])[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?![0-9a-z-])",
    re.IGNORECASE,
)
# "zip code 10001", "area code 404", "PIN code 4821": a number after these words is no error.
_NOT_AN_ERROR_CODE = re.compile(
    r"\b(?:zip|postal|post|area|country|dialling|dialing|pin|verification|confirmation|"
    r"security|access|one[\s-]?time|otp|sms|mfa|2fa|authentication|authenticator|login|"
    r"promo|discount|coupon|voucher|gift|tax|product|item|cost|project|billing|account|"
    r"customer|booking|tracking|door|gate|alarm|lock|sort|branch|bank)[\s/-]*$",
    re.IGNORECASE,
)
# A reason phrase and the statuses it names: every error phrase of HTTPStatus, and the older
# and newer wordings of one (they differ between Python versions) and .NET's ("The remote
# server returned an error: (503) Server Unavailable." is its WebException message for 503,
# found in countless PowerShell and ADAL errors).
_OTHER_WORDINGS: dict[str, int] = {
    "payload too large": 413,
    "content too large": 413,
    "request entity too large": 413,
    "uri too long": 414,
    "request-uri too long": 414,
    "range not satisfiable": 416,
    "requested range not satisfiable": 416,
    "unprocessable entity": 422,
    "unprocessable content": 422,
    "server unavailable": 503,
}


def _reason_statuses() -> dict[str, frozenset[int]]:
    found: dict[str, set[int]] = {}
    for status in HTTPStatus:
        if status.value >= 400:
            found.setdefault(status.phrase.lower(), set()).add(status.value)
    for wording, status_code in _OTHER_WORDINGS.items():
        found.setdefault(wording, set()).add(status_code)
    return {phrase: frozenset(statuses) for phrase, statuses in found.items()}


_REASON_STATUS = _reason_statuses()
_REASONS = "|".join(re.escape(p) for p in sorted(_REASON_STATUS, key=len, reverse=True))
_STATUSES = frozenset(int(s) for s in HTTPStatus)
# Said to be HTTP ("HTTP 503", "status code 404", "status: 500"): a status 100-599, of which
# only 4xx and 5xx are errors ("HTTP 200 OK" is none).
_HTTP = (
    re.compile(
        r"\bHTTP(?:/\d(?:\.\d)?)?\s*(?:error|status|response|code)?\s*(?:code)?\s*[:#=]?\s*"
        r"\(?([1-5]\d\d)\b",
        re.IGNORECASE,
    ),
    re.compile(r"\b(?:status|response)\s*code\s*[:#=]?\s*\(?([1-5]\d\d)\b", re.IGNORECASE),
    re.compile(r"\bstatus\s*[:=]\s*([1-5]\d\d)\b", re.IGNORECASE),
)
# A number and a reason word ("(401) Unauthorized", "502 Bad Gateway"): only the status the
# words name ("Microsoft 365 unauthorized" is no status).
_HTTP_REASON = re.compile(rf"\(?\b([1-5]\d\d)\)?\s*[-:]?\s*({_REASONS})\b", re.IGNORECASE)
# "Error 404", "error code 401", "code 401": only a real HTTP error status.
# "Error" as a Windows in German, French, Spanish/Portuguese, Italian or Dutch writes it
# ("Fehler 809", "Erreur 809", "Errore 809", "código de error 809", "Fout 809").
_ERROR_WORDS = (
    r"fehler\s*code|fehler|erreur|code\s+d['\u2019]\s*erreur|code\s+erreur|errore|"
    r"codice(?:\s+di)?\s+errore|erro|c[oó]digo\s+de\s+erro[r]?|fout\s*code|fout"
)
_HTTP_ERROR = re.compile(
    rf"\b(?:error\s*code|error|code|{_ERROR_WORDS})\s*[:#]?\s*(40[0-9]|41[0-9]|429|50[0-9])\b"
    r"(?![-.]\d)",
    re.IGNORECASE,
)
_OFFICE = re.compile(r"\bcode\s*[:#]?\s*(\d{4,5}-\d{1,5})\b", re.IGNORECASE)
_NUMBERED = re.compile(
    rf"\b(?:error|err|system error|error code|code|{_ERROR_WORDS})\s*[:#]?\s*(\d{{2,5}})\b"
    r"(?![-.]\d)",
    re.IGNORECASE,
)
# Six or seven digits only after "error code" (Entra's 500121 without its sign-in page).
_LONG_ERROR_CODE = re.compile(r"\berror\s*code\s*[:#]?\s*(\d{6,7})\b(?![-.]\d)", re.IGNORECASE)
_EXCEPTION = re.compile(
    r"(?<![\w.])((?:[A-Za-z_][A-Za-z0-9_]*\.)*[A-Z][A-Za-z0-9_]*?(?:Exception|Error))\b"
)
_PLAIN_WORDS = frozenset({"error", "exception", "servererror"})

# What differs between two reports of one error.
_VARIABLE = [
    re.compile(r"https?://\S+", re.IGNORECASE),
    re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"),
    re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.IGNORECASE),
    re.compile(
        r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)?"
        r"(?:\s*(?:Z|UTC|GMT|[+-]\d{2}:?\d{2}))?",
        re.IGNORECASE,
    ),
    re.compile(r"\b\d{1,4}[/.]\d{1,2}[/.]\d{1,4}\b"),
    re.compile(r"\b\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:\s*[AP]\.?M\.?)?\b", re.IGNORECASE),
    re.compile(r"(?<![\w])[A-Za-z]:\\[^\s\"'<>|]*"),
    re.compile(r"\\\\[^\s\"'<>|]+"),
    re.compile(r"(?<![\w.])(?:~|\.{1,2})?/(?:[\w.@-]+/)+[\w.@-]*"),
    re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"),
    re.compile(r"\b[0-9a-f]{12,}\b", re.IGNORECASE),
    re.compile(
        r"\b(?:[a-z0-9-]+\.)+(?:com|net|org|local|lan|corp|io|int|edu|gov)\b", re.IGNORECASE
    ),
    re.compile(r"'[^'\n]{1,40}'|\"[^\"\n]{1,40}\""),
]
_DIGITS = re.compile(r"\d+")
_NON_WORD = re.compile(r"[^\w]+")


@dataclass(frozen=True)
class Signature:
    kind: str
    value: str

    @property
    def key(self) -> str:
        """What is stored and indexed: `kind:value`."""
        return f"{self.kind}:{self.value}"[:MAX_SIGNATURE]

    @property
    def same_error(self) -> bool:
        return self.kind in SAME_ERROR_KINDS

    @property
    def label(self) -> str:
        """How the signature is named to a technician."""
        return describe(self.key)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def exact_key(error_text: str) -> str:
    """The `exact` signature: the text without surrounding whitespace, case folded; read as
    it shows (canonical composition, NFC: an `Ü` pasted from a macOS file name is `U` and a
    combining diaeresis; invisible format characters such as a zero-width space or a byte
    order mark dropped), so two texts that read the same are equal."""
    shown = "".join(
        c for c in unicodedata.normalize("NFC", error_text) if unicodedata.category(c) != "Cf"
    )
    return _digest(shown.strip().casefold())


def _hex(digits: str) -> str:
    value = int(digits, 16)
    # Leading zeros carry no meaning (0x7B and 0x0000007B are one stop code).
    return f"0x{value:08x}" if value <= 0xFFFFFFFF else f"0x{value:x}"


def codes(text: str) -> list[Signature]:
    """The error codes in `text` (every kind SPEC's "the same error" compares), in order."""
    found: list[Signature] = []
    taken: list[tuple[int, int]] = []

    def add(kind: str, value: str, span: tuple[int, int]) -> None:
        taken.append(span)
        signature = Signature(kind, value)
        if signature not in found:
            found.append(signature)

    def free(span: tuple[int, int]) -> bool:
        return all(span[1] <= a or span[0] >= b for a, b in taken)

    def qualified(match: re.Match[str]) -> bool:
        """False for a bare "code" whose words before say it is no error ("zip code")."""
        if not match.group(0).lower().startswith("code"):
            return True
        return not _NOT_AN_ERROR_CODE.search(text[max(0, match.start() - 30) : match.start()])

    taken += [m.span() for m in _GUID.finditer(text)]
    for match in _HEX.finditer(text):
        # 0x0 is no error (S_OK, ERROR_SUCCESS): Remote Desktop's "Extended error code: 0x0"
        # follows every one of its error codes, so it would make them all one error.
        if int(match.group(1), 16) == 0 or _NOT_A_CODE.search(
            text[max(0, match.start() - 20) : match.start()]
        ):
            taken.append(match.span())
            continue
        add("hex", _hex(match.group(1)), match.span(1))
    for match in _CAA.finditer(text):
        if free(match.span(1)):
            add("hex", _hex(match.group(1)), match.span(1))
    for match in _BARE_HEX.finditer(text):
        if free(match.span(1)) and re.search(r"[a-f]|^8", match.group(1), re.IGNORECASE):
            add("hex", _hex(match.group(1)), match.span(1))
    for match in _NEGATIVE_HRESULT.finditer(text):
        value = int(match.group(1))
        if 0x80000000 <= 2**32 - value <= 0xFFFFFFFF and value <= 2**31:
            add("hex", _hex(f"{2**32 - value:x}"), match.span())
    for match in _AADSTS.finditer(text):
        add("aadsts", str(int(match.group(1))), match.span())
    if all(p.search(text) for p in _SIGN_IN_DETAILS) or _ENTRA.search(text):
        for match in _SIGN_IN_CODE.finditer(text):
            if free(match.span(1)):
                add("aadsts", str(int(match.group(1))), match.span(1))
    for match in _EVENT.finditer(text):
        if free(match.span(1)):
            add("event", str(int(match.group(1))), match.span(1))
    for pattern in _HTTP:
        for match in pattern.finditer(text):
            if free(match.span(1)):
                if int(match.group(1)) >= 400:
                    add("http", match.group(1), match.span(1))
                else:  # a success or a redirect: no error, and no generic code either
                    taken.append(match.span(1))
    for match in _HTTP_REASON.finditer(text):
        status = int(match.group(1))
        if free(match.span(1)) and status in _REASON_STATUS[match.group(2).lower()]:
            add("http", match.group(1), match.span(1))
    for match in _HTTP_ERROR.finditer(text):
        if free(match.span(1)) and qualified(match):
            if int(match.group(1)) in _STATUSES:
                add("http", match.group(1), match.span(1))
    for match in _OFFICE.finditer(text):
        if free(match.span(1)) and qualified(match):
            add("office", match.group(1), match.span(1))
    for pattern in (_NUMBERED, _LONG_ERROR_CODE):
        for match in pattern.finditer(text):
            if free(match.span(1)) and qualified(match) and int(match.group(1)):
                add("error", str(int(match.group(1))), match.span(1))
    return found


def exceptions(text: str) -> list[Signature]:
    """Exception type names (`System.UnauthorizedAccessException`, `KeyError`), lower case."""
    names: list[Signature] = []
    for match in _EXCEPTION.finditer(text):
        name = match.group(1)
        if name.lower() in _PLAIN_WORDS:
            continue
        signature = Signature("exception", name.lower())
        if signature not in names:
            names.append(signature)
    return names


def normalised(text: str, *, text_codes: list[Signature] | None = None) -> str:
    """The message without what varies between reports of one error (numbers, paths, GUIDs,
    timestamps, addresses, quoted names), lower case, words only; codes are kept apart.
    `text_codes`: `codes(text)`, when the caller has them already."""
    out = text
    for pattern in _VARIABLE:
        out = pattern.sub(" ", out)
    for found in codes(text) if text_codes is None else text_codes:
        out = out.replace(found.value, " ")
    out = _DIGITS.sub(" ", _CAA.sub(" ", _HEX.sub(" ", out)))
    return " ".join(_NON_WORD.sub(" ", out.lower()).replace("_", " ").split())


def signatures(error_text: str, *, summary: str = "") -> list[Signature]:
    """Every signature of a ticket: codes from its error text and summary, the exact text,
    exception names and the normalised message (from the error text)."""
    text = error_text.strip()
    found = codes(text)
    text_codes = list(found)
    for extra in codes(summary):
        if extra not in found:
            found.append(extra)
    if not text:
        return found
    found.append(Signature("exact", exact_key(text)))
    found += [e for e in exceptions(text) if e not in found]
    message = normalised(text, text_codes=text_codes)
    if len(message.split()) >= 2:
        coded = ",".join(sorted(s.key for s in found if s.kind in CODE_KINDS))
        found.append(Signature("text", _digest(f"{message}|{coded}")))
    return found


def same_error_keys(found: Iterable[Signature]) -> list[str]:
    return [s.key for s in found if s.same_error]


def same_error(a_error: str, b_error: str, *, a_summary: str = "", b_summary: str = "") -> bool:
    """SPEC: equal exact error texts (case and surrounding whitespace ignored), or a shared
    error code."""
    a = set(same_error_keys(signatures(a_error, summary=a_summary)))
    b = set(same_error_keys(signatures(b_error, summary=b_summary)))
    return bool(a & b)


def look_alike(a_error: str, b_error: str) -> bool:
    """Weaker than `same_error`: the same message once numbers, paths, GUIDs, timestamps and
    names are taken out (and the same codes, if any)."""
    a = {s.key for s in signatures(a_error) if s.kind == "text"}
    b = {s.key for s in signatures(b_error) if s.kind == "text"}
    return bool(a & b) or same_error(a_error, b_error)


_KIND_NAMES = {
    "hex": "{}",
    "event": "event ID {}",
    "aadsts": "AADSTS{}",
    "http": "HTTP {}",
    "office": "error code {}",
    "error": "error {}",
    "exception": "{}",
}


def describe(key: str) -> str:
    """A stored signature in words: `0x80070005`, `HTTP 503`, `the same error text`."""
    kind, _, value = key.partition(":")
    if kind == "exact":
        return "the same error text"
    if kind == "text":
        return "a similar error text"
    template = _KIND_NAMES.get(kind, "{}")
    return template.format(value)


# -- words for full-text search -------------------------------------------------------------

STOP_WORDS = frozenset(
    """
    a about after again all also am an and any are as at be been before being but by can
    cannot could did do does doing done for from get gets getting got had has have having he
    her here him his how i if in into is it its just keep keeps me my no not now of off on
    once only or our out over she so some still than that the their them then there these
    they this those to too try trying under until up us very was we were what when where
    which while who why will with would you your
    error errors issue issues problem problems please help user users ticket unable fails
    failed failing working work works doesnt dont cant wont isnt
    """.split()
)
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
MAX_TERMS = 12


def terms(*texts: str, limit: int = MAX_TERMS, numbers: bool = False) -> list[str]:
    """Search words of `texts`, in order, lower case: codes first, no stop words, no bare
    numbers, no duplicates. With `numbers` (what `kb` searches), a number of 3+ digits is a
    word too (`kb 4625`, `kb 503`), unless it is the value of a code found (`error 80070005`
    is searched as its code `0x80070005`, which the text holds, not as `80070005`)."""
    out: list[str] = []
    joined = " ".join(texts)
    found_codes = codes(joined)
    for found in found_codes:
        if found.kind == "hex":
            out.append(found.value)
        elif found.kind == "aadsts":
            out.append(f"aadsts{found.value}")
    coded = {_digits_of(found.value) for found in found_codes}
    for text in texts:
        for word in _WORD.findall(text.lower()):
            if len(word) < 3 or word in STOP_WORDS or word in out:
                continue
            if word.isdigit() and not (numbers and _digits_of(word) not in coded):
                continue
            out.append(word)
    return out[:limit]


def _digits_of(value: str) -> str:
    """A code's value or a number without its `0x` and leading zeros, to compare them."""
    return value.removeprefix("0x").lstrip("0")


def first_line(text: str, limit: int = 160) -> str:
    """The first non-empty line, cut to `limit` characters."""
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return ""
