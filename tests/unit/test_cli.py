"""`python -m bot` as an operator runs it: --help, and check-config on good and bad setups."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml

from bot.__main__ import _parser
from tests.directory_people import (
    GRAPH_SECRET,
    TECH_GROUP_ID,
    VIP_GROUP_ID,
    fill_graph,
    graph_directory,
)
from tests.fakes.graph import FakeGraph

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {
    "SLACK_BOT_TOKEN": "xoxb-1111-2222-cli-test-token",
    "SLACK_SIGNING_SECRET": "cli-test-signing-secret-8f7e",
    "PAGERDUTY_ROUTING_KEY": "cli-test-routing-key-5d4c",
    "OPSGENIE_API_KEY": "cli-test-opsgenie-key-3b2a",
    "MicrosoftAppPassword": "cli-test-app-password-1a0b",
}
APP_ID = "3c9a1d2e-5b6f-4a7c-8d9e-0f1a2b3c4d5e"
PEOPLE = """\
- email: ana@example.com
  name: Ana Lopez
  slack_id: U0ANA
  manager: bo@example.com
  vip: true
- email: bo@example.com
  name: Bo Chen
  slack_id: U0BO
  technician: true
"""
CONFIG = """\
slack: {incident_channel: C0INCIDENT}
teams: {incident_conversation: "19:abc@thread.tacv2"}
incident: {bridge_url: https://meet.example.com/p1-bridge}
identity: {approval_ttl: 15m}
directory: {source: file, path: people.yaml}
"""


def _environment(env: dict[str, str] | None) -> dict[str, str]:
    """Only the given settings (none of the caller's), plus what a process needs to start."""
    base = {
        key: value
        for key, value in os.environ.items()
        if key in ("PATH", "HOME", "LANG", "LC_ALL", "SYSTEMROOT", "TMPDIR")
    }
    base.update({"PYTHONPATH": str(ROOT), "COLUMNS": "80"})
    base.update(env or {})
    return base


def run_bot(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m bot ARGS` in `cwd` with only the given settings (none of the caller's)."""
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        env=_environment(env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def call_bot(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """What `run_bot` returns, from `bot.__main__.main(ARGS)` called in this process: for the
    tables that check how each of many settings is read or refused, where a process per case
    (about a second of imports each) tests nothing the first case's process did not. It runs
    as the process would: in `cwd`, with exactly `run_bot`'s environment, the root logger
    without handlers (a warning goes to stderr through logging's last resort, as in a fresh
    process), and everything it changes (environment, directory, logging) put back after."""
    from bot.__main__ import main
    from bot.logs import CAPPED_LOGGERS

    root = logging.getLogger()
    for name in CAPPED_LOGGERS:  # setup_logging sets their levels: made now to be put back
        logging.getLogger(name)
    loggers = [
        root,
        *(v for v in logging.root.manager.loggerDict.values() if isinstance(v, logging.Logger)),
    ]
    levels = [(logger, logger.level, logger.disabled) for logger in loggers]
    handlers = root.handlers[:]
    out, err = io.StringIO(), io.StringIO()
    try:
        root.handlers.clear()
        root.setLevel(logging.WARNING)
        with (
            mock.patch.dict(os.environ, _environment(env), clear=True),
            contextlib.chdir(cwd),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse's usage errors and --help
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        # What `setup_logging` added (bound to the captured stderr) goes with the call.
        for handler in root.handlers[:]:
            root.removeHandler(handler)
            handler.close()
        root.handlers[:] = handlers
        for logger, level, disabled in levels:
            logger.setLevel(level)
            logger.disabled = disabled
    result = subprocess.CompletedProcess(["bot", *args], code, out.getvalue(), err.getvalue())
    if os.environ.get("TEST_CLI_BOTH"):  # TEST_CLI_BOTH=1: is each in-process case the process's?
        real = run_bot(*args, cwd=cwd, env=env)
        assert _untimed(result) == _untimed(real), (result, real)
    return result


def _untimed(result: subprocess.CompletedProcess[str]) -> tuple[int, str, str]:
    def untimed(text: str) -> str:
        return re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}", "<time>", text)

    return result.returncode, untimed(result.stdout), untimed(result.stderr)


def first_for_real(case: object, cases: list[Any]) -> Runner:
    """A table's first case runs `python -m bot` for real (exit code and stderr as the
    process leaves them); the others the same `main()` in-process (`call_bot`)."""
    return run_bot if case == cases[0] else call_bot


Runner = Callable[..., subprocess.CompletedProcess[str]]


def _setup(folder: Path, *, config: str = CONFIG, people: str = PEOPLE) -> dict[str, str]:
    (folder / "config.yaml").write_text(config, encoding="utf-8")
    (folder / "people.yaml").write_text(people, encoding="utf-8")
    return {
        "HELPDESK_CONFIG": str(folder / "config.yaml"),
        "DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'helpdesk.db'}",
    }


def _fields(stdout: str) -> dict[str, str]:
    """`key: value` lines of the check-config report."""
    fields = {}
    for line in stdout.splitlines():
        key, sep, value = line.partition(":")
        if sep and re.fullmatch(r"[a-z ]+", key):
            fields[key] = value.strip()
    return fields


# -- --help ------------------------------------------------------------------------------------


def _subcommands() -> dict[str, str]:
    for action in _parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {sub.dest: sub.help or "" for sub in action._get_subactions()}
    raise AssertionError("python -m bot has no subcommands")


def test_help_lists_every_subcommand_on_one_line(tmp_path: Path) -> None:
    result = run_bot("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    subcommands = _subcommands()
    assert {"serve", "worker", "migrate", "check-config", "teams-package"} <= set(subcommands)
    lines = result.stdout.splitlines()
    for name, help_text in subcommands.items():
        assert help_text, f"subcommand {name} has no help text"
        matching = [line for line in lines if line.split()[:1] == [name]]
        assert len(matching) == 1, f"{name} is not listed once: {matching}"
        (line,) = matching
        assert line.split(None, 1)[1] == help_text, f"{name}'s help wraps: {result.stdout}"
        assert len(line) <= 80


def test_each_subcommand_has_help(tmp_path: Path) -> None:
    for name in _subcommands():
        result = run_bot(name, "--help", cwd=tmp_path)
        assert result.returncode == 0, f"{name} --help: {result.stderr}"
        assert result.stdout.startswith(f"usage: python -m bot {name}")


# -- check-config ------------------------------------------------------------------------------


def test_check_config_reports_what_is_enabled_without_secrets(tmp_path: Path) -> None:
    env = _setup(tmp_path)
    env.update(SECRETS)
    env.update(
        {
            "MicrosoftAppId": APP_ID,
            "MicrosoftAppType": "SingleTenant",
            "MicrosoftAppTenantId": "11111111-2222-4333-8444-555555555555",
        }
    )
    result = run_bot("check-config", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    for name, secret in SECRETS.items():
        assert secret not in output, f"{name} was printed"
    fields = _fields(result.stdout)
    assert fields["slack"].startswith("HTTP mode")
    assert "SingleTenant" in fields["teams"] and APP_ID in fields["teams"]
    assert "11111111-2222-4333-8444-555555555555" in fields["teams"]
    assert fields["pagers"] == "PagerDuty, Opsgenie"
    assert "people.yaml" in fields["directory"] and "2 people" in fields["directory"]
    assert "2 people, 1 technician, 1 VIP" in fields["directory"]
    assert "C0INCIDENT" in fields["incidents"] and "19:abc@thread.tacv2" in fields["incidents"]
    assert "meet.example.com/p1-bridge" in fields["incidents"]
    assert "config OK" in result.stdout
    # It reports the SQLite file as to-be-created; it creates nothing and starts nothing.
    assert "created on first start" in fields["database"]
    assert not (tmp_path / "helpdesk.db").exists()


CALENDAR_EVENTS = (
    "BEGIN:VEVENT\r\nUID:fw@example.com\r\nDTSTAMP:20261101T000000Z\r\n"
    "DTSTART:20261215T220000Z\r\nSUMMARY:Firewall firmware window\r\nEND:VEVENT\r\n"
    "BEGIN:VEVENT\r\nUID:bk@example.com\r\nDTSTAMP:20261101T000000Z\r\n"
    "DTSTART:20261201T010000Z\r\nRRULE:FREQ=WEEKY\r\nSUMMARY:Backup\r\nEND:VEVENT\r\n"
)


def test_check_config_reports_a_bad_change_calendar(tmp_path: Path) -> None:
    """check-config reads the calendar file as `serve` will: one that is no calendar (an HTML
    page saved in its place) is exit 2 naming the key; an event `serve` would skip is a
    warning naming it. A calendar URL is not fetched and shown by its host only: its path is
    the secret of a published calendar (it was printed whole)."""
    env = _setup(tmp_path, config=CONFIG + "changes: {calendar: changes.ics}\n")
    (tmp_path / "changes.ics").write_text("<html><body>Sign in to Outlook</body></html>")
    result = run_bot("check-config", "--no-db", cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stdout
    assert "changes.calendar" in result.stderr and "not an iCalendar file" in result.stderr

    (tmp_path / "changes.ics").write_text(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\n"
        + CALENDAR_EVENTS + "END:VCALENDAR\r\n"
    )  # fmt: skip
    result = call_bot("check-config", "--no-db", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "changes.ics (1 event, 1 skipped: see the warnings)" in result.stdout
    [warning] = [line for line in result.stdout.splitlines() if "bk@example.com" in line]
    assert warning.startswith("warning:") and "Backup" in warning

    secret = "https://outlook.office365.com/owa/calendar/4f1c9a/7d2e8b0c1a/reachcalendar.ics"
    env = _setup(tmp_path, config=CONFIG + f"changes: {{calendar: '{secret}'}}\n")
    result = call_bot("check-config", "--no-db", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "change calendar https://outlook.office365.com/…" in result.stdout
    assert "4f1c9a" not in result.stdout + result.stderr


def test_check_config_defaults_socket_mode_and_emulator(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'helpdesk.db'}",
        "SLACK_BOT_TOKEN": SECRETS["SLACK_BOT_TOKEN"],
        "SLACK_APP_TOKEN": "xapp-1-A0-cli-test-app-token",
    }
    result = call_bot("check-config", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    fields = _fields(result.stdout)
    assert fields["config"] == "built-in defaults"
    assert fields["slack"].startswith("Socket Mode")
    assert fields["teams"].startswith("Emulator mode")
    assert fields["pagers"].startswith("none")
    assert fields["directory"].startswith("none")
    assert "xapp-1-A0-cli-test-app-token" not in result.stdout + result.stderr


LDAP_BINDS = [
    ("ldap://dc1.example.com", "CN=svc-helpdesk,OU=Service,DC=example,DC=com", True),
    ("ldaps://dc1.example.com", "CN=svc-helpdesk,OU=Service,DC=example,DC=com", False),
    ("ldap://127.0.0.1:3890", "CN=svc-helpdesk,OU=Service,DC=example,DC=com", False),
    ("ldap://dc1.example.com", None, False),  # anonymous: no password to expose
]


@pytest.mark.parametrize(("url", "bind_dn", "warned"), LDAP_BINDS)
def test_check_config_warns_of_a_bind_password_sent_in_clear(
    tmp_path: Path, url: str, bind_dn: str | None, warned: bool
) -> None:
    """SPEC allows ldap:// (no StartTLS setting): a simple bind there sends the service
    account's password readable to anyone on the path; the operator is told, not refused."""
    ldap = f"    url: {url}\n    base_dn: DC=example,DC=com\n"
    if bind_dn:
        ldap += f"    bind_dn: {bind_dn}\n"
    env = _setup(tmp_path, config=f"directory:\n  source: ldap\n  ldap:\n{ldap}")
    env["LDAP_BIND_PASSWORD"] = "cli-test-ldap-password"
    run = first_for_real((url, bind_dn, warned), LDAP_BINDS)
    result = run("check-config", "--no-db", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    directory = _fields(result.stdout)["directory"]
    assert directory.startswith(f"LDAP {url}")
    assert ("unencrypted over ldap://" in directory) is warned
    assert ("unencrypted over ldap://" in result.stderr) is warned  # the log line at start
    assert "cli-test-ldap-password" not in result.stdout + result.stderr


NO_TECHNICIAN_GROUP = [
    ("graph", "graph: {tenant_id: t1, client_id: c1", "technician_group_id: g1",
     "directory.graph.technician_group_id"),
    ("ldap", "ldap: {url: 'ldaps://dc1.example.com', base_dn: 'DC=example,DC=com'",
     "technician_group_dn: 'CN=Techs,DC=example,DC=com'", "directory.ldap.technician_group_dn"),
]  # fmt: skip


@pytest.mark.parametrize(("source", "settings", "group", "key"), NO_TECHNICIAN_GROUP)
def test_check_config_says_everyone_is_a_technician_without_a_technician_group(
    tmp_path: Path, source: str, settings: str, group: str, key: str
) -> None:
    """SPEC: with graph or ldap and no technician group, everyone is a technician (start-up
    warns): check-config said only where the directory is, not that."""
    env = _setup(tmp_path, config=f"directory: {{source: {source}, {settings}}}}}\n")
    env["GRAPH_CLIENT_SECRET"] = "cli-test-graph-secret"
    result = call_bot("check-config", "--no-db", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    directory = _fields(result.stdout)["directory"]
    assert "everyone counts as one" in directory and key in directory, directory
    env["HELPDESK_CONFIG"] = str(tmp_path / "grouped.yaml")
    (tmp_path / "grouped.yaml").write_text(
        f"directory: {{source: {source}, {settings}, {group}}}}}\n"
    )
    result = call_bot("check-config", "--no-db", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "everyone" not in _fields(result.stdout)["directory"], result.stdout


def test_check_config_slack_disabled_says_how_to_enable(tmp_path: Path) -> None:
    result = call_bot("check-config", "--no-db", cwd=tmp_path, env=_setup(tmp_path))
    assert result.returncode == 0, result.stderr
    fields = _fields(result.stdout)
    assert fields["slack"].startswith("disabled")
    assert "SLACK_SIGNING_SECRET" in fields["slack"] and "SLACK_APP_TOKEN" in fields["slack"]
    assert "not contacted" in fields["database"]


def test_check_config_pings_an_existing_database(tmp_path: Path) -> None:
    env = _setup(tmp_path)
    (tmp_path / "helpdesk.db").write_bytes(b"")  # an empty file is a valid empty SQLite DB
    result = run_bot("check-config", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert _fields(result.stdout)["database"].endswith("(reachable)")


def test_check_config_bad_duration_exits_2_naming_the_key(tmp_path: Path) -> None:
    env = _setup(tmp_path, config=CONFIG.replace("approval_ttl: 15m", "approval_ttl: 15 minutes"))
    result = call_bot("check-config", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert "identity.approval_ttl" in result.stderr
    assert "15 minutes" in result.stderr
    assert "config OK" not in result.stdout


UNSAFE_TEMPLATES = [
    ("https://rc.example.com/join?asset={asset}&note=from helpdesk", "percent-encoded"),
    ("https://rc.example.com/join?asset=<{asset}>", "percent-encoded"),
    ("https://{asset}/connect", "in the host"),
    ("https://rc.example.com@{asset}/join", "in the host"),
    ("javascript:alert('{asset}')", "not an http(s) URL"),
]


@pytest.mark.parametrize(("template", "why"), UNSAFE_TEMPLATES)
def test_check_config_refuses_a_remote_template_that_makes_no_safe_link(
    tmp_path: Path, template: str, why: str
) -> None:
    """A space or `<` in the template made every ticket card with an asset a button Slack
    refuses; `{asset}` in the host let whoever typed the asset choose the site it opens."""
    config = CONFIG + f"remote: {{url_template: {json.dumps(template)}}}\n"
    run = first_for_real((template, why), UNSAFE_TEMPLATES)
    result = run("check-config", "--no-db", cwd=tmp_path, env=_setup(tmp_path, config=config))
    assert result.returncode == 2, result.stdout
    assert "remote.url_template" in result.stderr and why in result.stderr
    assert "config OK" not in result.stdout


def test_check_config_invalid_directory_file_exits_2(tmp_path: Path) -> None:
    env = _setup(tmp_path, people="- email: ana@example.com\n  colour: red\n")
    result = run_bot("check-config", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert "people.yaml" in result.stderr and "colour" in result.stderr
    assert "config OK" not in result.stdout


def test_check_config_missing_directory_file_exits_2(tmp_path: Path) -> None:
    env = _setup(tmp_path)
    (tmp_path / "people.yaml").unlink()
    result = call_bot("check-config", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert "people.yaml" in result.stderr


BAD_CHECKED = [
    ({"PORT": "eighty"}, "PORT"),
    (
        {
            "MicrosoftAppId": APP_ID,
            "MicrosoftAppPassword": "x",
            "MicrosoftAppType": "SingleTenant",
        },
        "MicrosoftAppTenantId",
    ),
    ({"SLACK_SIGNING_SECRET": "only-the-secret"}, "SLACK_BOT_TOKEN"),
    ({"DATABASE_URL": "postgresql+asyncpg://nobody:pw@127.0.0.1:1/none"}, "DATABASE_URL"),
]


@pytest.mark.parametrize(("env", "key"), BAD_CHECKED)
def test_check_config_bad_setting_exits_2_naming_it(
    tmp_path: Path, env: dict[str, str], key: str
) -> None:
    run = first_for_real((env, key), BAD_CHECKED)
    result = run("check-config", cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stdout
    assert result.stderr.startswith("config error: ")
    assert key in result.stderr


# -- bad settings stop every command with one line, exit 2 (found by a review: LOG_LEVEL and
# -- DATABASE_URL were tracebacks with exit 1; check-config --no-db must agree with serve) ----

DB_PASSWORD = "cli-db-pw-7c6d"


def _one_line_naming(result: subprocess.CompletedProcess[str], key: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("config error: ") and key in lines[0], lines[0]
    assert DB_PASSWORD not in result.stderr + result.stdout
    return lines[0]


BAD_SETTINGS = [
    ({"LOG_LEVEL": "verbose"}, "LOG_LEVEL"),
    ({"LOG_LEVEL": "10"}, "LOG_LEVEL"),
    ({"DATABASE_URL": f"postgresql+asyncpg//u:{DB_PASSWORD}@db.example.com/d"}, "DATABASE_URL"),
    ({"DATABASE_URL": f"postgresql+asyncpg://u:{DB_PASSWORD}@db:port/d"}, "DATABASE_URL"),
    ({"DATABASE_URL": f"postgresql+psycopg2://u:{DB_PASSWORD}@db/d"}, "DATABASE_URL"),
    ({"DATABASE_URL": f"mysql://u:{DB_PASSWORD}@db/d"}, "DATABASE_URL"),
    ({"DATABASE_URL": "sqlite:///helpdesk.db"}, "DATABASE_URL"),
]


@pytest.mark.parametrize("command", [("check-config", "--no-db"), ("migrate",)])
@pytest.mark.parametrize(("env", "key"), BAD_SETTINGS)
def test_a_bad_setting_is_one_line_and_exit_2_for_every_command(
    tmp_path: Path, env: dict[str, str], key: str, command: tuple[str, ...]
) -> None:
    run = first_for_real((env, key), BAD_SETTINGS)
    _one_line_naming(run(*command, cwd=tmp_path, env=env), key)


@pytest.mark.parametrize("command", [("check-config", "--no-db"), ("migrate",)])
def test_a_config_file_that_is_not_utf8_is_one_line_and_exit_2(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    env = _setup(tmp_path)
    (tmp_path / "config.yaml").write_bytes("ticket_prefix: 'HÉ'\n".encode("latin-1"))
    line = _one_line_naming(run_bot(*command, cwd=tmp_path, env=env), "HELPDESK_CONFIG")
    assert "config.yaml" in line and "UTF-8" in line


@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_a_hosting_platforms_postgres_url_is_read_as_asyncpg(tmp_path: Path, scheme: str) -> None:
    """What Heroku-style platforms set: no driver named; psycopg2 is not installed."""
    url = f"{scheme}://u:{DB_PASSWORD}@127.0.0.1:1/none"
    run = first_for_real(scheme, ["postgres", "postgresql"])
    checked = run("check-config", "--no-db", cwd=tmp_path, env={"DATABASE_URL": url})
    assert checked.returncode == 0, checked.stderr
    database = _fields(checked.stdout)["database"]
    assert database.startswith("postgresql+asyncpg://u:***@127.0.0.1:1/none"), database
    assert f"{scheme}:// read as postgresql+asyncpg://" in database
    assert DB_PASSWORD not in checked.stdout + checked.stderr
    # Nothing listens on port 1: the database cannot be reached (not a missing driver).
    migrated = run("migrate", cwd=tmp_path, env={"DATABASE_URL": url})
    lines = migrated.stderr.strip().splitlines()
    assert migrated.returncode == 2, migrated.stderr
    assert f"{scheme}:// read as postgresql+asyncpg://" in lines[0]
    assert lines[-1].startswith("config error: DATABASE_URL: cannot reach the database"), lines
    assert "Traceback" not in migrated.stderr and DB_PASSWORD not in migrated.stderr


@pytest.mark.parametrize("command", [("check-config",), ("serve",), ("migrate",)])
@pytest.mark.parametrize(("at", "address"), [(":6543", "db.nosuch.invalid:6543"), ("", "")])
def test_a_database_host_that_does_not_resolve_is_named_with_its_port(
    tmp_path: Path, command: tuple[str, ...], at: str, address: str
) -> None:
    """Was `cannot reach the database (gaierror: [Errno -2] Name or service not known)`: which
    host, which port? (PostgreSQL's default port is said when the URL has none.)"""
    url = f"postgresql+asyncpg://u:{DB_PASSWORD}@db.nosuch.invalid{at}/helpdesk"
    run = run_bot if at or command == ("serve",) else call_bot
    line = _one_line_naming(run(*command, cwd=tmp_path, env={"DATABASE_URL": url}), "DATABASE_URL")
    address = address or "db.nosuch.invalid:5432"
    assert line.startswith(f"config error: DATABASE_URL: cannot reach the database at {address}: ")
    assert "the host name db.nosuch.invalid does not resolve (gaierror: " in line, line


# -- durations: a negative number of seconds was accepted, and one too long for a date a
# -- traceback (found by a review) -------------------------------------------------------------


ENDLESS = [
    ("identity: {approval_ttl: -900}", "identity.approval_ttl"),
    ("sla: {warn_before: -60}", "sla.warn_before"),
    ("csat: {delay: -0.5}", "csat.delay"),
    ("csat: {vip_followup_delay: .inf}", "csat.vip_followup_delay"),
    ("escalation: {nudge_after: 99999999999d}", "escalation.nudge_after"),
    ("changes: {window: 1000000000000000s}", "changes.window"),
    ("csat: {delay: 5000000d}", "csat.delay"),
    ("identity: {approval_ttl: 1.0e+30}", "identity.approval_ttl"),
]


@pytest.mark.parametrize(("config", "key"), ENDLESS)
@pytest.mark.parametrize("command", [("check-config", "--no-db"), ("migrate",)])
def test_a_negative_or_endless_duration_is_refused_naming_the_key(
    tmp_path: Path, config: str, key: str, command: tuple[str, ...]
) -> None:
    env = _setup(tmp_path, config=config)
    run = first_for_real((config, key), ENDLESS)
    line = _one_line_naming(run(*command, cwd=tmp_path, env=env), key)
    assert "config.yaml" in line


def test_durations_in_seconds_and_units_up_to_years_are_accepted(tmp_path: Path) -> None:
    config = "csat: {delay: 0, vip_followup_delay: 36500d}\nidentity: {approval_ttl: 90.5}\n"
    result = call_bot("check-config", "--no-db", cwd=tmp_path, env=_setup(tmp_path, config=config))
    assert result.returncode == 0, result.stderr


NOT_HTTP = ["smba.trafficmanager.net/amer/", "ftp://smba.example.com/"]


@pytest.mark.parametrize("url", NOT_HTTP)
@pytest.mark.parametrize("command", [("check-config", "--no-db"), ("migrate",)])
def test_a_teams_service_url_that_is_not_http_is_refused_naming_the_key(
    tmp_path: Path, url: str, command: tuple[str, ...]
) -> None:
    """Found by a review: accepted as written, so a Teams message to a conversation or person
    the bot had no reference for yet (the first P1 notice, a manager's first DM) failed later,
    one retry after another."""
    env = _setup(tmp_path, config=f"teams: {{service_url: '{url}'}}\n")
    run = first_for_real(url, NOT_HTTP)
    line = _one_line_naming(run(*command, cwd=tmp_path, env=env), "teams.service_url")
    assert url in line


def test_check_config_warns_of_an_escalation_queue_no_channel_hears(tmp_path: Path) -> None:
    """The README's own example sent m365 to `messaging`, which has no `queues.messaging`: a
    technician learned only when escalating that nobody was told. A warning, not an error."""
    config = CONFIG + (
        "queues: {networking: {slack: C0NETWORK}, infrastructure: {}}\n"
        "escalation: {queues: {network: networking, m365: messaging, server: infrastructure}}\n"
    )
    result = call_bot("check-config", "--no-db", cwd=tmp_path, env=_setup(tmp_path, config=config))
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning:        escalation.queues: category m365 goes to queue messaging, which has no "
        "channel under queues.messaging, so its escalations notify nobody; add queues.messaging: "
        "{slack: <channel id>, teams: <conversation id>} or send m365 to a queue that has one",
        "warning:        escalation.queues: category server goes to queue infrastructure, which "
        "has no channel under queues.infrastructure, so its escalations notify nobody; add "
        "queues.infrastructure: {slack: <channel id>, teams: <conversation id>} or send server "
        "to a queue that has one",
    ]
    assert result.stdout.rstrip().endswith("config OK")


def _readme_yaml(after: str) -> str:
    """The first ```yaml block of README.md after the line starting with `after`."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("\n" + after)
    block = re.search(r"```yaml\n(.*?)```", text[start:], re.S)
    assert block, f"README.md has no yaml block after {after!r}"
    return block.group(1)


def test_the_readme_config_examples_pass_check_config(tmp_path: Path) -> None:
    """Found by a review: the README's diagnosis block (SPEC's own) has `source: hudu` with
    `space: IT`, and the config refused `space` with any source but confluence, so an operator
    pasting the documented example got exit 2."""
    config = _readme_yaml("### Config file") + _readme_yaml("## Diagnosis help")
    people = _readme_yaml("### Directory file")
    env = _setup(tmp_path, config=config, people=people)
    (tmp_path / "changes.ics").write_text(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nEND:VCALENDAR\r\n",
        encoding="utf-8",
    )
    env.update({"PSA_USERNAME": "svc-helpdesk", "PSA_PASSWORD": "pw", "KB_API_KEY": "key"})
    result = call_bot("check-config", "--no-db", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    fields = _fields(result.stdout)
    assert fields["diagnosis"].startswith("KB hudu at https://docs.example.com"), fields
    assert "kb.space is for confluence only" in fields["diagnosis"]
    assert fields["psa"].startswith("ServiceNow at https://acme.service-now.com"), fields
    assert "warning" not in fields, fields  # every queue it escalates to has a channel


# -- what an operator gets wrong in a .env file or a config (found by an outsider's trial:
# -- each was config OK / a silent Slack, or several lines that did not name the fix) ---------


ENV_FILE_MISTAKES = [
    # `docker run --env-file .env` (the Dockerfile's own example) keeps the quotes.
    (
        {"SLACK_BOT_TOKEN": '"xoxb-1-2"', "SLACK_SIGNING_SECRET": "s"},
        "SLACK_BOT_TOKEN",
        "quotes",
    ),
    ({"DATABASE_URL": "'sqlite+aiosqlite:///h.db'"}, "DATABASE_URL", "quotes"),
    (
        {"MicrosoftAppId": f'"{APP_ID}"', "MicrosoftAppPassword": "p"},
        "MicrosoftAppId",
        "quotes",
    ),
    # Only the bot token: Slack was off with "config OK" (a worker delivered nothing to it).
    ({"SLACK_BOT_TOKEN": "xoxb-1-2"}, "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN"),
    # The two Slack tokens swapped, or a user token: Slack refused them only when used.
    (
        {"SLACK_BOT_TOKEN": "xapp-1-A0-2", "SLACK_APP_TOKEN": "xoxb-1-2"},
        "SLACK_BOT_TOKEN",
        "belongs in SLACK_APP_TOKEN",
    ),
    (
        {"SLACK_BOT_TOKEN": "xoxb-1-2", "SLACK_APP_TOKEN": "xoxb-1-2"},
        "SLACK_APP_TOKEN",
        "belongs in SLACK_BOT_TOKEN",
    ),
    ({"SLACK_BOT_TOKEN": "xoxp-1-2", "SLACK_SIGNING_SECRET": "s"}, "SLACK_BOT_TOKEN", "user"),
    # A password of spaces passed "required" and then was no password at all.
    (
        {"MicrosoftAppId": APP_ID, "MicrosoftAppPassword": "  "},
        "MicrosoftAppPassword",
        "required",
    ),
]


@pytest.mark.parametrize(("env", "key", "says"), ENV_FILE_MISTAKES)
@pytest.mark.parametrize("command", [("check-config", "--no-db"), ("migrate",)])
def test_an_env_file_mistake_is_one_line_naming_the_variable(
    tmp_path: Path, env: dict[str, str], key: str, says: str, command: tuple[str, ...]
) -> None:
    run = first_for_real((env, key, says), ENV_FILE_MISTAKES)
    line = _one_line_naming(run(*command, cwd=tmp_path, env=env), key)
    assert says in line
    assert "xoxb-1-2" not in line and "xapp-1-A0-2" not in line


@pytest.mark.parametrize("command", [("check-config", "--no-db"), ("migrate",)])
def test_a_tab_in_the_config_or_the_directory_is_one_line_with_where(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    """PyYAML's text was five lines quoting an "<unicode string>"."""
    env = _setup(tmp_path, config="sla:\n\twarn_before: 10m\n")
    line = _one_line_naming(run_bot(*command, cwd=tmp_path, env=env), "HELPDESK_CONFIG")
    assert "config.yaml" in line and "line 2, column 1" in line and "tab" in line
    env = _setup(tmp_path, people="- email: ana@example.com\n\tname: Ana\n")
    line = _one_line_naming(run_bot(*command, cwd=tmp_path, env=env), "people.yaml")
    assert "line 2, column 1" in line and "tab" in line


def test_a_trailing_space_after_the_config_path_is_not_part_of_it(tmp_path: Path) -> None:
    """A .env line `HELPDESK_CONFIG=/config/helpdesk.yaml ` said `cannot read
    /config/helpdesk.yaml : No such file` of a file that is there; every other variable is
    stripped."""
    env = _setup(tmp_path)
    env["HELPDESK_CONFIG"] += " "
    result = call_bot("check-config", "--no-db", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert _fields(result.stdout)["config"] == str(tmp_path / "config.yaml")


@pytest.mark.parametrize("command", [("migrate",), ("worker",), ("serve",), ("check-config",)])
@pytest.mark.parametrize(("path", "says"), [("nodir/h.db", "does not exist"), (".", "a folder")])
def test_a_sqlite_file_in_a_missing_folder_is_named_for_every_command(
    tmp_path: Path, path: str, says: str, command: tuple[str, ...]
) -> None:
    """serve, worker and migrate said SQLite's `unable to open database file` on two lines
    (the second SQLAlchemy's "Background on this error at: ..."); check-config and report
    named the folder."""
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{path}", "PORT": "1"}
    # In-process, a serve or worker that did not stop would run in the test process.
    real = path == "nodir/h.db" or command in (("serve",), ("worker",))
    line = _one_line_naming(
        (run_bot if real else call_bot)(*command, cwd=tmp_path, env=env), "DATABASE_URL"
    )
    assert says in line and str(tmp_path) in line, line


def test_check_config_says_where_the_schema_stands_and_refuses_a_newer_one(
    tmp_path: Path,
) -> None:
    """check-config said `config OK` of a database stamped by a newer release, which serve,
    worker and migrate then refused (exit 2): the check an operator runs first (compose.yaml's
    step 3) did not find what stopped the start."""
    import sqlite3

    from storage.migrate import head_revisions

    head = head_revisions()[0]
    database = tmp_path / "helpdesk.db"
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{database}"}
    database.write_bytes(b"")
    fresh = call_bot("check-config", cwd=tmp_path, env=env)
    assert fresh.returncode == 0, fresh.stderr
    assert _fields(fresh.stdout)["schema"].startswith("none yet: `python -m bot migrate`")
    assert run_bot("migrate", cwd=tmp_path, env=env).returncode == 0
    current = call_bot("check-config", cwd=tmp_path, env=env)
    assert _fields(current.stdout)["schema"] == f"revision {head}, the newest", current.stdout
    with sqlite3.connect(database) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    newer = run_bot("check-config", cwd=tmp_path, env=env)
    assert newer.returncode == 2, newer.stdout
    assert "config OK" not in newer.stdout
    lines = newer.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("database error: "), lines
    assert "9999" in lines[0] and head in lines[0] and "newer" in lines[0]


def _closed_port() -> int:
    """A loopback port nothing listens on."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_psa_probe_that_cannot_connect_names_where_and_why(tmp_path: Path) -> None:
    """Found by an operator's trial: `check-config --probe` against a PSA it could not reach
    said only `psa: ConnectWise: cannot connect (ClientConnectorError)`: not where it tried
    (a typo in psa.url, a proxy) nor why (refused, a name that does not resolve). The same
    text was the log line of every failed PSA write."""
    port = _closed_port()
    config = CONFIG + f"psa: {{system: connectwise, url: 'http://127.0.0.1:{port}'}}\n"
    env = _setup(tmp_path, config=config) | {
        "PSA_CLIENT_ID": "cli-test-client-id",
        "PSA_COMPANY_ID": "msp",
        "PSA_PUBLIC_KEY": "cli-test-public-key",
        "PSA_PRIVATE_KEY": "cli-test-private-key-77",
    }
    result = run_bot("check-config", "--probe", cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    line = _one_line_naming(result, "psa")
    assert f"cannot connect to 127.0.0.1:{port} (Connection refused)" in line, line
    assert "cli-test-private-key-77" not in result.stdout + result.stderr


CW_ENV = {
    "PSA_CLIENT_ID": "cli-test-client-id",
    "PSA_COMPANY_ID": "msp",
    "PSA_PUBLIC_KEY": "cli-test-public-key",
    "PSA_PRIVATE_KEY": "cli-test-private-key-77",
}


def test_a_failing_psa_probe_still_prints_the_whole_report(tmp_path: Path) -> None:
    """Found by an operations trial: a PSA that could not be reached made `check-config
    --probe` exit with only its error, not the rest of the report (database, directory, KB):
    one run did not show everything that was wrong. The report is printed whole, the probe
    has its own FAILED line, and the exit code is still 2."""
    port = _closed_port()
    config = CONFIG + f"psa: {{system: connectwise, url: 'http://127.0.0.1:{port}'}}\n"
    env = _setup(tmp_path, config=config) | CW_ENV
    result = call_bot("check-config", "--probe", cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    fields = _fields(result.stdout)
    for key in ("database", "directory", "diagnosis", "psa", "incidents"):
        assert fields.get(key), (key, result.stdout)
    assert "2 people" in fields["directory"] and "KB off" in fields["diagnosis"]
    assert fields["psa probe"].startswith("FAILED: "), result.stdout
    assert f"127.0.0.1:{port}" in fields["psa probe"]
    assert "config OK" not in result.stdout
    line = _one_line_naming(result, "psa")
    assert "cannot connect" in line
    assert "cli-test-private-key-77" not in result.stdout + result.stderr


@pytest.fixture
def graph_fake() -> Iterator[FakeGraph]:
    """The Graph fake with the test people and their groups, on its own thread (the code under
    test runs in a subprocess, or in-process in an event loop of its own)."""
    fake = FakeGraph(threaded=True)
    fill_graph(fake)
    fake.add_group(VIP_GROUP_ID, name="VIPs")
    loop = asyncio.new_event_loop()
    loop.run_until_complete(fake.start())
    yield fake
    loop.run_until_complete(fake.stop())
    loop.close()


def _graph_setup(folder: Path, fake: FakeGraph, **overrides: str) -> dict[str, str]:
    directory, env = graph_directory(fake, **overrides)
    config = yaml.safe_dump({"directory": directory})
    return _setup(folder, config=config) | env


def test_probe_checks_the_configured_graph_groups_exist(
    tmp_path: Path, graph_fake: FakeGraph
) -> None:
    """Found by an operations trial: a `vip_group_id` the tenant does not have (copied from
    another tenant, a typo, the group's name) made nobody a VIP and nothing said so:
    checkMemberGroups just answers "in none". `--probe` now looks each configured group up
    (read-only GET) and names the setting of one that does not exist."""
    env = _graph_setup(tmp_path, graph_fake)
    good = run_bot("check-config", "--no-db", "--probe", cwd=tmp_path, env=env)
    assert good.returncode == 0, good.stdout + good.stderr
    probe = _fields(good.stdout)["directory probe"]
    assert "vip_group_id VIPs" in probe and f"technician_group_id {TECH_GROUP_ID}" in probe
    asked = graph_fake.graph_calls()
    assert asked and all(call.method == "GET" for call in asked)  # read-only
    assert {call.raw_path for call in asked} == {
        f"/v1.0/groups/{VIP_GROUP_ID}",
        f"/v1.0/groups/{TECH_GROUP_ID}",
    }

    missing = "0b6c1f7e-0000-4000-8000-0000000dead0"
    for vip in (missing, "VIPs"):  # one the tenant lacks; a name pasted for the id
        env = _graph_setup(tmp_path, graph_fake, vip_group_id=vip)
        bad = call_bot("check-config", "--no-db", "--probe", cwd=tmp_path, env=env)
        line = _one_line_naming(bad, "directory.graph.vip_group_id")
        assert vip in line and "VIP" in line and "technician_group_id" not in line
        assert _fields(bad.stdout)["directory probe"].startswith("FAILED: ")
        assert GRAPH_SECRET not in bad.stdout + bad.stderr
    # Without --probe Graph is not contacted (a directory that is down never stops start-up).
    before = len(graph_fake.recorded)
    quiet = call_bot("check-config", "--no-db", cwd=tmp_path, env=env)
    assert quiet.returncode == 0, quiet.stderr
    assert len(graph_fake.recorded) == before


def test_every_probe_runs_and_each_failure_is_its_own_line(
    tmp_path: Path, graph_fake: FakeGraph
) -> None:
    """A PSA that cannot be reached and a Graph group that does not exist: one run names both."""
    port = _closed_port()
    directory, graph_env = graph_directory(graph_fake, technician_group_id=str(uuid.uuid4()))
    config = yaml.safe_dump(
        {
            "directory": directory,
            "psa": {"system": "connectwise", "url": f"http://127.0.0.1:{port}"},
        }
    )
    env = _setup(tmp_path, config=config) | graph_env | CW_ENV
    result = call_bot("check-config", "--no-db", "--probe", cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    fields = _fields(result.stdout)
    assert fields["psa probe"].startswith("FAILED: ")
    assert fields["directory probe"].startswith("FAILED: ")
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 2 and all(e.startswith("config error: ") for e in errors), errors
    assert "cannot connect" in errors[0] and "directory.graph.technician_group_id" in errors[1]


SLA_CONFIG = """\
directory: {source: file, path: people.yaml}
sla:
  default_tier: bronze
  warn_before: 30m
  tiers:
    bronze: {P1: {respond: 1h, resolve: 8h}, P2: {respond: 4h, resolve: 2d},
             P3: {respond: 1d, resolve: 5d}, P4: {respond: 2d, resolve: 10d}}
    platinum: {P1: {respond: 10m, resolve: 1h}, P2: {respond: 30m, resolve: 4h},
               P3: {respond: 2h, resolve: 1d}, P4: {respond: 4h, resolve: 2d}}
  clients: {Acme: platinum, globex: bronze}
changes:
  entries:
    - {title: Firewall upgrade, start: "2026-12-15T22:00:00Z", clients: [acme]}
"""


def test_check_config_shows_the_sla_tiers_and_client_map_and_counts_in_words(
    tmp_path: Path,
) -> None:
    """Found by an operations trial: an MSP could not see the SLA tiers and the client -> tier
    map it had configured (a client mapped to the wrong tier is the wrong respond-by on every
    card), and the report said `1 technicians` / `1 people`."""
    one = "- {email: bo@example.com, name: Bo Chen, slack_id: U0BO, technician: true}\n"
    env = _setup(tmp_path, config=SLA_CONFIG, people=one)
    result = call_bot("check-config", "--no-db", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    fields = _fields(result.stdout)
    assert fields["sla tiers"] == (
        "bronze (default) P1 1h/8h P2 4h/2d P3 1d/5d P4 2d/10d; "
        "platinum P1 10m/1h P2 30m/4h P3 2h/1d P4 4h/2d "
        "(respond/resolve; warned 30m before each target)"
    ), result.stdout
    assert fields["sla clients"] == (
        "Acme -> platinum, globex -> bronze; other clients get bronze"
    ), result.stdout
    assert "1 person, 1 technician, 0 VIPs" in fields["directory"], fields["directory"]
    assert "1 change in the config" in fields["diagnosis"], fields["diagnosis"]
    assert "(s)" not in result.stdout


def test_the_listening_line_writes_an_ipv6_host_in_brackets() -> None:
    """`HOST=::1` was logged as `http://::1:3982`, an address no browser takes."""
    from bot.__main__ import listening_url

    assert listening_url("::1", 3982) == "http://[::1]:3982"
    assert listening_url("0.0.0.0", 3978) == "http://0.0.0.0:3978"
    assert listening_url("localhost", 80) == "http://localhost:80"


@pytest.mark.parametrize("url", ["sqlite:///helpdesk.db", f"mysql://u:{DB_PASSWORD}@db/d"])
def test_a_refused_driver_shows_the_forms_to_use_whole(tmp_path: Path, url: str) -> None:
    """The message teaches the forms to write, `postgresql+asyncpg://USER:PASSWORD@HOST...`,
    and the masking of credentials in URLs made it `postgresql+asyncpg://[redacted]@HOST`."""
    run = first_for_real(url, ["sqlite:///helpdesk.db"])
    line = _one_line_naming(run("migrate", cwd=tmp_path, env={"DATABASE_URL": url}), "DATABASE_URL")
    assert line.endswith(
        "(use sqlite+aiosqlite:///FILE or postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DATABASE)"
    ), line


@pytest.mark.parametrize(
    ("args", "usage"),
    [
        (("migrate", "extra"), "usage: python -m bot migrate [-h]"),
        (("serve", "--bogus"), "usage: python -m bot serve [-h] [--no-scheduler]"),
        (("worker", "--metrics-port", "9102", "x"), "usage: python -m bot worker [-h]"),
        (("--bogus",), "usage: python -m bot [-h] command ..."),
    ],
)
def test_an_argument_a_command_does_not_take_shows_that_commands_usage(
    tmp_path: Path, args: tuple[str, ...], usage: str
) -> None:
    """Was the top-level `usage: python -m bot [-h] command ...` whatever the command."""
    result = run_bot(*args, cwd=tmp_path) if args[0] == "migrate" else call_bot(*args, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(usage), result.stderr
    assert lines[-1].endswith(f"error: unrecognized arguments: {args[-1]}"), result.stderr


def test_check_config_names_the_file_a_relative_sqlite_path_is(tmp_path: Path) -> None:
    """`sqlite+aiosqlite:///helpdesk.db` is read from the working directory: check-config run
    from another folder than the service said 'file does not exist yet' without saying where
    it looked."""
    result = run_bot("check-config", cwd=tmp_path, env={})
    assert result.returncode == 0, result.stderr
    database = _fields(result.stdout)["database"]
    assert database.startswith(f"sqlite+aiosqlite:///helpdesk.db = {tmp_path / 'helpdesk.db'} ")
    assert database.endswith("(file does not exist yet: created on first start)"), database
