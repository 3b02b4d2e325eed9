"""Fake Slack Web API (``/api/<method>``) plus ``response_url`` endpoints.

Point slack_sdk at it with ``AsyncWebClient(token=..., base_url=f"{fake.url}/api/")`` (or the
app's ``SLACK_API_URL``). Form and JSON bodies and query strings are merged into one ``params``
dict per call; JSON-encoded form fields such as ``blocks`` or ``view`` are decoded.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .base import FakeServer, Recorded

JSON_FIELDS = frozenset(
    {"blocks", "attachments", "view", "metadata", "unfurls", "user_auth_blocks", "options", "files"}
)
Answer = dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]]
# chat.postMessage / chat.update refuse blocks holding more text than this in all (every
# `text` string summed) with `msg_blocks_too_long`. Undocumented: slackapi/bolt-js #2509 saw it
# at about 13,200 characters, #2867 at 11,341 counted; the markdown block doc names 12,000.
BLOCKS_TEXT_MAX = 12_000


@dataclass
class SlackCall:
    method: str
    params: dict[str, Any]
    token: str | None
    recorded: Recorded


class FakeSlack(FakeServer):
    def __init__(
        self,
        users: dict[str, dict[str, Any]] | None = None,
        *,
        team_id: str = "T0TEAM",
        threaded: bool | None = None,
    ) -> None:
        super().__init__(threaded=threaded)
        self.team_id = team_id
        self.users: dict[str, dict[str, Any]] = {}
        for user_id, info in (users or {}).items():
            self.add_user(user_id, **info)
        self._answers: dict[str, Answer] = {}
        self._api_calls: list[SlackCall] = []
        self._responses: list[tuple[str, Any]] = []
        self._last_ts = 0
        self._views = itertools.count(1)
        # What each channel holds, oldest first (read back by conversations.history/replies).
        self.messages: dict[str, list[dict[str, Any]]] = {}
        # Channel names by id (conversations.list): every channel a post named, and those
        # `add_channel` made.
        self.channel_names: dict[str, str] = {}
        self._answer_delays: dict[str, float] = {}
        # Slack's per-channel limit for chat.postMessage, when switched on: a burst, then about
        # one a second; over it, 429 with Retry-After. Calls that arrive inside a window the
        # fake announced are counted in `violations` (Slack punishes clients that do that).
        self._post_limit: tuple[int, float, float] | None = None
        self._tokens: dict[str, tuple[float, float]] = {}
        self.windows: dict[str, float] = {}
        self.refusals: list[tuple[str, float]] = []
        self.violations: list[tuple[str, float]] = []
        # External uploads: file id -> what getUploadURLExternal was told, the bytes POSTed to
        # its upload URL, and where completeUploadExternal shared it.
        self.uploads: dict[str, dict[str, Any]] = {}
        self._files = itertools.count(1)
        # Channels the bot is not a member of (sharing a file there: not_in_channel).
        self.not_member: set[str] = set()
        # Channels where chat.postMessage is refused, with the error Slack gives there (a
        # read-only or thread-only channel, one archived, posting restricted to admins).
        self.refusing: dict[str, str] = {}
        # Files as files.info answers them, by id.
        self.files: dict[str, dict[str, Any]] = {}
        # Posts and updates refused with msg_blocks_too_long.
        self.too_long: list[dict[str, Any]] = []

    # ------------------------------------------------------------- configuration
    def add_file(self, file_id: str, name: str, **extra: Any) -> dict[str, Any]:
        """A file Slack knows (files.info answers it); returns the full file object."""
        self.files[file_id] = {
            "id": file_id,
            "name": name,
            "title": name,
            "mimetype": extra.pop("mimetype", "image/png"),
            "size": extra.pop("size", 1024),
            "permalink": f"https://fake-team.slack.com/files/U0/{file_id}/{name}",
            "url_private": f"https://files.slack.com/files-pri/T0-{file_id}/{name}",
            **extra,
        }
        return self.files[file_id]

    def add_user(
        self,
        user_id: str,
        name: str | None = None,
        real_name: str | None = None,
        email: str | None = None,
        **extra: Any,
    ) -> None:
        name = name or user_id.lower()
        self.users[user_id] = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "real_name": real_name or name,
            "is_bot": False,
            "profile": {"email": email, "real_name": real_name or name, "display_name": name},
            **extra,
        }

    def set_response(self, method: str, answer: Answer) -> None:
        """Canned answer (dict, or callable(params) -> dict) for a method, built in or not."""
        self._answers[method] = answer

    def fail_ok_false(self, method: str, error: str, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` with HTTP 200 ``{ok: false, error}``."""
        self.fail(method, 200, times, body={"ok": False, "error": error})

    def reset_state(self) -> None:
        self._api_calls.clear()
        self._responses.clear()
        self.messages.clear()
        self._answer_delays.clear()
        self._post_limit = None
        self._tokens.clear()
        self.windows.clear()
        self.refusals.clear()
        self.too_long.clear()
        self.violations.clear()
        self.uploads.clear()
        self.not_member.clear()
        self.refusing.clear()

    def delay_answer(self, method: str, seconds: float) -> None:
        """Do the work of ``method`` at once, then hold its answer for ``seconds`` (a call that
        succeeded on Slack's side while the caller was still waiting); 0 removes it."""
        if seconds > 0:
            self._answer_delays[method] = seconds
        else:
            self._answer_delays.pop(method, None)

    def channel_messages(self, channel: str) -> list[dict[str, Any]]:
        return list(self.messages.get(channel, []))

    def limit_posts(self, *, burst: int = 3, per_second: float = 1.0, retry_after: float = 1.0):
        """Throttle chat.postMessage per channel like Slack: `burst` at once, then
        `per_second`; a refused post gets 429 and `Retry-After: retry_after`."""
        self._post_limit = (burst, per_second, retry_after)

    def _throttled(self, channel: str) -> float | None:
        """Retry-After seconds when this post is over the channel's limit, else None."""
        if self._post_limit is None:
            return None
        burst, rate, retry_after = self._post_limit
        now = time.monotonic()
        if self.windows.get(channel, 0.0) > now:
            self.violations.append((channel, now))
            self.refusals.append((channel, now))
            return max(self.windows[channel] - now, 0.001)
        tokens, last = self._tokens.get(channel, (float(burst), now))
        tokens = min(float(burst), tokens + (now - last) * rate)
        if tokens < 1.0:
            self._tokens[channel] = (tokens, now)
            self.windows[channel] = now + retry_after
            self.refusals.append((channel, now))
            return retry_after
        self._tokens[channel] = (tokens - 1.0, now)
        return None

    def response_url_for(self, response_id: str) -> str:
        return f"{self.url}/response/{response_id}"

    # ------------------------------------------------------------------ queries
    def api_calls(self, method: str | None = None) -> list[SlackCall]:
        return [c for c in list(self._api_calls) if method is None or c.method == method]

    def method_calls(self, method: str) -> list[dict[str, Any]]:
        """``params`` of every call to ``method`` that reached normal handling (not scripted)."""
        return [c.params for c in self.api_calls(method)]

    def posts(self) -> list[dict[str, Any]]:
        return self.method_calls("chat.postMessage")

    def views_opened(self) -> list[dict[str, Any]]:
        return self.method_calls("views.open")

    def shared_files(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Uploads completed and shared (in `channel`), oldest first: each with `content`
        (the bytes), `filename`, `title`, `channel_id`, `thread_ts`."""
        return [
            u
            for u in self.uploads.values()
            if u.get("channel_id") and channel in (None, u["channel_id"])
        ]

    def responses(self, response_id: str | None = None) -> list[Any]:
        """JSON bodies posted to ``response_url_for(response_id)`` (all ids when None)."""
        return [b for rid, b in list(self._responses) if response_id in (None, rid)]

    async def wait_for_method(
        self,
        method: str,
        count: int = 1,
        timeout: float = 10.0,  # noqa: ASYNC109 - same API as wait_for
    ) -> list[dict[str, Any]]:
        await self.wait_for(f"/api/{method}", count=count, timeout=timeout)
        return self.method_calls(method)

    # --------------------------------------------------------------- internals
    def _normalize(self, path: str) -> str:
        return path if path.startswith("/") else f"/api/{path}"

    def default_error_body(self, status: int) -> Any:
        return {"ok": False, "error": "ratelimited" if status == 429 else "fatal_error"}

    async def handle(self, rec: Recorded, request: web.Request) -> web.StreamResponse:
        if rec.path.startswith("/response/"):
            self._responses.append((rec.path.removeprefix("/response/"), rec.json))
            return web.json_response({"ok": True})
        if rec.path.startswith("/upload/"):
            return self._upload(rec)
        if not rec.path.startswith("/api/"):
            return web.json_response({"ok": False, "error": "not_found"}, status=404)
        method = rec.path.removeprefix("/api/")
        params = _params(rec)
        token = params.pop("token", None)
        auth = rec.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            token = auth.removeprefix("Bearer ")
        self._api_calls.append(SlackCall(method, params, token, rec))
        if method in self._answers:
            answer = self._answers[method]
            answered = answer(params) if callable(answer) else answer
            if delay := self._answer_delays.get(method):
                await asyncio.sleep(delay)
            return web.json_response(answered)
        if method == "chat.postMessage":
            wait = self._throttled(str(params.get("channel", "")))
            if wait is not None:
                return web.json_response(
                    {"ok": False, "error": "ratelimited"},
                    status=429,
                    headers={"Retry-After": str(max(1, round(wait)))},
                )
        if method in ("chat.postMessage", "chat.update") and (
            blocks_text_size(params.get("blocks")) > BLOCKS_TEXT_MAX
        ):
            self.too_long.append(params)
            return web.json_response({"ok": False, "error": "msg_blocks_too_long"})
        builtin = getattr(self, "_m_" + method.replace(".", "_"), None)
        if builtin is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        answer = builtin(params)
        if delay := self._answer_delays.get(method):
            await asyncio.sleep(delay)
        return web.json_response(answer)

    def _next_ts(self) -> str:
        """Slack message timestamps: the time of posting, unique per fake."""
        micros = max(int(time.time() * 1_000_000), self._last_ts + 1)
        self._last_ts = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _m_auth_test(self, p: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://fake-team.slack.com/",
            "team": "Fake Team",
            "user": "helpdesk-bot",
            "team_id": self.team_id,
            "user_id": "UBOT",
            "bot_id": "BBOT",
        }

    def _view(self, p: dict[str, Any], view_id: str | None = None) -> dict[str, Any]:
        n = next(self._views)
        view: dict[str, Any] = p["view"] if isinstance(p.get("view"), dict) else {}
        return {
            "ok": True,
            "view": {
                **view,
                "id": view_id or f"V{n:010d}",
                "team_id": self.team_id,
                "hash": f"1700000000.hash{n:04d}",
                "external_id": p.get("external_id", view.get("external_id", "")),
            },
        }

    def _m_views_open(self, p: dict[str, Any]) -> dict[str, Any]:
        return self._view(p)

    def _m_views_push(self, p: dict[str, Any]) -> dict[str, Any]:
        return self._view(p)

    def _m_views_update(self, p: dict[str, Any]) -> dict[str, Any]:
        return self._view(p, p.get("view_id"))

    def _m_views_publish(self, p: dict[str, Any]) -> dict[str, Any]:
        return self._view(p)

    @staticmethod
    def channel_id(name: str) -> str:
        """The id of a channel named `#name`: chat.postMessage takes a name and answers with
        the id (conversations.history and chat.update take only the id)."""
        return "C" + "".join(c for c in name.upper() if c.isalnum())

    def add_channel(self, name: str) -> str:
        """A channel `#name` the workspace has (conversations.list names it); its id."""
        channel = self.channel_id(name)
        self.channel_names[channel] = name.removeprefix("#").lower()
        return channel

    def _m_conversations_list(self, p: dict[str, Any]) -> dict[str, Any]:
        names = {c: c.lower() for c in self.messages if c.startswith(("C", "G"))}
        names.update(self.channel_names)
        channels = [{"id": c, "name": n, "is_archived": False} for c, n in sorted(names.items())]
        return {"ok": True, "channels": channels, "response_metadata": {"next_cursor": ""}}

    def _m_chat_postMessage(self, p: dict[str, Any]) -> dict[str, Any]:
        if refused := self.refusing.get(str(p.get("channel", ""))):
            return {"ok": False, "error": refused}
        if str(p.get("channel", "")).startswith("#"):
            p = {**p, "channel": self.add_channel(str(p["channel"]))}
        ts = self._next_ts()
        message: dict[str, Any] = {
            k: p[k] for k in ("text", "blocks", "attachments", "thread_ts", "metadata") if k in p
        }
        message.update({"type": "message", "user": "UBOT", "bot_id": "BBOT", "ts": ts})
        self.messages.setdefault(str(p.get("channel")), []).append(message)
        shown = {k: v for k, v in message.items() if k != "metadata"}
        return {"ok": True, "channel": p.get("channel"), "ts": ts, "message": shown}

    def _history(self, p: dict[str, Any], keep: Callable[[dict[str, Any]], bool]) -> dict:
        channel = str(p.get("channel", ""))
        if channel not in self.messages and not channel.startswith(("C", "D", "G")):
            return {"ok": False, "error": "channel_not_found"}
        oldest = float(p.get("oldest") or 0)
        with_metadata = str(p.get("include_all_metadata", "")).lower() in ("1", "true")
        found = []
        for message in self.messages.get(channel, []):
            if float(message["ts"]) < oldest or not keep(message):
                continue
            shown = dict(message)
            if not with_metadata:
                shown.pop("metadata", None)
            found.append(shown)
        return {"ok": True, "messages": found, "has_more": False, "response_metadata": {}}

    def _m_conversations_history(self, p: dict[str, Any]) -> dict[str, Any]:
        answer = self._history(p, lambda m: not m.get("thread_ts"))
        answer["messages"] = list(reversed(answer.get("messages", [])))  # newest first
        return answer

    def _m_conversations_replies(self, p: dict[str, Any]) -> dict[str, Any]:
        ts = str(p.get("ts", ""))
        return self._history(p, lambda m: m["ts"] == ts or m.get("thread_ts") == ts)

    def _m_chat_postEphemeral(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "message_ts": self._next_ts()}

    def _m_chat_update(self, p: dict[str, Any]) -> dict[str, Any]:
        for message in self.messages.get(str(p.get("channel")), []):
            if message["ts"] == p.get("ts"):
                message.update({k: p[k] for k in ("text", "blocks") if k in p})
        return {"ok": True, "channel": p.get("channel"), "ts": p.get("ts"), "text": p.get("text")}

    def _m_chat_delete(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "channel": p.get("channel"), "ts": p.get("ts")}

    def _m_conversations_open(self, p: dict[str, Any]) -> dict[str, Any]:
        users = str(p.get("users", "")).split(",")
        if not users[0]:
            return {"ok": False, "error": "users_list_not_supplied"}
        return {"ok": True, "channel": {"id": "D" + users[0].strip()}}

    # -- external file uploads: getUploadURLExternal, POST to the URL, completeUploadExternal --

    def _m_files_getUploadURLExternal(self, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("filename") or not str(p.get("length", "")).isdigit():
            return {"ok": False, "error": "invalid_arguments"}
        file_id = f"F{next(self._files):010d}"
        self.uploads[file_id] = {
            "filename": p["filename"],
            "length": int(p["length"]),
            "alt_txt": p.get("alt_txt"),
            "content": None,
        }
        return {"ok": True, "upload_url": f"{self.url}/upload/{file_id}", "file_id": file_id}

    def _upload(self, rec: Recorded) -> web.Response:
        """The upload URL: takes the bytes (raw body), as files.slack.com does; no token."""
        upload = self.uploads.get(rec.path.removeprefix("/upload/"))
        if rec.method != "POST" or upload is None:
            return web.Response(status=404, text="not found")
        if len(rec.body) != upload["length"]:
            return web.Response(status=400, text="length mismatch")
        upload["content"] = rec.body
        upload["authorization"] = rec.headers.get("Authorization")
        return web.Response(status=200, text="OK - " + str(len(rec.body)))

    def _m_files_completeUploadExternal(self, p: dict[str, Any]) -> dict[str, Any]:
        files = p.get("files")
        if not isinstance(files, list) or not files:
            return {"ok": False, "error": "invalid_arguments"}
        channel = p.get("channel_id")
        if channel in self.not_member:
            return {"ok": False, "error": "not_in_channel"}
        shared = []
        for item in files:
            upload = self.uploads.get(str(item.get("id")))
            if upload is None or upload["content"] is None:
                return {"ok": False, "error": "file_not_found"}
            upload.update(title=item.get("title"), channel_id=channel, thread_ts=p.get("thread_ts"))
            shared.append(
                {"id": item["id"], "name": upload["filename"], "title": item.get("title")}
            )
        # As Slack does: the share is a message of the bot's in the channel (or thread).
        message: dict[str, Any] = {"type": "message", "user": "UBOT", "bot_id": "BBOT"}
        message |= {"ts": self._next_ts(), "files": shared, "upload": True}
        if p.get("thread_ts"):
            message["thread_ts"] = p["thread_ts"]
        self.messages.setdefault(str(channel), []).append(message)
        return {"ok": True, "files": shared}

    def _m_files_info(self, p: dict[str, Any]) -> dict[str, Any]:
        found = self.files.get(str(p.get("file")))
        return {"ok": True, "file": found} if found else {"ok": False, "error": "file_not_found"}

    def _m_users_info(self, p: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(p.get("user")))
        return {"ok": True, "user": user} if user else {"ok": False, "error": "user_not_found"}

    def _m_users_lookupByEmail(self, p: dict[str, Any]) -> dict[str, Any]:
        email = str(p.get("email", "")).lower()
        for user in self.users.values():
            if (user["profile"].get("email") or "").lower() == email:
                return {"ok": True, "user": user}
        return {"ok": False, "error": "users_not_found"}


def blocks_text_size(value: Any) -> int:
    """Characters of every `text` string in `value` (blocks as sent), summed."""
    if isinstance(value, dict):
        return sum(
            len(item) if key == "text" and isinstance(item, str) else blocks_text_size(item)
            for key, item in value.items()
        )
    if isinstance(value, list):
        return sum(blocks_text_size(item) for item in value)
    return 0


def _params(rec: Recorded) -> dict[str, Any]:
    params: dict[str, Any] = {
        key: _maybe_json(value) if key in JSON_FIELDS else value for key, value in rec.query.items()
    }
    if rec.form is not None:
        for key, value in rec.form.items():
            params[key] = _maybe_json(value) if key in JSON_FIELDS else value
    elif isinstance(rec.json, dict):
        for key, value in rec.json.items():
            params[key] = _maybe_json(value) if key in JSON_FIELDS else value
    return params


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
