"""`python -m bot teams-package` writes a Teams app zip whose manifest and icons Teams accepts."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from bot.teams.package import PackageError, build_manifest, load_template

ROOT = Path(__file__).resolve().parents[2]
TEAMS = ROOT / "teams"
APP_ID = "3c9a1d2e-5b6f-4a7c-8d9e-0f1a2b3c4d5e"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
COMMANDS = [
    "ticket new",
    "ticket show",
    "ticket mine",
    "ticket verify",
    "ticket p1",
    "ticket escalate",
    "ticket time",
    "ticket confirm",
    "ticket link",
    "ticket close",
]

# The parts of the Teams app manifest schema v1.17 (MicrosoftTeams.schema.json) this package
# uses: its required top-level fields, their constraints, and the bots section.
_HTTPS = {"type": "string", "maxLength": 2048, "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://"}
_GUID = {"type": "string", "pattern": "^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$"}
_SCOPES = {
    "type": "array",
    "maxItems": 3,
    "items": {"enum": ["team", "personal", "groupChat"]},
}
SCHEMA_V1_17: dict[str, Any] = {
    "type": "object",
    "required": [
        "manifestVersion",
        "version",
        "id",
        "developer",
        "name",
        "description",
        "icons",
        "accentColor",
    ],
    "properties": {
        "$schema": {
            "const": "https://developer.microsoft.com/json-schemas/teams/v1.17/MicrosoftTeams.schema.json"
        },
        "manifestVersion": {"const": "1.17"},
        "version": {
            "type": "string",
            "maxLength": 256,
            "pattern": r"^([0-9]|[1-9][0-9]*)\.([0-9]|[1-9][0-9]*)\.([0-9]|[1-9][0-9]*)$",
        },
        "id": _GUID,
        "developer": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "websiteUrl", "privacyUrl", "termsOfUseUrl"],
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 32},
                "mpnId": {"type": "string", "maxLength": 10},
                "websiteUrl": _HTTPS,
                "privacyUrl": _HTTPS,
                "termsOfUseUrl": _HTTPS,
            },
        },
        "name": {
            "type": "object",
            "additionalProperties": False,
            "required": ["short"],
            "properties": {
                "short": {"type": "string", "minLength": 1, "maxLength": 30},
                "full": {"type": "string", "maxLength": 100},
            },
        },
        "description": {
            "type": "object",
            "additionalProperties": False,
            "required": ["short", "full"],
            "properties": {
                "short": {"type": "string", "minLength": 1, "maxLength": 80},
                "full": {"type": "string", "minLength": 1, "maxLength": 4000},
            },
        },
        "icons": {
            "type": "object",
            "additionalProperties": False,
            "required": ["outline", "color"],
            "properties": {
                "outline": {"type": "string", "maxLength": 2048},
                "color": {"type": "string", "maxLength": 2048},
            },
        },
        "accentColor": {"type": "string", "pattern": "^#[0-9a-fA-F]{6}$"},
        "bots": {
            "type": "array",
            "maxItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["botId", "scopes"],
                "properties": {
                    "botId": {"type": "string", "maxLength": 64},
                    "needsChannelSelector": {"type": "boolean"},
                    "isNotificationOnly": {"type": "boolean"},
                    "supportsFiles": {"type": "boolean"},
                    "supportsCalling": {"type": "boolean"},
                    "supportsVideo": {"type": "boolean"},
                    "scopes": _SCOPES,
                    "commandLists": {
                        "type": "array",
                        "maxItems": 3,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["scopes", "commands"],
                            "properties": {
                                "scopes": _SCOPES,
                                "commands": {
                                    "type": "array",
                                    "maxItems": 10,
                                    "items": {
                                        "type": "object",
                                        "additionalProperties": False,
                                        "required": ["title", "description"],
                                        "properties": {
                                            "title": {"type": "string", "maxLength": 32},
                                            "description": {"type": "string", "maxLength": 128},
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
        "validDomains": {
            "type": "array",
            "maxItems": 16,
            "items": {"type": "string", "maxLength": 2048},
        },
    },
}


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which must come first."""
    assert data[:8] == PNG_SIGNATURE, "not a PNG file"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _png_color_type(data: bytes) -> int:
    return data[25]  # IHDR: width(4) height(4) bit depth(1) colour type(1)


def _run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "Microsoft"))}
    env["PYTHONPATH"] = str(ROOT)
    # No settings needed: a config that does not exist must not matter to this command.
    env["HELPDESK_CONFIG"] = str(cwd / "missing.yaml")
    env["DATABASE_URL"] = "postgresql+asyncpg://nobody@127.0.0.1:1/none"
    return subprocess.run(
        [sys.executable, "-m", "bot", "teams-package", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    folder = tmp_path_factory.mktemp("teams")
    result = _run_cli(
        "--app-id",
        APP_ID,
        "--domain",
        "bot.example.com",
        "--out",
        "out/helpdesk.zip",
        cwd=folder,
    )
    assert result.returncode == 0, result.stderr
    assert "helpdesk.zip" in result.stdout
    return zipfile.ZipFile(folder / "out" / "helpdesk.zip")


@pytest.fixture(scope="module")
def manifest(package: zipfile.ZipFile) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(package.read("manifest.json"))
    return data


def test_zip_holds_manifest_and_icons_at_its_root(package: zipfile.ZipFile) -> None:
    assert sorted(package.namelist()) == ["color.png", "manifest.json", "outline.png"]


def test_manifest_validates_against_the_v1_17_required_fields(manifest: dict[str, Any]) -> None:
    jsonschema.validate(manifest, SCHEMA_V1_17)
    assert manifest["manifestVersion"] == "1.17"
    assert str(uuid.UUID(manifest["id"])) == manifest["id"]
    for key in ("name", "websiteUrl", "privacyUrl", "termsOfUseUrl"):
        assert manifest["developer"][key]
    assert manifest["name"]["short"] == "Helpdesk"
    assert manifest["description"]["short"] and manifest["description"]["full"]
    assert "${{" not in json.dumps(manifest), "a placeholder was left unfilled"


def test_ids_and_domain_are_filled_in(manifest: dict[str, Any]) -> None:
    assert manifest["id"] == APP_ID
    (bot,) = manifest["bots"]
    assert bot["botId"] == APP_ID
    assert manifest["validDomains"] == ["bot.example.com"]
    assert manifest["developer"]["websiteUrl"] == "https://bot.example.com/"


def test_bot_scopes_and_command_lists(manifest: dict[str, Any]) -> None:
    (bot,) = manifest["bots"]
    assert sorted(bot["scopes"]) == ["groupChat", "personal", "team"]
    # SPEC: files sent to the bot with a ticket number are recorded on the ticket.
    assert bot["supportsFiles"] is True
    lists = {tuple(entry["scopes"]): entry["commands"] for entry in bot["commandLists"]}
    assert sorted(lists) == [("groupChat",), ("personal",), ("team",)]
    for commands in lists.values():
        assert [c["title"] for c in commands] == COMMANDS
        assert all(c["description"] for c in commands)


def test_icons_have_the_sizes_teams_requires(
    package: zipfile.ZipFile, manifest: dict[str, Any]
) -> None:
    color = package.read(manifest["icons"]["color"])
    outline = package.read(manifest["icons"]["outline"])
    assert _png_size(color) == (192, 192)
    assert _png_size(outline) == (32, 32)
    # The outline icon is white on transparent: it needs an alpha channel (colour type 4 or 6).
    assert _png_color_type(outline) in (4, 6)


def test_committed_icons_match_what_the_package_ships(package: zipfile.ZipFile) -> None:
    for name in ("color.png", "outline.png"):
        assert package.read(name) == (TEAMS / name).read_bytes()


def test_same_inputs_give_the_same_zip(tmp_path: Path) -> None:
    args = ("--app-id", APP_ID, "--name", "Service Desk", "--app-version", "1.2.3")
    first = _run_cli(*args, "--out", "a.zip", cwd=tmp_path)
    second = _run_cli(*args, "--out", "b.zip", cwd=tmp_path)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
    data = json.loads(zipfile.ZipFile(tmp_path / "a.zip").read("manifest.json"))
    jsonschema.validate(data, SCHEMA_V1_17)
    assert data["name"]["short"] == "Service Desk"
    assert data["version"] == "1.2.3"
    assert data["validDomains"] == []


def test_bad_app_id_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    result = _run_cli("--app-id", "my-bot", "--out", "x.zip", cwd=tmp_path)
    assert result.returncode == 2
    assert "--app-id" in result.stderr and "GUID" in result.stderr
    assert not (tmp_path / "x.zip").exists()


def test_separate_teams_app_id() -> None:
    other = "11111111-2222-4333-8444-555555555555"
    data = build_manifest(load_template(TEAMS), app_id=APP_ID, teams_app_id=other)
    assert data["id"] == other
    assert data["bots"][0]["botId"] == APP_ID


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"name": "x" * 31}, "--name"),
        ({"version": "1.0"}, "--app-version"),
        ({"domain": "https://bot.example.com/api"}, "--domain"),
        ({"website_url": "http://insecure.example.com"}, "--website-url"),
        ({"teams_app_id": "not-a-guid"}, "--teams-app-id"),
    ],
)
def test_bad_options_are_named(kwargs: dict[str, str], option: str) -> None:
    with pytest.raises(PackageError, match=option):
        build_manifest(load_template(TEAMS), app_id=APP_ID, **kwargs)
