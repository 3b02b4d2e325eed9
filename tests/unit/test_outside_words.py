"""What a PSA or a KB says about an error reaches the log and the cards as one printable line:
no terminal escapes, no bidi overrides reordering the line, no line breaks."""

from __future__ import annotations

import json

from bot.kb.http import REASON_CHARS
from bot.kb.http import _reason as kb_reason
from bot.logs import one_line
from bot.psa.http import reason as psa_reason

ESCAPE, OVERRIDE = "\x1b[2J\x1b[31m", "\u202e"


def test_one_line_keeps_words_and_drops_what_does_not_print() -> None:
    assert one_line("Could not parse\n\tcql :  text ~", 100) == "Could not parse cql : text ~"
    cleaned = one_line(f"denied{ESCAPE} for {OVERRIDE}nimda", 100)
    assert "\x1b" not in cleaned and OVERRIDE not in cleaned and cleaned.isprintable()
    assert cleaned.startswith("denied\ufffd[2J\ufffd[31m for \ufffdnimda")
    assert one_line("Größe ✓ 日本語", 100) == "Größe ✓ 日本語"  # printable: kept as is
    assert one_line("x" * 50, 10) == "x" * 9 + "…"


def test_a_psas_words_are_one_printable_line() -> None:
    said = psa_reason({"error": {"message": f"ACL{ESCAPE}", "detail": f"a\n\tb{OVERRIDE}"}})
    assert said.isprintable() and "ACL" in said and "a b" in said
    assert psa_reason(f"<html>\n<body>Bad{ESCAPE} gateway</body>") == (
        "<html> <body>Bad\ufffd[2J\ufffd[31m gateway</body>"
    )


def test_a_kbs_words_are_one_printable_line() -> None:
    body = json.dumps({"statusCode": 400, "message": f"Could not parse cql{ESCAPE}\n{OVERRIDE}"})
    said = kb_reason(body.encode())
    assert said.isprintable() and said.startswith("Could not parse cql")
    long = json.dumps({"errors": [{"detail": "y" * 1000}]}).encode()
    assert len(kb_reason(long)) == REASON_CHARS
