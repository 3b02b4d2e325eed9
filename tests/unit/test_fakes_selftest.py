"""Self-tests of the loopback fakes (tests/fakes) with the real client libraries."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import requests
from botbuilder.schema import Activity, ChannelAccount, ConversationParameters, Mention
from botframework.connector.aio import ConnectorClient
from botframework.connector.auth import MicrosoftAppCredentials
from botframework.connector.models import ErrorResponseException
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.botframework import FakeConnector, mentions
from tests.fakes.pagers import FakeOpsgenie, FakePagerDuty
from tests.fakes.slack_api import FakeSlack

TEAMS_CONVERSATION = "19:abc-def@thread.tacv2;messageid=1700000000000"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack(users={"U0ANA": {"name": "ana", "real_name": "Ana Lopez",
                                      "email": "ana@example.com"}})  # fmt: skip
    async with fake:
        yield fake


def web_client(slack: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token="xoxb-test", base_url=f"{slack.url}/api/")


async def test_start_binds_loopback_ephemeral_port() -> None:
    async with FakeSlack() as one, FakeSlack() as two:
        assert one.url.startswith("http://127.0.0.1:")
        assert one.url != two.url


async def test_slack_builtin_methods(slack: FakeSlack) -> None:
    client = web_client(slack)
    auth = await client.auth_test()
    assert (auth["user_id"], auth["bot_id"], auth["team_id"]) == ("UBOT", "BBOT", "T0TEAM")

    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]
    first = await client.chat_postMessage(channel="C1", text="hi", blocks=blocks)
    second = await client.chat_postMessage(channel="C1", text="again", thread_ts=first["ts"])
    assert abs(float(first["ts"]) - time.time()) < 60  # Slack ts: when it was posted
    assert float(second["ts"]) > float(first["ts"])
    assert slack.posts()[0]["blocks"] == blocks
    assert slack.posts()[1]["thread_ts"] == first["ts"]
    assert slack.api_calls("chat.postMessage")[0].token == "xoxb-test"

    assert (await client.conversations_open(users="U0ANA"))["channel"]["id"] == "DU0ANA"
    user = (await client.users_info(user="U0ANA"))["user"]
    assert (user["real_name"], user["profile"]["email"]) == ("Ana Lopez", "ana@example.com")
    found = await client.users_lookupByEmail(email="ANA@example.com")
    assert found["user"]["id"] == "U0ANA"
    with pytest.raises(SlackApiError) as missing:
        await client.users_info(user="U0NOPE")
    assert missing.value.response["error"] == "user_not_found"

    view = {"type": "modal", "title": {"type": "plain_text", "text": "New"}, "blocks": []}
    opened = await client.views_open(trigger_id="t1", view=view)
    assert opened["view"]["id"].startswith("V")
    updated = await client.views_update(view_id=opened["view"]["id"], view=view)
    assert updated["view"]["id"] == opened["view"]["id"]
    assert slack.views_opened()[0]["view"]["title"]["text"] == "New"
    assert (await client.chat_postEphemeral(channel="C1", user="U0ANA", text="x"))["message_ts"]
    assert (await client.chat_update(channel="C1", ts=first["ts"], text="y"))["ts"] == first["ts"]

    with pytest.raises(SlackApiError) as unknown:
        await client.api_call("nope.nothing")
    assert unknown.value.response["error"] == "unknown_method"


async def test_slack_form_body_with_json_fields(slack: FakeSlack) -> None:
    form = {"token": "xoxb-form", "channel": "C1", "blocks": '[{"type": "divider"}]'}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{slack.url}/api/chat.postMessage", data=form) as resp,
    ):
        assert (await resp.json())["ok"] is True
    [call] = slack.api_calls("chat.postMessage")
    assert call.params == {"channel": "C1", "blocks": [{"type": "divider"}]}
    assert call.token == "xoxb-form"


async def test_fail_500_twice_then_ok(slack: FakeSlack) -> None:
    slack.fail("chat.postMessage", 500, times=2)
    client = web_client(slack)
    client.retry_handlers.append(
        AsyncServerErrorRetryHandler(
            max_retry_count=2, interval_calculator=FixedValueRetryIntervalCalculator(0.01)
        )
    )
    response = await client.chat_postMessage(channel="C1", text="hi")
    assert response["ok"] is True
    attempts = slack.calls("chat.postMessage")
    assert [r.status for r in attempts] == [500, 500, 200]
    assert [r.scripted for r in attempts] == [True, True, False]
    assert len(slack.posts()) == 1  # scripted answers never reach the handler


async def test_429_carries_retry_after(slack: FakeSlack) -> None:
    slack.fail("chat.postMessage", 429, headers={"Retry-After": "7"})
    with pytest.raises(SlackApiError) as exc:
        await web_client(slack).chat_postMessage(channel="C1", text="hi")
    assert exc.value.response.status_code == 429
    assert exc.value.response.headers["Retry-After"] == "7"
    assert exc.value.response["error"] == "ratelimited"

    slack.fail("chat.postMessage", 429, headers={"Retry-After": "0"})
    client = web_client(slack)
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=1))
    assert (await client.chat_postMessage(channel="C1", text="hi"))["ok"] is True


async def test_fail_ok_false_then_normal(slack: FakeSlack) -> None:
    slack.fail_ok_false("chat.postMessage", "channel_not_found", times=1)
    client = web_client(slack)
    with pytest.raises(SlackApiError) as exc:
        await client.chat_postMessage(channel="C404", text="hi")
    assert exc.value.response.status_code == 200
    assert exc.value.response["error"] == "channel_not_found"
    assert (await client.chat_postMessage(channel="C1", text="hi"))["ok"] is True


async def test_wait_for_and_timeout_message(slack: FakeSlack) -> None:
    client = web_client(slack)
    task = asyncio.create_task(client.chat_postMessage(channel="C1", text="later"))
    [rec] = await slack.wait_for("chat.postMessage", timeout=5)
    await task
    assert rec.json is not None and rec.json["text"] == "later"

    with pytest.raises(AssertionError) as exc:
        await slack.wait_for("/api/views.open", count=1, timeout=0.2)
    message = str(exc.value)
    assert "timed out after 0.2s" in message
    assert "0 matched" in message
    assert "POST /api/chat.postMessage -> 200" in message


async def test_set_delay_and_reset(slack: FakeSlack) -> None:
    slack.set_delay("auth.test", 0.3)
    client = web_client(slack)
    started = time.monotonic()
    await client.auth_test()
    assert time.monotonic() - started >= 0.3
    slack.fail("auth.test", 500, times=5)
    slack.reset()
    started = time.monotonic()
    assert (await client.auth_test())["ok"] is True
    assert time.monotonic() - started < 0.3
    assert len(slack.recorded) == 1


async def test_response_url(slack: FakeSlack) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(slack.response_url_for("abc"), json={"text": "done"}) as resp,
    ):
        assert resp.status == 200
    assert slack.responses("abc") == [{"text": "done"}]
    assert slack.responses("other") == []


async def test_threaded_fake_answers_sync_clients_inside_the_loop() -> None:
    async with FakeSlack(threaded=True) as fake:
        # A blocking call from the event loop would deadlock an in-loop server.
        resp = requests.post(f"{fake.url}/api/auth.test", timeout=5)  # noqa: ASYNC210
        assert resp.json()["user_id"] == "UBOT"
        await fake.wait_for("/api/auth.test")


async def test_connector_with_botbuilder_client() -> None:
    async with FakeConnector() as fake:
        fake.add_member(TEAMS_CONVERSATION, "29:ana", name="Ana", aadObjectId="aad-1")
        credentials = MicrosoftAppCredentials.empty()  # auth disabled: no token
        async with ConnectorClient(credentials, base_url=fake.service_url) as client:
            ops = client.conversations
            sent = await ops.send_to_conversation(
                TEAMS_CONVERSATION, Activity(type="message", text="hello")
            )
            tag = "<at>Ana</at>"
            noted = Activity(type="message", text=f"{tag} re", entities=[
                Mention(mentioned=ChannelAccount(id="29:ana", name="Ana"), text=tag, type="mention")
            ])  # fmt: skip
            reply = await ops.reply_to_activity(TEAMS_CONVERSATION, "1:parent", noted)
            await ops.update_activity(
                TEAMS_CONVERSATION, reply.id, Activity(type="message", text="edited")
            )
            await ops.delete_activity(TEAMS_CONVERSATION, sent.id)
            created = await ops.create_conversation(
                ConversationParameters(
                    is_group=False,
                    bot=ChannelAccount(id="28:bot"),
                    members=[ChannelAccount(id="29:ana")],
                    tenant_id="t1",
                )
            )
            member = await ops.get_conversation_member(TEAMS_CONVERSATION, "29:ana")
            with pytest.raises(ErrorResponseException):
                await ops.get_conversation_member(TEAMS_CONVERSATION, "29:nobody")
            fake.fail("/v3/conversations/*/activities*", 429, headers={"Retry-After": "2"})
            with pytest.raises(ErrorResponseException) as throttled:
                await ops.send_to_conversation(TEAMS_CONVERSATION, Activity(type="message"))

        assert sent.id != reply.id
        assert [a["_conversation_id"] for a in fake.activities()] == [TEAMS_CONVERSATION] * 2
        assert fake.texts() == ["hello", "<at>Ana</at> re"]
        assert fake.activities()[1]["_reply_to_id"] == "1:parent"
        # The mention entity as botbuilder sent it, for tests to assert.
        assert mentions(fake.activities()[1]) == [
            {
                "type": "mention",
                "text": "<at>Ana</at>",
                "mentioned": {"id": "29:ana", "name": "Ana"},
            }
        ]
        assert mentions(fake.activities()[0]) == []
        assert fake.updates()[0]["text"] == "edited"
        assert fake.updates()[0]["_activity_id"] == reply.id
        assert fake.deletes()[0]["_activity_id"] == sent.id
        assert created.id == fake.created_conversations()[0]["_id"]
        assert created.id.startswith("a:new-")
        assert fake.created_conversations()[0]["tenantID"] == "t1"  # botbuilder spells it so
        assert (member.name, member.aad_object_id) == ("Ana", "aad-1")
        assert throttled.value.response.status_code == 429
        assert throttled.value.response.headers["Retry-After"] == "2"


async def test_pagerduty() -> None:
    async with FakePagerDuty(routing_key="k" * 32) as pd, aiohttp.ClientSession() as session:
        trigger = {
            "routing_key": "k" * 32,
            "event_action": "trigger",
            "dedup_key": "HD-7",
            "payload": {"summary": "Mail down", "source": "helpdesk", "severity": "critical"},
        }
        async with session.post(pd.events_url, json=trigger) as resp:
            assert resp.status == 202
            assert await resp.json() == {
                "status": "success", "message": "Event processed", "dedup_key": "HD-7"}  # fmt: skip
        assert pd.open_dedup_keys() == ["HD-7"]
        bad = {"routing_key": "k" * 32, "event_action": "trigger", "payload": {"summary": "x"}}
        async with session.post(pd.events_url, json=bad) as resp:
            assert resp.status == 400
            body = await resp.json()
        assert body["status"] == "invalid event"
        assert "'payload.severity' is missing or blank" in body["errors"]
        async with session.post(pd.events_url, json={"event_action": "resolve"}) as resp:
            assert resp.status == 400
        resolve = {"routing_key": "k" * 32, "event_action": "resolve", "dedup_key": "HD-7"}
        async with session.post(pd.events_url, json=resolve) as resp:
            assert resp.status == 202
        assert [e["event_action"] for e in pd.events()] == ["trigger", "resolve"]
        assert pd.open_dedup_keys() == []


async def test_opsgenie() -> None:
    async with FakeOpsgenie(api_key="genie") as og, aiohttp.ClientSession() as session:
        headers = {"Authorization": "GenieKey genie"}
        alert = {"message": "P1 HD-7 Mail down", "alias": "HD-7", "priority": "P1"}
        async with session.post(f"{og.url}/v2/alerts", json=alert, headers=headers) as resp:
            assert resp.status == 202
            body = await resp.json()
        assert body["result"] == "Request will be processed" and body["requestId"]
        async with session.post(f"{og.url}/v2/alerts", json=alert) as resp:
            assert resp.status == 401
        bad_key = {"Authorization": "GenieKey wrong"}
        async with session.post(f"{og.url}/v2/alerts", json=alert, headers=bad_key) as resp:
            assert resp.status == 401
        async with session.post(f"{og.url}/v2/alerts", json={"alias": "x"}, headers=headers) as r:
            assert r.status == 422
        assert og.open_aliases() == ["HD-7"]
        url = f"{og.url}/v2/alerts/HD-7/close?identifierType=alias"
        async with session.post(url, json={"note": "closed"}, headers=headers) as resp:
            assert resp.status == 202
        assert og.alerts() == [alert]
        assert og.closes() == [
            {"identifier": "HD-7", "identifierType": "alias", "body": {"note": "closed"}}
        ]
        assert og.open_aliases() == []


async def test_opsgenie_request_status() -> None:
    """Get Request Status: 404 "might not be processed, yet" until processed, then the
    documented shape; a scripted processing failure creates nothing."""
    async with FakeOpsgenie(api_key="genie") as og, aiohttp.ClientSession() as session:
        headers = {"Authorization": "GenieKey genie"}

        async def status(request_id: str) -> tuple[int, dict[str, Any]]:
            url = f"{og.url}/v2/alerts/requests/{request_id}"
            async with session.get(url, headers=headers) as resp:
                return resp.status, await resp.json()

        async def post(path: str, body: dict[str, Any]) -> str:
            async with session.post(f"{og.url}{path}", json=body, headers=headers) as resp:
                assert resp.status == 202
                return str((await resp.json())["requestId"])

        og.processing_delay = 0.3
        created = await post("/v2/alerts", {"message": "P1 HD-7", "alias": "HD-7"})
        code, body = await status(created)
        assert code == 404
        assert body["message"] == "Request not found. It might not be processed, yet."
        assert og.alerts() == []
        await asyncio.sleep(0.35)
        code, body = await status(created)
        data = body["data"]
        assert code == 200 and body["requestId"] != created
        assert (data["isSuccess"], data["action"]) == (True, "Create")
        assert data["status"] == "Created alert"
        assert data["alias"] == "HD-7" and data["alertId"]
        assert og.open_aliases() == ["HD-7"]

        og.processing_delay = 0.0
        og.fail_processing("create", "Integration rule produced an empty message")
        failed = await post("/v2/alerts", {"message": "P1 HD-8", "alias": "HD-8"})
        code, body = await status(failed)
        assert code == 200 and body["data"]["isSuccess"] is False
        assert body["data"]["status"] == "Integration rule produced an empty message"
        assert body["data"]["alertId"] == "" and og.open_aliases() == ["HD-7"]

        closed = await post("/v2/alerts/HD-7/close?identifierType=alias", {"note": "done"})
        code, body = await status(closed)
        assert (body["data"]["isSuccess"], body["data"]["action"]) == (True, "Close")
        assert body["data"]["alertId"] == data["alertId"] and og.open_aliases() == []
        never = await post("/v2/alerts/HD-9/close?identifierType=alias", {})
        code, body = await status(never)
        assert body["data"]["isSuccess"] is False
        assert body["data"]["status"] == "Alert does not exist"
        assert [r["ok"] for r in og.requests()] == [True, False, True, False]
        async with session.get(f"{og.url}/v2/alerts/requests/{created}") as resp:
            assert resp.status == 401
