"""The Slack app manifests parse, and their bot scopes are exactly what the code's calls need."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from slack_sdk.web.async_client import AsyncWebClient

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = {
    "http": ROOT / "slack" / "manifest.yml",
    "socket": ROOT / "slack" / "manifest.socket-mode.yml",
}
SOURCES = ("bot", "handlers")

# Web API method -> the bot scopes it needs (per Slack's method reference). A method the code
# starts calling that is not listed here fails the test: add it with its scopes, then add the
# scopes to both manifests. Where Slack accepts one of several scopes, the one for our use is
# listed (conversations.open on a single user id opens a DM: im:write).
SCOPES_BY_METHOD: dict[str, tuple[str, ...]] = {
    "auth.test": (),
    "api.test": (),
    "views.open": (),
    "views.push": (),
    "views.update": (),
    "views.publish": (),
    "chat.postMessage": ("chat:write",),
    "chat.postEphemeral": ("chat:write",),
    "chat.update": ("chat:write",),
    "chat.delete": ("chat:write",),
    "chat.scheduleMessage": ("chat:write",),
    "chat.getPermalink": (),
    "conversations.open": ("im:write",),
    # Reading back a message the bot may already have posted (outbox look-up), in a public
    # or private channel or a DM.
    "conversations.history": ("channels:history", "groups:history", "im:history"),
    "conversations.replies": ("channels:history", "groups:history", "im:history"),
    # A channel configured by #name is found by its id before that look-up: public channels
    # and the private ones the bot is in.
    "conversations.list": ("channels:read", "groups:read"),
    "conversations.info": ("channels:read",),
    "conversations.join": ("channels:join",),
    "conversations.members": ("channels:read",),
    # users.info answers without the e-mail unless the app also has users:read.email, and
    # the e-mail is what the bot reads (a Slack user is matched to Graph by it).
    "users.info": ("users:read", "users:read.email"),
    # users:read.email can only be granted together with users:read.
    "users.lookupByEmail": ("users:read", "users:read.email"),
    "reactions.add": ("reactions:write",),
    # The report chart: files_upload_v2 is these two calls and a POST to the URL Slack gives.
    "files.upload.v2": ("files:write",),
    "files.getUploadURLExternal": ("files:write",),
    "files.completeUploadExternal": ("files:write",),
    "files.info": ("files:read",),
    "team.info": ("team:read",),
    # Socket Mode's connection URL: called with the app-level token (xapp-, its own scope
    # connections:write, granted when the token is made), not with a bot scope.
    "apps.connections.open": (),
}
# Scopes a manifest feature needs rather than a method: the /ticket slash command.
FEATURE_SCOPES = {"slash_commands": "commands"}
# Bot events -> the scope Slack requires to subscribe to them.
EVENT_SCOPES = {
    "message.channels": "channels:history",
    "message.groups": "groups:history",
    "message.im": "im:history",
    "message.mpim": "mpim:history",
    "app_mention": "app_mentions:read",
}
# Bolt listener helpers that are Web API calls in disguise.
BOLT_HELPERS = {"say": "chat.postMessage"}
# Bolt's own calls on every app: none (the app authorizes without auth.test: bot.slack.front).
BOLT_IMPLICIT: tuple[str, ...] = ()


def _sdk_methods() -> dict[str, str]:
    """Python name of every AsyncWebClient Web API wrapper -> the Web API method name."""
    names: dict[str, str] = {}
    for name, value in vars(AsyncWebClient).items():
        if name.startswith("_") or not callable(value):
            continue
        if name.endswith("_v2"):  # files_upload_v2: an SDK helper over several calls
            names[name] = name[: -len("_v2")].replace("_", ".") + ".v2"
        else:
            names[name] = name.replace("_", ".")
    return names


SDK_METHODS = _sdk_methods()


def _python_files() -> Iterator[Path]:
    for folder in SOURCES:
        yield from sorted((ROOT / folder).rglob("*.py"))


def calls_in(source: str) -> set[str]:
    """Web API methods a module calls: client.<wrapper>(), client.api_call("x.y"), say()."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute):
            if func.attr in SDK_METHODS:
                found.add(SDK_METHODS[func.attr])
            elif func.attr == "api_call" and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    found.add(first.value)
        elif isinstance(func, ast.Name) and func.id in BOLT_HELPERS:
            found.add(BOLT_HELPERS[func.id])
    return found


def subscribes_to_events(source: str) -> bool:
    """True when a module registers a Bolt event or message listener (app.event/app.message)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = node.func
            if target.attr in ("event", "message") and _is_bolt_app(target.value):
                if not _catch_all(node):
                    return True
    return False


def _catch_all(call: ast.Call) -> bool:
    """`app.event(re.compile(".*"))`: acknowledges whatever arrives, subscribes to nothing."""
    if not call.args or not isinstance(call.args[0], ast.Call):
        return False
    pattern = call.args[0]
    return (
        isinstance(pattern.func, ast.Attribute)
        and pattern.func.attr == "compile"
        and len(pattern.args) == 1
        and isinstance(pattern.args[0], ast.Constant)
        and pattern.args[0].value == ".*"
    )


def _is_bolt_app(node: ast.expr) -> bool:
    # `self.app.event(...)`, `app.event(...)`, `bolt.event(...)`.
    if isinstance(node, ast.Attribute):
        return node.attr in ("app", "bolt")
    return isinstance(node, ast.Name) and node.id in ("app", "bolt")


def called_methods() -> dict[str, list[str]]:
    """Every Web API method the code calls -> the files that call it."""
    where: dict[str, list[str]] = {name: ["(slack_bolt)"] for name in BOLT_IMPLICIT}
    for path in _python_files():
        for method in calls_in(path.read_text(encoding="utf-8")):
            where.setdefault(method, []).append(str(path.relative_to(ROOT)))
    return where


def _load(kind: str) -> dict[str, Any]:
    data = yaml.safe_load(MANIFESTS[kind].read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{MANIFESTS[kind]} is not a YAML mapping"
    return data


def _required_scopes(manifest: dict[str, Any]) -> set[str]:
    needed: set[str] = set()
    for feature, scope in FEATURE_SCOPES.items():
        if manifest.get("features", {}).get(feature):
            needed.add(scope)
    for method in called_methods():
        needed.update(SCOPES_BY_METHOD[method])
    for event in manifest.get("settings", {}).get("event_subscriptions", {}).get("bot_events", []):
        needed.add(EVENT_SCOPES[event])
    return needed


def _strings(value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list):
                yield from _strings(item)
            elif isinstance(item, str):
                yield str(key), item
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


# -- the scanner itself ------------------------------------------------------------------------


def test_scanner_finds_wrapper_api_call_and_say() -> None:
    source = """
async def go(client, say, respond):
    await client.chat_postMessage(channel="C1", text="hi")
    opened = await self.client.conversations_open(users="U1")
    await client.api_call("reactions.add", json={})
    await client.files_upload_v2(file="x")
    await say("hello")
    await respond("only a response_url")
    spawn(lambda: self.client.views_open(trigger_id="t", view={}))
    users_affected(3)
"""
    assert calls_in(source) == {
        "chat.postMessage",
        "conversations.open",
        "reactions.add",
        "files.upload.v2",
        "views.open",
    }


def test_scanner_sees_the_calls_the_code_makes_today() -> None:
    methods = called_methods()
    # If one of these disappears the scanner (or the code) changed: re-check the manifests.
    for method in ("chat.postMessage", "chat.update", "conversations.open", "views.open"):
        assert method in methods, f"{method} not found in {SOURCES}"


def test_every_called_method_has_known_scopes() -> None:
    unknown = {m: files for m, files in called_methods().items() if m not in SCOPES_BY_METHOD}
    assert not unknown, (
        f"add these Web API methods to SCOPES_BY_METHOD with their scopes, then to both "
        f"manifests: {unknown}"
    )


# -- the manifests -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(MANIFESTS))
def test_scopes_cover_every_call_and_nothing_more(kind: str) -> None:
    manifest = _load(kind)
    scopes = manifest["oauth_config"]["scopes"]["bot"]
    assert len(scopes) == len(set(scopes)), f"duplicate scopes in {MANIFESTS[kind].name}"
    needed = _required_scopes(manifest)
    missing = needed - set(scopes)
    extra = set(scopes) - needed
    assert not missing, f"{MANIFESTS[kind].name} lacks scopes the code needs: {sorted(missing)}"
    assert not extra, f"{MANIFESTS[kind].name} asks for scopes no call needs: {sorted(extra)}"
    assert "user" not in manifest["oauth_config"]["scopes"], "the bot needs no user scopes"


@pytest.mark.parametrize("kind", sorted(MANIFESTS))
def test_common_shape(kind: str) -> None:
    manifest = _load(kind)
    info = manifest["display_information"]
    assert info["name"] and len(info["name"]) <= 35
    assert info["description"] and len(info["description"]) <= 140
    assert 174 <= len(info.get("long_description", "x" * 174)) <= 4000
    features = manifest["features"]
    assert features["bot_user"]["display_name"]
    assert features["app_home"]["messages_tab_enabled"] is True
    (command,) = features["slash_commands"]
    assert command["command"] == "/ticket"
    assert command["description"]
    assert "show HD-7" in command["usage_hint"]
    assert manifest["settings"]["interactivity"]["is_enabled"] is True


def test_http_manifest_points_everything_at_slack_events() -> None:
    manifest = _load("http")
    settings = manifest["settings"]
    assert settings.get("socket_mode_enabled", False) is False
    (command,) = manifest["features"]["slash_commands"]
    assert command["url"] == "https://YOUR-HOST/slack/events"
    assert settings["interactivity"]["request_url"] == command["url"]


def test_socket_mode_manifest_has_no_urls() -> None:
    manifest = _load("socket")
    assert manifest["settings"]["socket_mode_enabled"] is True
    urls = [(key, value) for key, value in _strings(manifest) if "://" in value or "url" in key]
    assert not urls, f"Socket Mode needs no request URLs: {urls}"


@pytest.mark.parametrize("kind", sorted(MANIFESTS))
def test_event_subscriptions_only_when_the_code_listens(kind: str) -> None:
    listens = any(subscribes_to_events(p.read_text(encoding="utf-8")) for p in _python_files())
    has_events = "event_subscriptions" in _load(kind).get("settings", {})
    assert has_events == listens, (
        "the manifest subscribes to events the code does not handle"
        if has_events
        else "the code registers Bolt event listeners: add settings.event_subscriptions"
    )


@pytest.mark.parametrize("kind", sorted(MANIFESTS))
def test_message_events_the_bot_reads(kind: str) -> None:
    """SPEC: files shared in a ticket's thread, in public and private channels."""
    events = _load(kind)["settings"]["event_subscriptions"]["bot_events"]
    assert sorted(events) == ["message.channels", "message.groups"]
    if kind == "http":
        url = _load(kind)["settings"]["event_subscriptions"]["request_url"]
        assert url == "https://YOUR-HOST/slack/events"


def test_both_manifests_differ_only_in_transport() -> None:
    http, socket = _load("http"), _load("socket")
    for manifest in (http, socket):
        manifest["settings"].pop("socket_mode_enabled", None)
        manifest["settings"]["interactivity"].pop("request_url", None)
        manifest["settings"].get("event_subscriptions", {}).pop("request_url", None)
        for command in manifest["features"]["slash_commands"]:
            command.pop("url", None)
    assert http == socket
