"""The report's chart on Slack is durable: its upload is in the outbox before the person is
answered (in the transaction that claims the command's delivery id), and the worker draws it
when it uploads it. A process killed right after answering loses nothing; rows an earlier
release queued (the PNG itself, base64) still go up; what Slack answers is shown as typed."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import signal
from pathlib import Path
from typing import Any

import aiohttp
from PIL import Image
from sqlalchemy import select

from storage import db, outbox
from storage.models import OutboxMessage
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, wait_until
from tests.http.processes import Spawn, free_port, healthy
from tests.http.test_answer_replay import FORM, RETRY, command
from tests.http.test_report import GLOBEX_Q2, PEOPLE, png_size, seeded, slack_facts


async def file_rows(url: str) -> list[OutboxMessage]:
    engine = db.create_engine(url)
    try:
        async with db.session_factory(engine)() as session:
            query = select(OutboxMessage).where(OutboxMessage.kind == "file")
            return list((await session.execute(query)).scalars().all())
    finally:
        await engine.dispose()


async def test_a_report_answered_by_a_process_killed_at_once_still_gets_its_chart(
    make_app, db_url: str, slack_api: FakeSlack, spawn: Spawn, tmp_path: Path
):
    """`serve` answers `report` and is SIGKILLed the moment the answer arrives, long before
    a chart could be drawn (about a second): the upload was queued with the answer, so a
    worker started afterwards draws it and shares it where it was asked, once. Before, the
    chart was drawn after the ack and only then queued: it was lost with the process, and a
    retry of the command was answered as a duplicate, so nothing ever brought it back."""
    app: AppHarness = await make_app(slack=slack_api, people=PEOPLE, scheduler=False)
    q = await seeded(app)
    await app.stop()  # only its database and configuration are used
    port = free_port()
    env = {**app.env, "OUTBOX_LEASE_SECONDS": "2", "PORT": str(port)}
    server = await spawn("serve", env=env)
    await server.wait_for_line("listening on")
    client = AppHarness(tmp_path, env, None, None)
    client.url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as client.http:
        await wait_until(lambda: healthy(client.http, port), timeout=10, what="/healthz")
        asked = client.slash(
            f"report globex {q.second} {q.last_day}",
            response_url=slack_api.response_url_for("chart"),
        )
        response = await asked
        body = await response.json()
        await server.stop(signal.SIGKILL)
    assert slack_facts(body) == GLOBEX_Q2
    assert not slack_api.api_calls("files.completeUploadExternal")  # nothing shared yet
    [row] = await file_rows(db_url)  # queued with the answer
    assert row.status == "pending" and row.dedup_key and row.dedup_key.startswith("file:")

    worker = await spawn("worker", env=env)
    await worker.wait_for_line("outbox worker running")
    await wait_until(lambda: slack_api.shared_files("C0HELP"), timeout=30, what="the chart")
    await asyncio.sleep(1.0)
    [shared] = slack_api.shared_files()
    assert shared["filename"] == f"report-globex-{q.second}-{q.last_day}.png"
    assert "QBR report chart: globex" in shared["title"]
    assert png_size(shared["content"]) == (1200, 750)
    assert len(slack_api.api_calls("files.completeUploadExternal")) == 1
    assert slack_api.responses("chart") == []  # nobody told of a failure
    [row] = await file_rows(db_url)
    assert row.status == "delivered"


async def test_a_slack_retry_of_the_report_queues_one_chart(make_app, slack_api: FakeSlack):
    """The same command delivered again (Slack's retry, same trigger id): one upload row,
    one chart, and the retry is answered with the same figures."""
    app: AppHarness = await make_app(slack=slack_api, people=PEOPLE)
    q = await seeded(app)
    body = command(f"report globex {q.second} {q.last_day}", trigger="trigger-report-1")
    first = await app.slack(body, content_type=FORM)
    again = await app.slack(body, content_type=FORM, headers=RETRY)
    assert first.status == 200 and again.status == 200
    assert slack_facts(await first.json()) == slack_facts(await again.json()) == GLOBEX_Q2
    await wait_until(lambda: slack_api.shared_files("C0HELP"), timeout=20, what="the chart")
    await asyncio.sleep(1.0)
    assert len(slack_api.shared_files()) == 1
    async with app.services.sessions() as session:
        query = select(OutboxMessage).where(OutboxMessage.kind == "file")
        assert len((await session.execute(query)).scalars().all()) == 1


def _png(width: int = 800, height: int = 500) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), "#1d4ed8").save(out, format="PNG")
    return out.getvalue()


async def test_a_chart_queued_by_an_earlier_release_as_its_png_still_goes_up(
    make_app, slack_api: FakeSlack
):
    """A deploy with charts in flight: a row of the shape the earlier release queued (the
    drawn PNG as base64 in `image.png`) is uploaded as it is, byte for byte."""
    app: AppHarness = await make_app(slack=slack_api, people=PEOPLE, scheduler=False)
    png = _png()
    image = {
        "name": "report-acme-2026-01-01-2026-03-31.png",
        "title": "QBR report chart: acme, 2026-01-01 to 2026-03-31",
        "png": base64.b64encode(png).decode("ascii"),
    }
    payload: dict[str, Any] = {
        "platform": "slack",
        "channel": "C0HELP",
        "thread": None,
        "user": "UTECH",
        "purpose": "chart",
        "image": image,
        "respond": slack_api.response_url_for("old"),
    }
    async with app.services.sessions() as session, session.begin():
        await outbox.enqueue(
            session, kind="file", payload=payload, dedup_key="file:slack:command:old"
        )
    await app.stop()

    worker: AppHarness = await make_app(slack=slack_api, people=PEOPLE)
    await wait_until(lambda: slack_api.shared_files("C0HELP"), timeout=20, what="the chart")
    [shared] = slack_api.shared_files()
    assert shared["content"] == png and shared["filename"] == image["name"]
    assert shared["title"] == image["title"]
    assert slack_api.responses("old") == []
    await worker.stop()


async def test_what_slack_answers_about_a_chart_is_shown_as_typed(make_app, slack_api: FakeSlack):
    """Slack's error code is the outside system's words: an error reading `<!here> *b*` in
    the note that the chart has not gone up yet neither pings the channel nor turns bold."""
    app: AppHarness = await make_app(slack=slack_api, people=PEOPLE)
    hostile = "<!here> *b*"
    slack_api.fail_ok_false("files.getUploadURLExternal", hostile, times=3)
    asked = app.slash("report", response_url=slack_api.response_url_for("chart"))
    assert slack_facts(await (await asked).json())["Opened"] == "0"
    await wait_until(lambda: slack_api.responses("chart"), timeout=30, what="the note")
    [note] = slack_api.responses("chart")
    said = json.dumps(note)
    assert "The chart has not been uploaded yet" in said and "<!here>" not in said
    assert note["response_type"] == "ephemeral"
    assert note["text"].startswith("The chart has not been uploaded yet (&lt;!here&gt; *b*)")
    [section] = note["blocks"]
    assert section["text"]["type"] == "plain_text"  # `*b*` is not bold
    assert "(&lt;!here&gt; *b*)" in section["text"]["text"]
    await wait_until(lambda: slack_api.shared_files("C0HELP"), timeout=30, what="the chart")
    assert len(slack_api.shared_files()) == 1

    # Never going up (missing_scope): the scope Slack names is its words too.
    slack_api.reset()
    refused = {"ok": False, "error": "missing_scope", "needed": "<!channel> _x_"}
    slack_api.fail("files.getUploadURLExternal", 200, times=1, body=refused)
    asked = app.slash("report", response_url=slack_api.response_url_for("scope"))
    assert (await asked).status == 200
    await wait_until(lambda: slack_api.responses("scope"), timeout=30, what="the note")
    [note] = slack_api.responses("scope")
    assert "The chart could not be uploaded (missing_scope" in note["text"]
    assert "<!channel>" not in json.dumps(note) and "&lt;!channel&gt; _x_" in note["text"]
    [section] = note["blocks"]
    assert section["text"]["type"] == "plain_text"  # `_x_` is not italic
    assert not slack_api.shared_files()


async def test_a_chart_sent_to_the_dm_instead_waits_for_conversations_open_window(
    make_app, slack_api: FakeSlack
):
    """Found by a review: a chart the channel cannot take (the bot is not a member) goes to
    the person's DM, but that DM's conversations.open was not checked against its Retry-After
    window: right after a survey DM was refused with Retry-After: 4, the chart's fallback
    called conversations.open again (SPEC: other methods, that method). It waits the window
    out; the chart and the DM each arrive once."""
    app: AppHarness = await make_app(slack=slack_api, people=PEOPLE)
    slack_api.fail(
        "/api/conversations.open",
        429,
        times=1,
        headers={"Retry-After": "4"},
        body={"ok": False, "error": "ratelimited"},
    )
    slack_api.not_member.add("C0ELSEWHERE")
    async with app.services.sessions() as session, session.begin():
        await outbox.enqueue(
            session, kind="dm", dedup_key="dm-survey",
            payload={"platform": "slack", "user": "UANA", "text": "the survey"},
        )  # fmt: skip
    await wait_until(lambda: slack_api.calls("/api/conversations.open"), what="the refusal")
    image = {
        "name": "report-acme-2026-01-01-2026-03-31.png",
        "title": "QBR report chart: acme, 2026-01-01 to 2026-03-31",
        "png": base64.b64encode(_png()).decode("ascii"),
    }
    payload: dict[str, Any] = {
        "platform": "slack",
        "channel": "C0ELSEWHERE",
        "thread": None,
        "user": "UTECH",
        "purpose": "chart",
        "image": image,
        "respond": slack_api.response_url_for("elsewhere"),
    }
    async with app.services.sessions() as session, session.begin():
        await outbox.enqueue(session, kind="file", payload=payload, dedup_key="file:elsewhere")
    await wait_until(lambda: slack_api.shared_files("DUTECH"), timeout=20, what="the chart")
    opens = slack_api.calls("/api/conversations.open")
    inside = [c for c in opens[1:] if c.at < opens[0].at + 4.0]
    assert inside == [], "conversations.open was called inside its Retry-After window"
    await wait_until(lambda: any(p.get("channel") == "DUANA" for p in slack_api.posts()))
    await asyncio.sleep(0.5)
    assert len(slack_api.shared_files()) == 1
    assert len([p for p in slack_api.posts() if p.get("channel") == "DUANA"]) == 1
