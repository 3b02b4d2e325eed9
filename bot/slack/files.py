"""Images that go with a reply (the report's chart), uploaded where the command was typed.

slack_sdk's `files_upload_v2` makes Slack's external upload: `files.getUploadURLExternal`, a
POST of the bytes to the URL it answers (no token: the URL is the permission), then
`files.completeUploadExternal` to share the file in the channel (scope `files:write`). A
channel the bot is not in gets the image in the person's DM instead, and they are told so.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import ClientError
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.errors import slack_error
from bot.slack.notifier import NOT_HERE
from cards import slack as blockkit
from cards.model import Card, Rich, Text, Typed
from handlers.types import Image

log = logging.getLogger(__name__)
Respond = Callable[..., Awaitable[Any]]


async def _upload(
    client: AsyncWebClient, image: Image, png: bytes, channel: str, thread: str | None
) -> None:
    await client.files_upload_v2(
        channel=channel,
        thread_ts=thread,
        file=png,
        filename=image.filename,
        title=image.title,
        alt_txt=image.title,
    )


async def share_image(
    client: AsyncWebClient,
    image: Image,
    *,
    channel: str,
    user: str,
    respond: Respond,
    thread: str | None = None,
) -> None:
    """Render `image` off the event loop and upload it to `channel` (else to `user`'s DM)."""
    png = await asyncio.to_thread(image.render)
    try:
        try:
            await _upload(client, image, png, channel, thread)
            return
        except SlackApiError as exc:
            if exc.response.get("error") not in NOT_HERE:
                raise
        opened = await client.conversations_open(users=user)
        await _upload(client, image, png, opened["channel"]["id"], None)
        log.info("slack: %s could not go to %s; sent to the person's DM", image.filename, channel)
        # The title names the client as typed: rendered as a card, it cannot ping, link or
        # turn bold (a bare message text is mrkdwn).
        said = Rich(
            "I cannot post files in this channel (invite me to it), so ",
            Typed(image.title),
            " is in our direct messages.",
        )
        note = Card(title="", body=[Text(said)], fallback=said.plain())
        await respond(
            **blockkit.render_message(note), response_type="ephemeral", replace_original=False
        )
    except (SlackApiError, SlackRequestError, ClientError, TimeoutError) as exc:
        # ClientError, TimeoutError: Slack out of reach, or only its upload host (the upload
        # URL is on files.slack.com, which a proxy may not let through): said, not only logged.
        if isinstance(exc, SlackApiError):
            error = slack_error(exc.response)
        elif isinstance(exc, SlackRequestError):
            error = str(exc)
        else:
            error = f"Slack could not be reached: {type(exc).__name__}"
        # aiohttp's message names the host and port (never the upload URL's path).
        detail = error if isinstance(exc, SlackApiError | SlackRequestError) else f"{error}: {exc}"
        log.warning("slack: uploading %s failed: %s", image.filename, detail)
        await respond(
            text=f"The chart could not be uploaded ({error}); the figures above are complete.",
            response_type="ephemeral",
            replace_original=False,
        )
