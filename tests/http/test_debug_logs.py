"""LOG_LEVEL=DEBUG logs our own modules' detail, never a token, a secret or a response_url.

Found by a review: Bolt gives its loggers the root logger's level as an app starts, so the cap
setup_logging puts on `slack_bolt` did not reach them; at DEBUG every Socket Mode envelope was
logged whole (its response_url, with which anyone can post as the app for 30 minutes, and the
user's text). The app runs here with the production logging set up at DEBUG, through a slash
command, a form submission and a button press over the socket and a signed HTTP command.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from bot.logs import setup_logging
from tests.fakes.socket_mode import interactive_envelope, slash_envelope
from tests.harness import BOT_TOKEN, SIGNING_SECRET, block_actions, view_submission, wait_until
from tests.harness import slack_button as button
from tests.http.test_slack_socket_mode import (
    APP_TOKEN,
    FORM,
    command_body,
    intake_values,
    open_intake,
    post_raw,
    socket_server,
    start_socket_app,
)

__all__ = ["socket_server"]

UNUSED_RESPONSE_URL = "http://127.0.0.1:9/unused"  # the fakes' slash command response_url


@pytest.fixture
def debug_output() -> Iterator[io.StringIO]:
    """The production logging (setup_logging) at DEBUG, its lines kept; undone afterwards."""
    root = logging.getLogger()
    loggers = [
        root,
        *(x for x in logging.Logger.manager.loggerDict.values() if isinstance(x, logging.Logger)),
    ]
    saved = {logger: logger.level for logger in loggers}
    setup_logging(fmt="text", level="DEBUG")
    handler = next(h for h in root.handlers if getattr(h, "_helpdesk", False))
    stream = io.StringIO()
    handler.setStream(stream)  # type: ignore[attr-defined]
    yield stream
    root.removeHandler(handler)
    for logger, level in saved.items():
        logger.setLevel(level)


async def test_debug_logs_hold_no_secret_and_no_response_url(
    debug_output, make_app, slack_api, socket_server
):
    app = await start_socket_app(make_app, slack_api, socket_server, signing=True)
    view = await open_intake(socket_server, slack_api, "debug")
    submission = view_submission(view, intake_values(), view_id="V-DEBUG")
    await socket_server.send(interactive_envelope(submission, envelope_id="env-submit"))
    await socket_server.ack_for("env-submit")
    await wait_until(lambda: any(p.get("channel") == "DU0BO" for p in slack_api.posts()), 10)
    dm = next(p for p in slack_api.posts() if p.get("channel") == "DU0BO")
    response_url = slack_api.response_url_for("debug-approve")
    press = block_actions(
        button(dm, "Approve"), user="U0BO", channel="DU0BO", n=1, response_url=response_url
    )
    await socket_server.send(interactive_envelope(press, envelope_id="env-approve"))
    await socket_server.ack_for("env-approve")
    await socket_server.send(slash_envelope("show HD-1", envelope_id="env-show"))
    await socket_server.ack_for("env-show")
    assert await post_raw(app, command_body("help"), FORM, SIGNING_SECRET) == 200

    lines = debug_output.getvalue().splitlines()
    assert any(" DEBUG " in line for line in lines)  # DEBUG is on...
    assert logging.getLogger("bot.slack.front").isEnabledFor(logging.DEBUG)  # ...for our code
    for secret in (BOT_TOKEN, APP_TOKEN, SIGNING_SECRET, UNUSED_RESPONSE_URL, response_url):
        leaked = [line for line in lines if secret in line]
        assert not leaked, f"{secret[:12]}… logged at DEBUG: {leaked[0][:300]}"
    # Nor the user's text, which Bolt logged with each envelope and each response body.
    assert not [line for line in lines if "Forged over HTTP" in line]
