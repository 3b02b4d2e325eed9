"""The production log formatters mask credentials, whatever logged them."""

from __future__ import annotations

import json
import logging

from bot.correlation import correlation_id, ticket_number
from bot.logs import JsonFormatter, TextFormatter, _ContextFilter, redact, setup_logging


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


def test_redact_masks_response_urls_and_authorization_headers() -> None:
    # A response_url lets whoever holds it post as the app for 30 minutes.
    line = redact(
        '{"response_url": "http://127.0.0.1:9/r/R1"} '
        "response_url=https%3A%2F%2Fhooks.slack.com%2Factions%2FR2&x=1 "
        "{'response_urls': [{'response_url': 'https://hooks.slack.com/app/R3'}]} "
        "posting to https://hooks.slack.com/commands/T0/1/R4 "
        "{'Authorization': 'Token R5R5R5R5R5', 'Accept': 'json'} "
        "Authorization: ApiIntegrationCode R6R6R6R6R6 "
        "{'authorization': 'R7R7R7R7R7'} "
        "GET /metrics: with 'Authorization: Bearer <METRICS_TOKEN>' only"
    )
    for secret in ("R1", "R2", "R3", "R4", "R5", "R6", "R7"):
        assert secret not in line
    assert "x=1" in line and "'Accept': 'json'" in line
    assert "https://hooks.slack.com/[redacted]" in line
    assert "'Authorization: Bearer <METRICS_TOKEN>'" in line  # a placeholder, no secret


def test_debug_logs_our_own_loggers_and_only_warnings_of_libraries(capsys) -> None:
    root = logging.getLogger()
    bolt = logging.getLogger("slack_bolt.AsyncApp")
    saved = root.level, bolt.level, logging.getLogger("slack_bolt").level
    setup_logging(level="DEBUG")
    # What Bolt does as an app starts: its logger takes the root logger's level.
    bolt.setLevel(root.level)
    try:
        logging.getLogger("bot.slack.front").debug("ours at debug")
        bolt.debug("Received message (data: envelope)")
        logging.getLogger("ldap3").info("bind with credentials")
        bolt.warning("bolt warns")
    finally:
        for handler in [h for h in root.handlers if getattr(h, "_helpdesk", False)]:
            root.removeHandler(handler)
        root.setLevel(saved[0])
        bolt.setLevel(saved[1])
        logging.getLogger("slack_bolt").setLevel(saved[2])
    err = capsys.readouterr().err
    assert "ours at debug" in err and "bolt warns" in err
    assert "Received message" not in err and "bind with" not in err


def test_the_placeholder_of_a_url_form_stays_and_only_it() -> None:
    line = redact(
        "use postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DATABASE, not "
        "postgresql://user:password@db/d or postgresql://USER:PASSWORD1@db/d"
    )
    assert line == (
        "use postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DATABASE, not "
        "postgresql://[redacted]@db/d or postgresql://[redacted]@db/d"
    )
