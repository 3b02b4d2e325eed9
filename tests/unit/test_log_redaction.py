"""The production log formatters mask credentials, whatever logged them."""

from __future__ import annotations

import json
import logging

from bot.correlation import correlation_id, ticket_number
from bot.logs import JsonFormatter, TextFormatter, _ContextFilter, redact


def test_redact_masks_token_shapes() -> None:
    line = redact(
        "xoxb-1-2-abc xapp-1-A-b Bearer eyJhbGciOi.x.y routing_key=R0UTE "
        "'password': 'hunter2' GenieKey abcdef123456"
    )
    for secret in ("xoxb-1-2-abc", "xapp-1-A-b", "eyJhbGciOi", "R0UTE", "hunter2", "abcdef123456"):
        assert secret not in line
    assert line.count("[redacted]") == 6


def test_redact_masks_credentials_in_urls() -> None:
    line = redact(
        "fetched https://ops:s3cret@cal.example.com/x.ics and "
        "https://kb.example.com/api?token=T0KEN&page=2&sig=S1G and "
        "wss://wss-primary.slack.com/link/?ticket=T1CKET&app_id=A0APP"
    )
    for secret in ("s3cret", "T0KEN", "S1G", "T1CKET"):
        assert secret not in line
    assert "https://[redacted]@cal.example.com/x.ics" in line and "page=2" in line
    assert "app_id=A0APP" in line


def test_json_lines_carry_correlation_id_and_ticket() -> None:
    correlation_id.set("c0ffee12")
    ticket_number.set("HD-7")
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "posted with %s", ("xoxb-9-9",), None
    )
    _ContextFilter().filter(record)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["correlation_id"] == "c0ffee12" and entry["ticket"] == "HD-7"
    assert "xoxb-9-9" not in entry["msg"]
    assert "c0ffee12" in TextFormatter().format(record)
