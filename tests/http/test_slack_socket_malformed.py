"""Malformed Socket Mode envelopes: the HTTP table (test_slack_malformed) over the WebSocket.

Over HTTP a malformed body gets 400; over Socket Mode there is no status to give, so each
envelope is acknowledged once, with a log line, and nothing is stored. The same
`bot.slack.shapes` checks apply: every field of every kind is removed, mistyped, emptied and
made oversized in turn (over the socket a slash command's payload is JSON, so its fields can
be mistyped too), and no variant may log an error or a traceback or stop the receive loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from tests.fakes.slack_api import FakeSlack
from tests.fakes.socket_mode import FakeSocketMode, slash_envelope
from tests.http import test_slack_malformed as table
from tests.http.test_slack_socket_mode import socket_server, start_socket_app

__all__ = ["socket_server"]

# The envelope type each payload kind arrives in (url_verification does not exist here).
ENVELOPES = {
    "command": "slash_commands",
    **{
        kind: "interactive"
        for kind in table.BASES
        if kind not in ("event_callback", "url_verification")
    },
    "event_callback": "events_api",
}


def failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()[:200] for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR
    ]


async def still_serving(server: FakeSocketMode) -> None:
    await server.send(slash_envelope("help", envelope_id="env-still"))
    assert "ticket show" in json.dumps((await server.ack_for("env-still", timeout=3))["payload"])


@pytest.mark.parametrize("kind", list(ENVELOPES))
async def test_every_field_of_every_kind_broken_in_turn_over_the_socket(
    make_app: Any,
    slack_api: FakeSlack,
    socket_server: FakeSocketMode,
    caplog: pytest.LogCaptureFixture,
    kind: str,
) -> None:
    """Found by a review: a button press without a response_url (every button in a modal)
    raised in Bolt's `respond` after the ack, a traceback per press ("slack call failed
    after ack"): the bot's check for it looked for `respond is None`, which Bolt never gives."""
    app = await start_socket_app(make_app, slack_api, socket_server)
    caplog.set_level(logging.INFO)
    base = table.COMMAND if kind == "command" else table.BASES[kind]
    base = json.loads(json.dumps(base).replace("RESPONSE_URL", slack_api.response_url_for("m")))
    variants = [(p, w) for p in table.paths(base) for w in table.WRONG]
    problems: list[str] = []
    for n, (path, new) in enumerate([((), None), *variants]):
        payload = table.mutated(base, path, new) if path else base
        what = table.label(path, new) if path else "the well-formed example"
        caplog.clear()
        envelope_id = f"env-{n}"
        await socket_server.send(
            {
                "envelope_id": envelope_id,
                "type": ENVELOPES[kind],
                "accepts_response_payload": ENVELOPES[kind] != "events_api",
                "payload": payload,
            }
        )
        try:
            await socket_server.ack_for(envelope_id, timeout=3)
        except TimeoutError:
            problems.append(f"{what}: not acknowledged within 3 s")
            continue
        # What a press or a command starts after its ack has finished too.
        await app.services.slack.drain()  # type: ignore[union-attr]
        if failed := failures(caplog):
            problems.append(f"{what}: {failed}")
    assert not problems, "\n".join(problems[:30])
    await asyncio.sleep(0.2)
    acked = [a.get("envelope_id") for a in socket_server.acks]
    assert len(acked) == len(set(acked)) == len(variants) + 1  # each once
    assert await table.stored(app) == table.NOTHING
    await still_serving(socket_server)


async def test_envelopes_without_a_usable_id_or_with_odd_fields(
    make_app: Any,
    slack_api: FakeSlack,
    socket_server: FakeSocketMode,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Found by a review: an envelope whose envelope_id was null was run (`/ticket new`
    opened its form) and "acknowledged" with a null id Slack cannot match; one with a
    retry_reason that was not a string failed in Bolt with a traceback (the command went
    unanswered); a text frame that was not JSON was a traceback from slack_sdk. Now: without
    a usable id an envelope is dropped with a warning and never run; odd envelope fields are
    acknowledged once with a warning and not handled; a frame that is not JSON is a warning."""
    await start_socket_app(make_app, slack_api, socket_server)
    caplog.set_level(logging.INFO)
    new = slash_envelope("new", envelope_id="x")
    no_id = {k: v for k, v in new.items() if k != "envelope_id"}
    for odd_id in [None, "", 7, ["x"], "e" * 300]:
        caplog.clear()
        await socket_server.send({**new, "envelope_id": odd_id, "payload": {**new["payload"]}})
        await asyncio.sleep(0.3)
        assert [r for r in caplog.records if "dropped, not handled" in r.getMessage()], odd_id
        assert not failures(caplog), odd_id
    await socket_server.send(no_id)
    # A list payload without an id: slack_sdk could not even read it.
    await socket_server.send({"envelope_id": "", "type": "interactive", "payload": []})
    odd_fields = {
        "env-reason": {"retry_reason": {"why": "timeout"}},
        "env-reason-long": {"retry_reason": "r" * 300},
        "env-attempt": {"retry_attempt": "1"},
        "env-attempt-bool": {"retry_attempt": True},
        "env-attempt-negative": {"retry_attempt": -1},
    }
    for envelope_id, fields in odd_fields.items():
        caplog.clear()
        await socket_server.send({**new, **fields, "envelope_id": envelope_id})
        assert await socket_server.ack_for(envelope_id, timeout=3) == {"envelope_id": envelope_id}
        assert any("malformed socket envelope" in r.getMessage() for r in caplog.records)
        assert not failures(caplog), envelope_id
    caplog.clear()
    assert socket_server._ws is not None
    await socket_server._ws.send_str('{"type": "slash_commands", "envelope_id": "env-cut')
    await asyncio.sleep(0.3)
    assert any("not JSON" in r.getMessage() for r in caplog.records)
    assert not failures(caplog)
    await asyncio.sleep(0.3)
    assert slack_api.views_opened() == []  # nothing was run
    assert [a["envelope_id"] for a in socket_server.acks] == list(odd_fields)  # each once
    await still_serving(socket_server)
    # A well-formed retry is still served.
    await socket_server.send(slash_envelope("new", envelope_id="env-ok", retry=1))
    await socket_server.ack_for("env-ok")
    await slack_api.wait_for_method("views.open")


async def test_frames_that_are_no_json_object_are_one_warning_each(
    make_app: Any,
    slack_api: FakeSlack,
    socket_server: FakeSocketMode,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Found by a review: a text frame of JSON nested deeper than Python's recursion limit was
    an ERROR with a traceback from slack_sdk's loop ("Failed to process a message: maximum
    recursion depth exceeded"); one that did not start with `{` (plain text, a JSON array,
    an envelope after a space) was dropped without a word. Each is now one warning and
    nothing else; a well-formed envelope after leading whitespace is served; empty frames stay
    quiet."""
    await start_socket_app(make_app, slack_api, socket_server)
    caplog.set_level(logging.INFO)
    assert socket_server._ws is not None
    deep = '{"envelope_id": "env-deep", "payload": ' + '{"a": ' * 100_000 + "1" + "}" * 100_001
    frames = {
        deep: "not JSON",
        "hello": "not JSON",
        '[{"envelope_id": "env-in-a-list"}]': "JSON array, not an object",
        '"env-string"': "JSON string, not an object",
    }
    for frame, words in frames.items():
        caplog.clear()
        await socket_server._ws.send_str(frame)
        await asyncio.sleep(0.3)
        said = [r for r in caplog.records if "Socket Mode message dropped" in r.getMessage()]
        assert len(said) == 1 and words in said[0].getMessage(), (frame[:40], said)
        assert said[0].levelname == "WARNING"
        assert not failures(caplog), frame[:40]
    caplog.clear()
    await socket_server._ws.send_str("")
    await socket_server._ws.send_str(
        " \n" + json.dumps(slash_envelope("help", envelope_id="env-sp"))
    )
    assert "ticket show" in json.dumps(
        (await socket_server.ack_for("env-sp", timeout=3))["payload"]
    )
    assert not [r for r in caplog.records if "dropped" in r.getMessage()]
    assert not failures(caplog)
    assert [a["envelope_id"] for a in socket_server.acks] == ["env-sp"]
    await still_serving(socket_server)
