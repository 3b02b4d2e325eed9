"""Images shared as files of their own (the report's chart), uploaded where they were asked.

The report queues its chart's upload in the outbox in the transaction that claims the
command (handlers.reports.service, handlers.notify.share_file), so it is stored before the
person is answered; the outbox worker draws it then (`FileSharer`, off the event loop: the
drawing is a second of CPU) and uploads it, so a chart Slack refuses for the moment (429 with
Retry-After, 5xx, its upload host out of reach) is drawn and uploaded again after the wait,
and one queued before a restart (or by a process killed right after answering) is uploaded
after it, by one worker. Rows queued by earlier releases hold the drawn PNG (base64): they are
uploaded as they are.

slack_sdk's `files_upload_v2` makes Slack's external upload: `files.getUploadURLExternal`, a
POST of the bytes to the URL it answers (no token: the URL is the permission), then
`files.completeUploadExternal` to share the file in the channel (scope `files:write`). Only
that last call shows the file, so an attempt that may have arrived (its worker died, the call
timed out) is looked for in the channel's history before the chart is shared again. A channel
the bot is not in gets the image in the person's DM instead, and they are told so.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot import places
from bot.logs import one_line
from bot.notifiers import DeliveryError, retry_after_seconds
from bot.slack.errors import slack_error
from bot.slack.notifier import NOT_HERE, PERMANENT, lookup_places, not_held
from cards import slack as blockkit
from cards.model import Card, Inline, Rich, Text, Typed, plain
from handlers.reports import render_kept
from storage.models import OutboxMessage

log = logging.getLogger(__name__)
# The person is told a chart has not gone up yet after this many failed attempts (about 3 to 7
# s after the first with the outbox's backoff; at once when it can never go up).
TELL_AFTER_ATTEMPTS = 3
# How far back the look-up for an earlier attempt reads (pages of 200 messages).
LOOKUP_PAGES = 5
UPLOAD_METHODS = ("files.getUploadURLExternal", "files.completeUploadExternal")
# At most this much of what Slack (or the upload) answered is quoted to the person.
REASON_CHARS = 300


def _failed(error: str) -> Inline:
    """The chart will not go up (`error`: what Slack answered, shown as typed)."""
    return Rich(
        "The chart could not be uploaded (",
        Typed(one_line(error, REASON_CHARS)),
        "); the figures above are complete.",
    )


def _not_yet(error: str, attempts: int) -> Inline:
    """The chart has not gone up yet and is retried (`error` as in `_failed`)."""
    return Rich(
        "The chart has not been uploaded yet (",
        Typed(one_line(error, REASON_CHARS)),
        f") after {attempts} attempts; the bot keeps trying. The figures above are complete.",
    )


def _note(said: Inline) -> dict[str, Any]:
    """`said` as a message: typed parts cannot ping, link or turn bold (a bare message text
    is mrkdwn)."""
    return blockkit.render_message(Card(title="", body=[Text(said)], fallback=plain(said)))


class _Drawing:
    """The row's PNG, drawn once per attempt and only when it is uploaded: a row of an
    earlier release holds it (base64); a row of this one holds what it is drawn from."""

    def __init__(self, image: dict[str, Any]) -> None:
        self.image = image
        self._png: bytes | None = None

    async def png(self) -> bytes:
        if self._png is None:
            self._png = await self._draw()
        return self._png

    async def _draw(self) -> bytes:
        kept = self.image.get("png")
        if kept is not None:
            try:
                return base64.b64decode(str(kept), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise DeliveryError("the chart's image is damaged", permanent=True) from exc
        try:
            return await asyncio.to_thread(render_kept, self.image["report"])
        except Exception as exc:
            # The same data would fail the same way again: not retried, the person is told.
            log.exception("slack: the chart %s could not be drawn", self.image.get("name"))
            raise DeliveryError(f"drawing it failed: {type(exc).__name__}", permanent=True) from exc


class FileSharer:
    """Uploads a queued image (outbox kind `file`) where it was asked, else to the person's DM."""

    def __init__(self, client: AsyncWebClient, *, places: places.Places | None = None) -> None:
        self.client = client
        # The worker's Retry-After windows, for the DM a refused channel falls back to.
        self._places = places

    @staticmethod
    def places(message: OutboxMessage) -> tuple[str, ...]:
        # A row in doubt is looked up first (conversations.history): that window holds it.
        lookup = lookup_places(message, None)
        return (*(places.slack_method(method) for method in UPLOAD_METHODS), *lookup)

    async def deliver(self, message: OutboxMessage) -> dict[str, Any]:
        payload = message.payload
        try:
            try:
                return await self._share(message)
            except DeliveryError:
                raise
            except aiohttp.ClientConnectorError as exc:
                raise DeliveryError(f"slack: {type(exc).__name__}: {exc}") from exc
            except (OSError, TimeoutError, aiohttp.ClientError) as exc:
                # The request may have reached Slack before the answer was lost.
                raise DeliveryError(f"slack: {type(exc).__name__}: {exc}", uncertain=True) from exc
        except DeliveryError as error:
            attempts = message.attempts
            if error.permanent or attempts == TELL_AFTER_ATTEMPTS:
                reason = str(error).removeprefix("slack: ")
                said = _failed(reason) if error.permanent else _not_yet(reason, attempts)
                await self._tell(payload, **_note(said))
            raise

    async def _share(self, message: OutboxMessage) -> dict[str, Any]:
        payload = message.payload
        image = payload["image"]
        drawing = _Drawing(image)
        channel, thread = str(payload["channel"]), payload.get("thread")
        try:
            if message.in_doubt and (found := await self._find(message, channel)):
                return found
            return await self._upload(image, drawing, channel, thread)
        except SlackApiError as exc:
            user = payload.get("user")
            if exc.response.get("error") not in NOT_HERE or not user:
                raise _error(exc) from exc
        await not_held(self._places, (places.slack_method("conversations.open"),))
        try:
            opened = await self.client.conversations_open(users=str(payload["user"]))
        except SlackApiError as exc:
            raise _error(exc) from exc
        dm = str(opened["channel"]["id"])
        try:
            if message.in_doubt and (found := await self._find(message, dm)):
                return {**found, "dm": True}
            shared = await self._upload(image, drawing, dm, None)
        except SlackApiError as exc:
            raise _error(exc) from exc
        log.info("slack: %s could not go to %s; sent to the person's DM", image["name"], channel)
        # The title names the client as typed: rendered as a card, it cannot ping, link or
        # turn bold (a bare message text is mrkdwn).
        said = Rich(
            "I cannot post files in this channel (invite me to it), so ",
            Typed(str(image["title"])),
            " is in our direct messages.",
        )
        await self._tell(payload, **_note(said))
        return {**shared, "dm": True}

    async def _upload(
        self, image: dict[str, Any], drawing: _Drawing, channel: str, thread: Any
    ) -> dict[str, Any]:
        png = await drawing.png()
        try:
            done = await self.client.files_upload_v2(
                channel=channel,
                thread_ts=thread,
                file=png,
                filename=str(image["name"]),
                title=str(image["title"]),
                alt_txt=str(image["title"]),
            )
        except SlackRequestError as exc:
            # The upload URL refused the bytes (files.slack.com answered other than 200):
            # nothing was shared yet, so trying again cannot double it.
            raise DeliveryError(f"slack: {exc}") from exc
        files = done.get("files") or [{}]
        return {"channel": channel, "file": str(files[0].get("id") or "")}

    async def _find(self, message: OutboxMessage, channel: str) -> dict[str, Any] | None:
        """The file an earlier attempt of this row shared in `channel`, if Slack has it: a
        message of the bot's since the row was queued with a file of this name and title."""
        image = message.payload["image"]
        oldest = f"{message.created_at.timestamp() - 60:.6f}"
        cursor: str | None = None
        try:
            for _ in range(LOOKUP_PAGES):
                page = await self.client.conversations_history(
                    channel=channel, oldest=oldest, limit=200, cursor=cursor
                )
                for found in page.get("messages") or []:
                    for file in found.get("files") or []:
                        if (file.get("name"), file.get("title")) == (image["name"], image["title"]):
                            log.info(
                                "outbox row %s was already shared (file %s): not uploading it "
                                "again",
                                message.id,
                                file.get("id"),
                            )
                            return {"channel": channel, "file": file.get("id"), "found": True}
                cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
                if not cursor:
                    break
        except SlackApiError as exc:
            if exc.response.status_code == 429:
                raise _error(exc) from exc
            # No history scope or the like: better a possible repeat than a lost chart.
            log.warning(
                "could not check whether outbox row %s was already shared (%s); uploading it",
                message.id,
                exc.response.get("error"),
            )
        return None

    async def _tell(self, payload: dict[str, Any], **message: Any) -> None:
        """Say something to the person who asked, only to them, where they asked (the
        command's response_url, good for 30 minutes); a failure to say it is logged."""
        url = payload.get("respond")
        if not url:
            return
        hook = AsyncWebhookClient(
            url=str(url), session=self.client.session, proxy=self.client.proxy
        )
        try:
            answered = await hook.send_dict(
                {**message, "response_type": "ephemeral", "replace_original": False}
            )
        except Exception as exc:
            log.warning("slack: the note about a chart could not be sent: %s", type(exc).__name__)
            return
        if answered.status_code != 200:
            log.warning("slack: the note about a chart was refused (%s)", answered.status_code)


def _error(exc: SlackApiError) -> DeliveryError:
    error = str(exc.response.get("error", "unknown_error"))
    method = str(getattr(exc.response, "api_url", "")).rsplit("/", 1)[-1]
    place = places.slack_method(method or UPLOAD_METHODS[0])
    if exc.response.status_code == 429:
        retry_after = retry_after_seconds(exc.response.headers.get("Retry-After")) or 1.0
        return DeliveryError(f"slack: {error}", retry_after=retry_after, place=place)
    return DeliveryError(f"slack: {slack_error(exc.response)}", permanent=error in PERMANENT)
