"""What a Slack request must look like before Bolt routes it (SPEC: malformed bodies get 400).

Bolt trusts Slack's payloads: it indexes `actions[0]`, calls `.get` on whatever `team`, `user`
or `event` holds and its own error handler fails again on the same body, so a signed but
malformed request used to answer 500. Every body is checked here first, after its signature
and before Bolt sees it: its nesting and text (valid Unicode, no NUL), the fields Bolt's
context extraction reads (`team`, `user`, `channel`, `event`... and the nested `event`,
`message`, `item` it recurses into), and for each kind Bolt routes (slash commands,
block_actions, view_submission, view_closed, shortcut, message_action, block_suggestion, events)
the fields it and the bot need, with their types and Slack's own size limits. Kinds the bot has
no use for are acknowledged with 200 here (Slack expects an ack; there is nothing to do).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import parse_qsl

from bot.bodies import body_problem
from cards.model import ActionId

try:  # yarl (aiohttp's URLs) percent-decodes in C: ~10x faster than urllib on a modal's body
    from yarl._quoting import _Unquoter

    _UNQUOTE_QS: Any = _Unquoter(qs=True)
except ImportError:  # pragma: no cover - a yarl without it: urllib does it all
    _UNQUOTE_QS = None

# Slack's own limits (Block Kit: action_id, block_id, callback_id 255; button value 2000;
# private_metadata 3000; plain_text_input 3000; message text is cut at 40,000).
MAX_ID = 255
MAX_URL = 3000
MAX_VALUE = 2000
MAX_METADATA = 3000
MAX_INPUT = 3000
MAX_OPTION = 150
MAX_TEXT = 40_000
MAX_COMMAND = 64
MAX_ACTIONS = 25
MAX_BLOCKS = 100
MAX_OPTIONS = 100
MAX_DEPTH = 64
MAX_FILES = 100
KNOWN_ACTIONS = frozenset(a.value for a in ActionId)
# Interactivity kinds Slack may send that the bot does not use: acknowledged, nothing done.
LEGACY = ("interactive_message", "dialog_submission", "dialog_cancellation", "workflow_step_edit")
# Where Bolt looks for ids: a string, or an object whose `id` (and team ids) are strings.
_REFS = ("enterprise", "team", "user", "channel")
_REF_FIELDS = ("id", "team_id", "enterprise_id", "name", "username", "domain")
_IDS = (
    "enterprise_id",
    "team_id",
    "user_id",
    "channel_id",
    "thread_ts",
    "user_team",
    "context_team_id",
    "context_enterprise_id",
    "function_execution_id",
    "bot_access_token",
    "bot_id",
    "subtype",
    "channel_type",
    "api_app_id",
    "token",
)
# Objects Bolt's extractors recurse into.
_NESTED = ("event", "message", "previous_message", "item", "assistant_thread", "function_data")
_SELECTED = (
    "selected_user",
    "selected_conversation",
    "selected_channel",
    "selected_date",
    "selected_time",
)


class Malformed(ValueError):
    """Not a Slack request the bot can route; the message says which field and why."""


@dataclass(frozen=True)
class Verdict:
    """What to do with a parsed body: route it, refuse it (400) or just acknowledge it."""

    kind: str
    problem: str | None = None
    # Why nothing is done: answered 200 with `answer` (JSON) or an empty body.
    ignored: str | None = None
    answer: dict[str, Any] | None = None


def parse(raw: str, content_type: str | None) -> Any:
    """The body as Bolt would read it (JSON, a form's `payload`, or the form itself)."""
    if not raw:
        raise Malformed("the body is empty")
    try:
        if content_type == "application/json" or raw.startswith("{") or raw.startswith("["):
            return json.loads(raw)
        params = form(raw)
        if "payload" in params:
            return json.loads(params["payload"])
        return params
    except RecursionError:
        raise Malformed("the body is nested too deeply") from None
    except ValueError as exc:
        raise Malformed(f"the body is not valid JSON or form data ({type(exc).__name__})") from None


def form(raw: str) -> dict[str, str]:
    """`dict(parse_qsl(raw, keep_blank_values=True))`, decoded in C when that gives the same.

    A view_submission is a ~10 kB form field of percent-encoded JSON (~2,000 escapes), which
    urllib decodes in Python: about 0.6 ms, a tenth of an intake's CPU. yarl's decoder leaves
    some escapes encoded (`%2B`, `%26`, `%3D`) and undecodable bytes as they were, where urllib
    decodes or replaces them; so whenever a decoded name or value still holds a `%`, urllib
    decodes the body instead (and a literal `%`, `%25`, just takes the slow way).
    """
    if _UNQUOTE_QS is not None:
        try:
            fast = _fast_form(raw)
        except (ValueError, TypeError):
            fast = None
        if fast is not None:
            return fast
    return dict(parse_qsl(raw, keep_blank_values=True))


def _fast_form(raw: str) -> dict[str, str] | None:
    fast: dict[str, str] = {}
    for part in raw.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        name, value = _UNQUOTE_QS(name), _UNQUOTE_QS(value)
        if "%" in name or "%" in value:
            return None
        fast[name] = value
    return fast


def inspect(body: Any) -> Verdict:
    """Check a parsed body; the verdict names its kind and any problem."""
    if not isinstance(body, dict):
        return Verdict("other", problem=f"the body is a JSON {type_name(body)}, not an object")
    kind = _kind(body)
    try:
        _walk(body)
        _context(body, "body", depth=0)
        return _CHECKS.get(kind, _unknown)(body, kind)
    except Malformed as exc:
        return Verdict(kind, problem=str(exc))


def _kind(body: dict[str, Any]) -> str:
    # Bolt takes any body with `command` for a slash command, whatever else it holds.
    if "command" in body:
        return "command"
    if body.get("ssl_check") == "1":
        return "ssl_check"
    kind = body.get("type")
    return kind if isinstance(kind, str) and 0 < len(kind) <= MAX_ID else "other"


# -- field checks --------------------------------------------------------------------------


def _fail(where: str, what: str) -> NoReturn:
    raise Malformed(f"{where} {what}")


def type_name(value: Any) -> str:
    """A value's JSON type, for messages."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _walk(body: Any) -> None:
    """Bound nesting; every string (keys too) is valid Unicode without NUL."""
    if problem := body_problem(body, max_depth=MAX_DEPTH):
        raise Malformed(problem)


def _str(
    obj: dict[str, Any],
    key: str,
    where: str,
    *,
    limit: int,
    required: bool = False,
    empty: bool = True,
) -> str | None:
    """`obj[key]` as a string of at most `limit` characters (None, when absent, is allowed
    unless `required`; an empty string unless `empty` is False)."""
    value = obj.get(key)
    # The usual cases first, without building the path a message would name.
    if value is None and not required:
        return None
    if value.__class__ is str and len(value) <= limit and (value or empty):
        return value
    path = f"{where}.{key}"
    if value is None:
        if required:
            _fail(path, "is missing")
        return None
    if not isinstance(value, str):
        _fail(path, f"is a {type_name(value)}, not a string")
    if not value and not empty:
        _fail(path, "is empty")
    if len(value) > limit:
        _fail(path, f"is longer than {limit} characters")
    return value


def _id(obj: dict[str, Any], key: str, where: str) -> str:
    found = _str(obj, key, where, limit=MAX_ID, required=True, empty=False)
    assert found is not None
    return found


def _obj(obj: dict[str, Any], key: str, where: str, *, required: bool = False) -> dict[str, Any]:
    """`obj[key]` as an object ({} when absent and not required)."""
    value = obj.get(key)
    if value is None:
        if required:
            _fail(f"{where}.{key}", "is missing")
        return {}
    if not isinstance(value, dict):
        _fail(f"{where}.{key}", f"is a {type_name(value)}, not an object")
    return value


def _list(
    obj: dict[str, Any], key: str, where: str, *, limit: int, required: bool = False
) -> list[Any]:
    value = obj.get(key)
    path = f"{where}.{key}"
    if value is None:
        if required:
            _fail(path, "is missing")
        return []
    if not isinstance(value, list):
        _fail(path, f"is a {type_name(value)}, not an array")
    if required and not value:
        _fail(path, "is empty")
    if len(value) > limit:
        _fail(path, f"has more than {limit} items")
    return value


def _items(values: list[Any], where: str) -> list[dict[str, Any]]:
    for index, item in enumerate(values):
        if not isinstance(item, dict):
            _fail(f"{where}[{index}]", f"is a {type_name(item)}, not an object")
    return values


def _context(obj: dict[str, Any], where: str, *, depth: int) -> None:
    """The fields Bolt's context extraction reads, here and in what it recurses into.

    Absent fields and short strings pass without a call each (a slash command's form has
    most of them, every request); anything else takes the checks that name what is wrong."""
    for key in _REFS:
        ref = obj.get(key)
        if ref is None or (ref.__class__ is str and len(ref) <= MAX_ID):
            continue
        if isinstance(ref, str):
            _str(obj, key, where, limit=MAX_ID)
        elif isinstance(ref, dict):
            for field in _REF_FIELDS:
                _str(ref, field, f"{where}.{key}", limit=MAX_ID)
        else:
            _fail(f"{where}.{key}", f"is a {type_name(ref)}, not a string or an object")
    for key in _IDS:
        value = obj.get(key)
        if value is not None and (value.__class__ is not str or len(value) > MAX_ID):
            _str(obj, key, where, limit=MAX_ID)
    install = obj.get("is_enterprise_install")
    if install is not None and not isinstance(install, bool | str):
        _fail(f"{where}.is_enterprise_install", f"is a {type_name(install)}, not a boolean")
    if obj.get("authorizations") is not None:
        for index, auth in enumerate(_items(_list(obj, "authorizations", where, limit=10), where)):
            _context(auth, f"{where}.authorizations[{index}]", depth=depth + 1)
    _str(obj, "response_url", where, limit=MAX_URL)
    if obj.get("response_urls") is not None:
        urls = _items(
            _list(obj, "response_urls", where, limit=MAX_BLOCKS), f"{where}.response_urls"
        )
        for index, item in enumerate(urls):
            _str(item, "response_url", f"{where}.response_urls[{index}]", limit=MAX_URL)
    if obj.get("view") is not None:
        view = _obj(obj, "view", where)
        for key in ("team_id", "app_installed_team_id"):
            _str(view, key, f"{where}.view", limit=MAX_ID)
    for key in _NESTED:
        if obj.get(key) is None:
            continue
        nested = _obj(obj, key, where)
        if nested and depth < 3:
            _context(nested, f"{where}.{key}", depth=depth + 1)


def _actor(body: dict[str, Any]) -> None:
    """Interactivity names the person as `user: {id: ...}`."""
    _id(_obj(body, "user", "body", required=True), "id", "body.user")


def _view(body: dict[str, Any], *, state: bool) -> dict[str, Any]:
    view = _obj(body, "view", "body", required=True)
    _id(view, "id", "body.view")
    _str(view, "hash", "body.view", limit=MAX_ID)
    _str(view, "callback_id", "body.view", limit=MAX_ID, required=True)
    _str(view, "type", "body.view", limit=MAX_ID, required=True)  # Bolt reads view["type"]
    _str(view, "private_metadata", "body.view", limit=MAX_METADATA)
    if state:
        _state(_obj(view, "state", "body.view"))
    return view


def _state(state: dict[str, Any]) -> None:
    """`view.state.values`: {block_id: {action_id: {value | selected_*}}}."""
    values = _obj(state, "values", "body.view.state")
    if len(values) > MAX_BLOCKS:
        _fail("body.view.state.values", f"has more than {MAX_BLOCKS} blocks")
    for block_id, actions in values.items():
        where = f"body.view.state.values.{block_id[:40]}"
        if len(block_id) > MAX_ID:
            _fail(where, f"has a block id longer than {MAX_ID} characters")
        if not isinstance(actions, dict):
            _fail(where, f"is a {type_name(actions)}, not an object")
        if len(actions) > MAX_ACTIONS:
            _fail(where, f"has more than {MAX_ACTIONS} inputs")
        for action_id, input_state in actions.items():
            path = f"{where}.{action_id[:40]}"
            if len(action_id) > MAX_ID:
                _fail(path, f"is an action id longer than {MAX_ID} characters")
            if not isinstance(input_state, dict):
                _fail(path, f"is a {type_name(input_state)}, not an object")
            _input_state(input_state, path)


def _input_state(state: dict[str, Any], where: str) -> None:
    _str(state, "type", where, limit=MAX_ID)
    _str(state, "value", where, limit=MAX_INPUT)
    for key in _SELECTED:
        _str(state, key, where, limit=MAX_ID)
    option = _obj(state, "selected_option", where)
    if option:
        _str(option, "value", f"{where}.selected_option", limit=MAX_OPTION, required=True)
    chosen = _list(state, "selected_options", where, limit=MAX_OPTIONS)
    for index, item in enumerate(_items(chosen, f"{where}.selected_options")):
        _str(item, "value", f"{where}.selected_options[{index}]", limit=MAX_OPTION, required=True)


# -- one check per kind --------------------------------------------------------------------


def _command(body: dict[str, Any], kind: str) -> Verdict:
    name = _str(body, "command", "body", limit=MAX_COMMAND, required=True, empty=False)
    if name is None or not name.startswith("/") or len(name) < 2:
        _fail("body.command", "is not a slash command like /ticket")
    for key in ("user_id", "trigger_id", "channel_id"):
        _id(body, key, "body")
    _str(body, "text", "body", limit=MAX_TEXT)
    _str(body, "user_name", "body", limit=MAX_ID)
    return Verdict(kind)


def _block_actions(body: dict[str, Any], kind: str) -> Verdict:
    _actor(body)
    _id(body, "trigger_id", "body")
    actions = _items(
        _list(body, "actions", "body", limit=MAX_ACTIONS, required=True), "body.actions"
    )
    for index, action in enumerate(actions):
        where = f"body.actions[{index}]"
        _id(action, "action_id", where)
        _id(action, "action_ts", where)
        _str(action, "block_id", where, limit=MAX_ID)
        _str(action, "type", where, limit=MAX_ID)
        _str(action, "value", where, limit=MAX_VALUE)
        _input_state({k: v for k, v in action.items() if k != "value"}, where)
    channel = body.get("channel")
    if channel is not None and not isinstance(channel, dict):
        _fail("body.channel", f"is a {type_name(channel)}, not an object")
    message = _obj(body, "message", "body")
    _str(message, "ts", "body.message", limit=MAX_ID)
    _str(message, "text", "body.message", limit=MAX_TEXT)
    _obj(body, "container", "body")
    if body.get("view") is not None:
        _view(body, state=True)
    action_id = str(actions[0]["action_id"]).split(":", 1)[0]
    if action_id not in KNOWN_ACTIONS:
        return Verdict(kind, ignored=f"button {action_id[:60]!r} is not one of the bot's")
    return Verdict(kind)


def _view_submission(body: dict[str, Any], kind: str) -> Verdict:
    _actor(body)
    view = _view(body, state=True)
    callback = view["callback_id"]
    if callback not in KNOWN_ACTIONS:
        return Verdict(kind, ignored=f"form {callback[:60]!r} is not one of the bot's")
    # The bot's forms always carry their context (channel, ticket, survey) as a JSON object.
    try:
        context = json.loads(view.get("private_metadata") or "")
    except ValueError:
        _fail("body.view.private_metadata", "is not the JSON object the form was opened with")
    if not isinstance(context, dict) or not context:
        _fail("body.view.private_metadata", "is not the JSON object the form was opened with")
    return Verdict(kind)


def _view_closed(body: dict[str, Any], kind: str) -> Verdict:
    _actor(body)
    _view(body, state=False)
    return Verdict(kind, ignored="a form was closed (nothing was submitted)")


def _shortcut(body: dict[str, Any], kind: str) -> Verdict:
    _actor(body)
    _id(body, "callback_id", "body")
    _id(body, "trigger_id", "body")
    if kind == "message_action":
        _obj(body, "message", "body")
        _str(_obj(body, "message", "body"), "text", "body.message", limit=MAX_TEXT)
    return Verdict(kind, ignored="the app has no shortcuts")


def _block_suggestion(body: dict[str, Any], kind: str) -> Verdict:
    _actor(body)
    _id(body, "action_id", "body")
    _str(body, "block_id", "body", limit=MAX_ID)
    _str(body, "value", "body", limit=MAX_TEXT)
    return Verdict(kind, ignored="the bot's menus have no external options", answer={"options": []})


def _event_callback(body: dict[str, Any], kind: str) -> Verdict:
    _id(body, "event_id", "body")
    event = _obj(body, "event", "body", required=True)
    _id(event, "type", "body.event")
    _str(event, "text", "body.event", limit=MAX_TEXT)
    _str(event, "ts", "body.event", limit=MAX_ID)
    files = _items(_list(event, "files", "body.event", limit=MAX_FILES), "body.event.files")
    for index, shared in enumerate(files):
        _file(shared, f"body.event.files[{index}]")
    return Verdict(kind)


def _file(shared: dict[str, Any], where: str) -> None:
    """A file object of a message event (the bot records its name and link)."""
    _id(shared, "id", where)
    for key in ("name", "title"):
        _str(shared, key, where, limit=MAX_TEXT)
    for key in ("mimetype", "filetype", "file_access", "user"):
        _str(shared, key, where, limit=MAX_ID)
    for key in ("permalink", "url_private"):
        _str(shared, key, where, limit=MAX_URL)
    size = shared.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        _fail(f"{where}.size", "is not a file size")


def _url_verification(body: dict[str, Any], kind: str) -> Verdict:
    _id(body, "challenge", "body")
    return Verdict(kind)


def _passed(body: dict[str, Any], kind: str) -> Verdict:
    return Verdict(kind)


def _rate_limited(body: dict[str, Any], kind: str) -> Verdict:
    return Verdict(kind, ignored="Slack says the app was rate limited")


def _legacy(body: dict[str, Any], kind: str) -> Verdict:
    _id(body, "callback_id", "body")
    return Verdict(kind, ignored=f"the bot does not use {kind}")


def _dialog_suggestion(body: dict[str, Any], kind: str) -> Verdict:
    _legacy(body, kind)
    return Verdict(kind, ignored=f"the bot does not use {kind}", answer={"options": []})


def _unknown(body: dict[str, Any], kind: str) -> Verdict:
    if kind == "other":
        return Verdict(kind, problem="the body is not a Slack command, interaction or event")
    return Verdict(kind, problem=f"body.type {kind[:60]!r} is not a Slack request type")


_CHECKS = {
    "command": _command,
    "block_actions": _block_actions,
    "view_submission": _view_submission,
    "view_closed": _view_closed,
    "shortcut": _shortcut,
    "message_action": _shortcut,
    "block_suggestion": _block_suggestion,
    "event_callback": _event_callback,
    "url_verification": _url_verification,
    "ssl_check": _passed,
    "app_rate_limited": _rate_limited,
    "dialog_suggestion": _dialog_suggestion,
    **dict.fromkeys(LEGACY, _legacy),
}
# Every kind a metric label may carry: the ones routed or acknowledged above, plus the front
# door's own. A body's `type` is the caller's choice: anything else is `other`, or each
# made-up type would be a series (and a cached child) for good.
METRIC_KINDS = frozenset(_CHECKS) | {"unverified", "malformed", "other"}


def metric_kind(kind: str) -> str:
    """`kind` as a metric label: one the front door knows, else `other`."""
    return kind if kind in METRIC_KINDS else "other"
