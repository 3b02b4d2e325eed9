"""A Slack app installed without a scope the bot uses (created from an older manifest, or a
scope removed by hand): what the operator and the person are told.

Found by an outsider's trial: Slack's answer names the scope it lacks (`needed`), but the log
said only `slack: missing_scope`, and a technician asking for the report's chart was told
"The chart could not be uploaded (missing_scope)": neither said which scope, nor that the app
has to be reinstalled for it."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from tests.fakes.slack_api import FakeSlack
from tests.harness import view_submission, wait_until
from tests.http.test_slack_intake import open_modal, states


def missing(needed: str) -> dict[str, Any]:
    return {"ok": False, "error": "missing_scope", "needed": needed, "provided": "commands"}


async def test_a_card_slack_refuses_for_a_missing_scope_names_the_scope_in_the_log(
    make_app, slack_api: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    app = await make_app(slack=slack_api)
    slack_api.fail("/api/chat.postMessage", 200, times=10, body=missing("chat:write"))
    view = await open_modal(app, slack_api)
    assert (await app.interactive(view_submission(view, states()))).status == 200

    def said() -> list[str]:
        return [r.getMessage() for r in caplog.records if "missing_scope" in r.getMessage()]

    await wait_until(lambda: said(), timeout=15, what="the outbox failure line")
    line = said()[0]
    assert "chat:write" in line and "Reinstall to Workspace" in line, line


async def test_a_chart_slack_refuses_for_a_missing_scope_tells_the_technician_which(
    make_app, slack_api: FakeSlack
) -> None:
    app = await make_app(slack=slack_api)
    slack_api.fail("/api/files.getUploadURLExternal", 200, body=missing("files:write"))
    asked = await app.slash("report", response_url=slack_api.response_url_for("chart"))
    assert asked.status == 200
    await wait_until(lambda: slack_api.responses("chart"), timeout=20, what="the chart note")
    told = json.dumps(slack_api.responses("chart"))
    assert "The chart could not be uploaded" in told
    assert "files:write" in told and "Reinstall to Workspace" in told, told
