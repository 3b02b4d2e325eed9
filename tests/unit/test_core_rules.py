"""Core rules without any platform: commands, durations, SLA matrix, priority warning, intake."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from handlers.commands import parse, strip_teams_prefix, ticket_ref
from handlers.config import HelpdeskConfig
from handlers.durations import format_duration, parse_duration
from handlers.sla import due_times, priority_warning
from handlers.tickets.intake import categories, validate
from handlers.types import InvalidInput

OPENED = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "verb", "args"),
    [
        ("", "new", ""),
        ("new", "new", ""),
        ("new Printer jams", "new", "Printer jams"),
        ("NEW  VPN down ", "new", "VPN down"),
        ("show HD-7", "show", "HD-7"),
        ("mine", "mine", ""),
        ("time HD-7 45m swapped toner", "time", "HD-7 45m swapped toner"),
        ("frobnicate", "help", "frobnicate"),
        ("help", "help", ""),
        ("mine.", "mine", ""),
        ("Show? HD-7", "show", "HD-7"),
        ("new\nVPN down\nsince 9", "new", "VPN down\nsince 9"),
        ("show\tHD-7", "show", "HD-7"),
        ("minefield", "help", "minefield"),
    ],
)
def test_parse(text: str, verb: str, args: str) -> None:
    command = parse(text)
    assert (command.verb, command.args) == (verb, args)


def test_ticket_ref_and_teams_prefix() -> None:
    assert ticket_ref(parse("show hd-12")) == "HD-12"
    assert ticket_ref(parse("show 12")) is None
    assert strip_teams_prefix("ticket show HD-1") == "show HD-1"
    assert strip_teams_prefix("Ticket") == ""
    assert strip_teams_prefix("hello") is None
    assert strip_teams_prefix("ticket\nshow HD-1") == "show HD-1"
    assert strip_teams_prefix("Ticket: mine") == "mine"
    assert strip_teams_prefix("ticketing") is None
    assert strip_teams_prefix("") is None
    for typed in ("show HD-12.", "show (hd-12)?", "show \u201cHD-12\u201d"):
        assert ticket_ref(parse(typed)) == "HD-12", typed
    assert ticket_ref(parse("show HD-12x")) is None


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("45m", 45), ("1h30m", 90), ("2h", 120), ("1d", 1440), ("0s", 0), ("1h 5m", 65)],
)
def test_durations(text: str, minutes: int) -> None:
    assert parse_duration(text) == timedelta(minutes=minutes)


@pytest.mark.parametrize("bad", ["", "45", "m45", "1.5h", "-1h", "1w", "abc"])
def test_bad_durations(bad: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(bad)


def test_format_duration() -> None:
    assert format_duration(timedelta(minutes=90)) == "1h 30m"
    assert format_duration(timedelta(0)) == "0m"
    assert format_duration(timedelta(seconds=20)) == "20s"  # seconds are valid everywhere
    assert format_duration(timedelta(days=1, seconds=65)) == "1d 1m 5s"


def test_sla_defaults_and_client_tier() -> None:
    config = HelpdeskConfig.model_validate({"sla": {"clients": {"acme": "gold"}}})
    standard = due_times(config.sla, client="Globex", priority="P2", opened_at=OPENED)
    assert standard.tier == "standard"
    assert standard.respond_by == OPENED + timedelta(hours=2)
    assert standard.resolve_by == OPENED + timedelta(days=1)
    gold = due_times(config.sla, client=" ACME ", priority="P1", opened_at=OPENED)
    assert (gold.tier, gold.respond_by, gold.resolve_by) == (
        "gold",
        OPENED + timedelta(minutes=15),
        OPENED + timedelta(hours=2),
    )


def test_sla_custom_matrix_must_be_complete() -> None:
    with pytest.raises(ValueError, match="lacks P3, P4"):
        HelpdeskConfig.model_validate(
            {
                "sla": {
                    "tiers": {
                        "x": {
                            "P1": {"respond": "1h", "resolve": "2h"},
                            "P2": {"respond": "1h", "resolve": "2h"},
                        }
                    },
                    "default_tier": "x",
                }
            }
        )
    with pytest.raises(ValueError, match="unknown tier"):
        HelpdeskConfig.model_validate({"sla": {"clients": {"acme": "platinum"}}})


def test_priority_warning() -> None:
    assert priority_warning(priority="P1", users_affected=40) == ""
    assert priority_warning(priority="P3", users_affected=1) == ""
    warning = priority_warning(priority="P3", users_affected=5)
    assert "5 users" in warning and "P1" in warning


def _form(**overrides: str) -> dict[str, str]:
    values = {
        "requester": "UANA",
        "summary": "VPN drops",
        "error_text": "",
        "doing": "",
        "reproducible": "yes",
        "users_affected": "1",
        "priority": "P3",
        "category": "network",
        "asset": "",
        "client": "",
    }
    values.update(overrides)
    return values


def test_intake_validation() -> None:
    config = HelpdeskConfig()
    intake = validate(_form(summary=" VPN <!here> "), config, email_requester=False)
    assert intake.summary == " VPN <!here> "
    with pytest.raises(InvalidInput) as caught:
        validate(
            _form(summary="", users_affected="x", priority="P9", category="Password Reset"),
            config,
            email_requester=False,
        )
    assert set(caught.value.field_errors) == {"summary", "users_affected", "priority", "category"}
    with pytest.raises(InvalidInput) as caught:
        validate(_form(requester="ana"), config, email_requester=True)
    assert set(caught.value.field_errors) == {"requester"}


def test_users_affected_is_a_whole_number_of_ascii_digits_up_to_a_million() -> None:
    config = HelpdeskConfig()
    for typed, count in (("1", 1), ("007", 7), ("1000000", 1_000_000), ("\uff11\uff12", 12)):
        assert (
            validate(_form(users_affected=typed), config, email_requester=False).users_affected
            == count
        )
    for typed, says in (
        ("²", "whole number"),  # str.isdigit() is True, int() refuses it
        ("٣", "whole number"),
        ("10²", "whole number"),  # not 102
        ("0", "whole number"),
        ("-3", "whole number"),
        ("1000001", "at most 1000000"),
        ("9" * 5000, "at most 1000000"),  # past int()'s 4300-digit limit
    ):
        with pytest.raises(InvalidInput) as caught:
            validate(_form(users_affected=typed), config, email_requester=False)
        assert says in caught.value.field_errors["users_affected"], typed


def test_categories_are_a_closed_list_including_identity_ones() -> None:
    config = HelpdeskConfig.model_validate(
        {"tier1_scope": ["outlook"], "escalation": {"queues": {"m365": "messaging"}}}
    )
    found = categories(config)
    assert {"password-reset", "mfa", "account", "outlook", "m365"} <= set(found)
    assert found[-1] == "other"
