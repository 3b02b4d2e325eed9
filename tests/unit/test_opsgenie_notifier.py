"""The Opsgenie notifier against the fake Alert API: a 202 only accepts a request, so the
delivery asks Get Request Status how its processing went (tests/fakes/pagers.py)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from bot.notifiers import DeliveryError
from bot.notifiers.opsgenie import OpsgenieNotifier
from storage.models import OutboxMessage
from tests.fakes.pagers import FakeOpsgenie

KEY = "genie-key"
CREATE = {"op": "create", "alias": "HD-7", "message": "P1 HD-7: VPN down", "priority": "P1"}
CLOSE = {"op": "close", "alias": "HD-7", "note": "HD-7 closed"}
STATUS = "/v2/alerts/requests/*"


@pytest.fixture
async def opsgenie() -> AsyncIterator[FakeOpsgenie]:
    async with FakeOpsgenie(api_key=KEY) as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def notifier(http: aiohttp.ClientSession, fake: FakeOpsgenie, **kw: Any) -> OpsgenieNotifier:
    return OpsgenieNotifier(http, url=fake.url, api_key=SecretStr(KEY), **kw)


def row(payload: dict[str, Any]) -> OutboxMessage:
    return OutboxMessage(id=1, kind="page.opsgenie", payload=dict(payload), attempts=1)


async def test_a_processed_create_is_delivered_with_its_alert_id(http, opsgenie):
    result = await notifier(http, opsgenie).deliver(row(CREATE))
    [request] = opsgenie.requests("create")
    assert result["request_id"] == request["id"]
    assert (result["confirmed"], result["alert_id"]) == (True, request["alertId"])
    assert result["status"] == "Created alert" and request["alertId"]
    [status] = opsgenie.calls(STATUS)
    assert status.path == f"/v2/alerts/requests/{request['id']}"
    assert status.headers["Authorization"] == f"GenieKey {KEY}"


async def test_a_request_slow_to_process_is_polled_with_backoff_until_confirmed(http, opsgenie):
    opsgenie.processing_delay = 1.2
    result = await notifier(http, opsgenie).deliver(row(CREATE))
    assert result["confirmed"] is True and result["alert_id"]
    polls = opsgenie.calls(STATUS)
    assert [p.status for p in polls[:-1]] == [404] * (len(polls) - 1) and polls[-1].status == 200
    gaps = [b.at - a.at for a, b in itertools.pairwise(polls)]
    assert len(polls) >= 3 and gaps == sorted(gaps), gaps  # backs off, no busy loop


async def test_a_create_that_fails_processing_is_a_failed_attempt_not_a_delivery(http, opsgenie):
    opsgenie.fail_processing("create", "Alert message is empty after the integration's rules")
    with pytest.raises(DeliveryError) as failed:
        await notifier(http, opsgenie).deliver(row(CREATE))
    error = failed.value
    assert "Opsgenie failed to process the alert" in str(error)
    assert "Alert message is empty after the integration's rules" in str(error)
    # Nothing was created: retried like any failure, and not in doubt (it may be cancelled).
    assert (error.permanent, error.uncertain) == (False, False)
    assert opsgenie.open_aliases() == []
    # A resend with the same alias goes through.
    result = await notifier(http, opsgenie).deliver(row(CREATE))
    assert result["confirmed"] is True and opsgenie.open_aliases() == ["HD-7"]


async def test_a_close_that_fails_processing_is_a_failed_attempt(http, opsgenie):
    await notifier(http, opsgenie).deliver(row(CREATE))
    opsgenie.fail_processing("close", "Internal error while closing")
    with pytest.raises(DeliveryError) as failed:
        await notifier(http, opsgenie).deliver(row(CLOSE))
    assert "Opsgenie failed to process the close: Internal error while closing" in str(failed.value)
    assert (failed.value.permanent, failed.value.uncertain) == (False, False)
    assert opsgenie.open_aliases() == ["HD-7"]
    result = await notifier(http, opsgenie).deliver(row(CLOSE))
    assert (result["confirmed"], result["status"]) == (True, "Closed alert")
    assert opsgenie.open_aliases() == []


async def test_a_status_unknown_past_the_bound_is_in_doubt_and_does_not_hold_the_worker(
    http, opsgenie
):
    opsgenie.processing_delay = 30.0
    with pytest.raises(DeliveryError) as failed:
        await notifier(http, opsgenie, confirm_within=1.0).deliver(row(CREATE))
    error = failed.value
    assert error.uncertain and not error.permanent
    assert "accepted the alert but had not processed it after 1 s" in str(error)
    polls = opsgenie.calls(STATUS)
    assert polls and polls[-1].at - opsgenie.calls("/v2/alerts")[0].at < 1.5


async def test_a_429_on_the_status_check_is_waited_out_within_the_bound(http, opsgenie):
    opsgenie.fail(STATUS, 429, headers={"Retry-After": "1"})
    result = await notifier(http, opsgenie).deliver(row(CREATE))
    assert result["confirmed"] is True
    limited, after = opsgenie.calls(STATUS)[:2]
    assert limited.status == 429 and after.at - limited.at >= 1.0


async def test_a_429_longer_than_the_bound_holds_opsgenie_and_is_in_doubt(http, opsgenie):
    opsgenie.fail(STATUS, 429, headers={"Retry-After": "30"})
    with pytest.raises(DeliveryError) as failed:
        await notifier(http, opsgenie).deliver(row(CREATE))
    error = failed.value
    assert (error.uncertain, error.retry_after, error.place) == (True, 30.0, "opsgenie")
    assert len(opsgenie.calls(STATUS)) == 1  # not asked again inside the window


async def test_a_status_check_refused_records_the_page_as_not_confirmed(http, opsgenie, caplog):
    """An API integration without read access: the 202 is all there is (a resend could not be
    confirmed either); the record and the log say so."""
    opsgenie.fail(STATUS, 403, times=5)
    result = await notifier(http, opsgenie).deliver(row(CREATE))
    assert (result["confirmed"], result["status"]) == (False, "accepted, status not readable")
    assert "read access" in caplog.text and KEY not in caplog.text
    assert len(opsgenie.calls(STATUS)) == 1
