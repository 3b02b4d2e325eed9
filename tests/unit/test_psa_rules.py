"""PSA rules (tier, look-up before a retried create) and the edge's reading of PSA answers."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

import aiohttp
import pytest

from bot.notifiers import retry_after_seconds
from bot.psa.http import PsaHttp
from handlers.config import HelpdeskConfig
from handlers.psa import PsaError
from handlers.psa.rules import (
    clip,
    clip_marked,
    due_from_targets,
    marked,
    tier_from_contracts,
    tier_source,
    tier_targets,
)
from handlers.psa.sync import needs_lookup
from tests.fakes.psa_freshservice import FakeFreshservice
from tests.fakes.psa_servicenow import FakeServiceNow


def config(system: str | None, tiers: dict[str, str] | None = None) -> HelpdeskConfig:
    psa = {"system": system, "url": "https://x.example.com", "tiers": tiers or {}} if system else {}
    return HelpdeskConfig.model_validate({"sla": {"clients": {"Globex": "gold"}}, "psa": psa})


def test_tier_source_config_then_psa_then_default() -> None:
    sn = config("servicenow", {"Gold": "gold"})
    assert tier_source(sn, " globex ") == "config"
    assert tier_source(sn, "Acme") == "pending"
    assert tier_source(sn, "") == "default"
    assert tier_source(config("servicenow"), "Acme") == "default"  # no psa.tiers: nothing to ask
    assert tier_source(config("freshservice", {"Gold": "gold"}), "Acme") == "default"
    assert tier_source(config(None), "Acme") == "default"


def test_the_first_contract_named_in_psa_tiers_wins_ignoring_case() -> None:
    tiers = {"Gold Support": "gold", "Standard": "standard"}
    assert tier_from_contracts(["Hosting", "gold support", "Standard"], tiers) == (
        "gold",
        "gold support",
    )
    assert tier_from_contracts(["Standard", "Gold Support"], tiers) == ("standard", "Standard")
    assert tier_from_contracts(["Hosting"], tiers) == ("", "")
    assert tier_from_contracts([], tiers) == ("", "")


def test_tier_targets_travel_as_seconds_and_count_from_creation() -> None:
    targets = tier_targets(config("connectwise", {"Gold": "gold"}))
    assert targets == {
        "gold": {
            "P1": [900, 7200],
            "P2": [3600, 28800],
            "P3": [14400, 172800],
            "P4": [28800, 259200],
        }
    }
    opened = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    assert due_from_targets(targets["gold"], priority="P2", opened_at=opened) == (
        opened + timedelta(hours=1),
        opened + timedelta(hours=8),
    )


@pytest.mark.parametrize(
    ("clean", "attempts", "lookup"),
    [(0, 1, False), (1, 2, False), (0, 2, True), (1, 3, True), (3, 4, False)],
)
def test_a_create_is_looked_up_unless_every_earlier_attempt_created_nothing(
    clean: int, attempts: int, lookup: bool
) -> None:
    assert needs_lookup({"clean": clean}, attempts) is lookup


async def test_answers_become_errors_that_say_what_happened() -> None:
    fake = FakeServiceNow()
    async with fake, aiohttp.ClientSession() as session:
        http = PsaHttp(session, name="ServiceNow", headers={})
        url = fake.url + "/api/now/table/incident"
        date = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
        fake.fail("/api/now/table/incident", 429, headers={"Retry-After": date})
        with pytest.raises(PsaError) as throttled:
            await http.call("POST", url, body={})
        assert throttled.value.kind == "throttled" and 25 < (throttled.value.retry_after or 0) <= 30
        assert "HTTP 429 (Rate limit exceeded" in str(throttled.value)
        # Until then nothing leaves this process.
        with pytest.raises(PsaError) as waiting:
            await http.call("GET", url)
        assert waiting.value.kind == "throttled" and len(fake.recorded) == 1

        fresh = PsaHttp(session, name="ServiceNow", headers={})
        fake.fail("/api/now/table/incident", 502)
        with pytest.raises(PsaError) as bad_gateway:
            await fresh.call("POST", url, body={})
        assert (bad_gateway.value.kind, bad_gateway.value.definite) == ("unavailable", False)
        with pytest.raises(PsaError) as refused:
            await fresh.call("POST", url, body={})  # no credentials
        assert (refused.value.kind, refused.value.status) == ("auth", 401)

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            closed = f"http://127.0.0.1:{sock.getsockname()[1]}/api/now/table/incident"
        with pytest.raises(PsaError) as unreachable:
            await fresh.call("POST", closed, body={})
        assert (unreachable.value.kind, unreachable.value.definite) == ("unavailable", True)


async def test_freshservice_retry_after_as_a_date_time_is_honoured() -> None:
    # Freshservice's swagger types Retry-After as a date-time (psa-kb-facts §0: parse both).
    fake = FakeFreshservice()
    async with fake, aiohttp.ClientSession() as session:
        http = PsaHttp(session, name="Freshservice", headers={})
        url = fake.url + "/api/v2/tickets"
        until = (datetime.now(UTC) + timedelta(seconds=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
        fake.fail("/api/v2/tickets", 429, headers={"Retry-After": until})
        with pytest.raises(PsaError) as throttled:
            await http.call("GET", url)
        assert throttled.value.kind == "throttled" and 50 < (throttled.value.retry_after or 0) <= 60
        with pytest.raises(PsaError) as waiting:
            await http.call("GET", url)
        assert waiting.value.kind == "throttled" and len(fake.recorded) == 1


def test_retry_after_seconds_http_date_or_date_time() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("soon") is None and retry_after_seconds("") is None
    assert retry_after_seconds("NaN") is None and retry_after_seconds("-5") == 0.0
    soon = datetime.now(UTC) + timedelta(seconds=40)
    assert 35 < (retry_after_seconds(soon.isoformat()) or 0) <= 40
    plus_two = soon.astimezone(timezone(timedelta(hours=2))).isoformat()
    assert 35 < (retry_after_seconds(plus_two) or 0) <= 40
    naive = soon.replace(tzinfo=None).strftime("%Y-%m-%dT%H:%M:%S")  # read as UTC
    assert 35 < (retry_after_seconds(naive) or 0) <= 40
    past = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert retry_after_seconds(past) == 0.0


def test_a_writes_reference_ends_its_text_and_survives_clipping() -> None:
    key = "helpdesk-bot:HD-7:0a1b2c3d"
    assert marked("Escalated.\n", key) == f"Escalated.\n\n[{key}]"
    assert marked("", key) == f"[{key}]"
    assert marked("Escalated.", "") == "Escalated."  # a row queued without one
    long = marked("x" * 100, key)
    assert clip_marked(long, 60) == "x" * (60 - len(key) - 3) + f"\n[{key}]"
    assert len(clip_marked(long, 60)) == 60
    assert clip_marked("y" * 100, 60) == "y" * 60
    assert clip_marked(long, 1000) == long


def test_clip_counts_utf16_code_units_and_never_cuts_a_character() -> None:
    # ConnectWise and Autotask are .NET: an emoji is two of their characters.
    assert clip("abc", 2) == "ab"
    assert clip("🔥🔥🔥", 5) == "🔥🔥"  # the third would need units 5 and 6
    assert clip("a🔥b", 2) == "a"
    assert clip("é" * 10, 10) == "é" * 10  # one unit each
    key = "helpdesk-bot:HD-7:3f2a9c1d"
    text = "🔥" * 40 + f"\n[{key}]"
    clipped = clip_marked(text, 50)
    assert clipped.endswith(f"\n[{key}]") and len(clipped.encode("utf-16-le")) // 2 <= 50


def test_a_call_back_note_names_the_number_and_the_technician() -> None:
    from handlers.psa.rules import identity_note

    note = identity_note(
        outcome="called_back",
        manager="Tom Tech (tom@example.com)",
        at=datetime(2026, 12, 7, 10, 30, tzinfo=UTC),
        platform="slack",
        check_id=7,
        phone="+1 555 0199",
    )
    assert note.startswith(
        "Identity CONFIRMED by call-back to the requester's number on file (+1 555 0199): "
        "recorded by technician Tom Tech (tom@example.com), at 2026-12-07 10:30 UTC over Slack "
        "(check 7)."
    )
