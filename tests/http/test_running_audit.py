"""SPEC "Running", "Environment variables", "Config file" and "Directory file": what an operator
sees when starting the bot, checked on real processes and real directory servers."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.directory_people import ANA, TOM
from tests.fakes.botframework import FakeConnector
from tests.fakes.slack_api import FakeSlack
from tests.harness import BOT_TOKEN, only_ticket, wait_until
from tests.http.directory_support import (
    UNREACHABLE,
    Source,
    identity_rows,
)
from tests.http.processes import Proc, Spawn, free_port, healthy
from tests.http.test_directory_slack import command
from tests.http.test_directory_slack import new_ticket as slack_ticket
from tests.http.test_directory_slack import start as slack_start
from tests.http.test_directory_teams import chat_of, say
from tests.http.test_directory_teams import new_ticket as teams_ticket
from tests.http.test_directory_teams import start as teams_start
from tests.http.test_health_and_startup import _start as start_serve

ROOT = Path(__file__).resolve().parents[2]

# The key that lists the technicians, per directory source.
TECHNICIAN_KEY = {
    "graph": "directory.graph.technician_group_id",
    "ldap": "directory.ldap.technician_group_dn",
}

on_sqlite = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


async def test_no_technician_group_warns_naming_the_key_of_that_source(
    make_app: Any, source: Source, caplog: Any
) -> None:
    """SPEC: with `graph` or `ldap` and no technician group configured, everyone is a
    technician, with the start-up warning. It said to "set `technician: true` on your
    technicians", a key only the directory file has."""
    caplog.set_level(logging.WARNING)
    config = source.config()
    del config["directory"][source.name][TECHNICIAN_KEY[source.name].rsplit(".", 1)[1]]
    await make_app(config=config, env=source.env)
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "everyone counts as one" in r.getMessage()
    ]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    assert TECHNICIAN_KEY[source.name] in warnings[0], warnings[0]
    assert "technician: true" not in warnings[0], warnings[0]


async def test_with_no_settings_it_serves_on_helpdesk_db_in_the_working_directory(
    tmp_path: Path,
) -> None:
    """SPEC: `python -m bot` with no settings at all starts on `helpdesk.db` in the working
    directory (migrated by `serve`), Teams in Emulator mode (a loopback caller is served without
    a token), Slack disabled with one log line naming the variables that enable it."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    port = free_port()  # the one setting: 3978 may be taken on a test box
    env |= {"PYTHONPATH": str(ROOT), "PORT": str(port)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    proc = Proc(process, "python -m bot")
    try:
        await proc.wait_for_line(f"listening on http://127.0.0.1:{port}")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 200
                assert await response.json() == {"status": "ok", "db": "ok"}
            # Emulator mode: no Authorization header, and still not refused.
            activity = {
                "type": "conversationUpdate",
                "id": "a1",
                "channelId": "emulator",
                "serviceUrl": "http://127.0.0.1:1",
                "from": {"id": "29:1ana"},
                "recipient": {"id": "28:bot"},
                "conversation": {"id": "c1"},
            }
            async with http.post(f"http://127.0.0.1:{port}/api/messages", json=activity) as answer:
                assert answer.status in (200, 201), answer.status
            async with http.post(f"http://127.0.0.1:{port}/slack/events", data=b"") as slack:
                assert slack.status == 404
    finally:
        await proc.stop()
    assert proc.process.returncode == 0, proc.lines[-20:]
    disabled = [line for line in proc.lines if "Slack is disabled" in line]
    assert len(disabled) == 1, proc.lines
    for variable in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN"):
        assert variable in disabled[0], disabled[0]
    assert not any(" ERROR " in line or "Traceback" in line for line in proc.lines), proc.lines
    with sqlite3.connect(tmp_path / "helpdesk.db") as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall()
        assert conn.execute("SELECT count(*) FROM tickets").fetchone() == (0,)


def hang(source: Source) -> None:
    """The directory stops answering without refusing: slapd frozen (the bot's connection
    stays open, new ones are accepted by the kernel), Graph's answers held for a minute."""
    if source.slapd is not None:
        assert source.slapd._process is not None
        os.kill(source.slapd._process.pid, signal.SIGSTOP)
    if source.graph is not None:
        source.graph.set_delay("/v1.0/*", 60)


def thaw(source: Source) -> None:
    if source.slapd is not None and source.slapd._process is not None:
        os.kill(source.slapd._process.pid, signal.SIGCONT)
    if source.graph is not None:
        source.graph.set_delay("/v1.0/*", 0)


# A directory that hangs is the directory's matter, not the database's: one backend (each of
# these waits out the look-up's limit, about 12 s).
@on_sqlite
async def test_a_directory_that_hangs_is_told_within_30_s_and_verify_works_once_it_answers(
    make_app: Any, slack_api: FakeSlack, source: Source
) -> None:
    """SPEC: when the directory cannot answer, the technician is told within 30 s that it
    could not be reached and the manager was not asked; `verify` works once it is back. The
    neighbouring tests stop slapd (refused at once) or have Graph answer 503; here the
    server hangs, as a wedged or firewalled domain controller does."""
    try:
        app = await slack_start(make_app, slack_api, source, cache_ttl="0s")
        await slack_ticket(app, slack_api, requester=ANA.slack)
        hang(source)
        started = time.monotonic()
        answer = await command(app, slack_api, "verify HD-1")
        assert time.monotonic() - started < 30
        assert f"The directory ({source.label}) {UNREACHABLE}" in answer, answer
        assert "manager was not asked" in answer
        assert (await only_ticket(app)).identity_state == "not_required"
        assert await identity_rows(app) == (0, [])
        thaw(source)
        answer = await command(app, slack_api, "verify HD-1")
        assert "Bo Boss" in answer, answer
        assert (await only_ticket(app)).identity_state == "pending"
    finally:
        thaw(source)


GRAPH_OK = "tenant_id: t1, client_id: c1"
LDAP_OK = "url: 'ldaps://dc1.example.com', base_dn: 'dc=example,dc=com'"
BAD_DIRECTORIES = [
    ("source: nosuch", {}, "directory.source"),
    (f"source: graph, graph: {{{GRAPH_OK}, base_url: 'ftp://graph.example'}}", {}, "base_url"),
    (f"source: graph, graph: {{{GRAPH_OK}, authority_host: 'http://login.example'}}", {},
     "directory.graph.authority_host"),
    (f"source: graph, graph: {{{GRAPH_OK}, base_url: 'https://graph.microsoft.com/v1.0/'}}", {},
     "directory.graph.base_url"),
    (f"source: graph, graph: {{{GRAPH_OK}, authority_host: 'https://login.microsoftonline.com/t1'}}",
     {}, "directory.graph.authority_host"),
    ("source: graph, graph: {client_id: c1}", {}, "directory.graph.tenant_id"),
    ("source: graph, graph: {tenant_id: t1}", {}, "directory.graph.client_id"),
    (f"source: graph, graph: {{{GRAPH_OK}}}", {"MicrosoftAppPassword": ""},
     "GRAPH_CLIENT_SECRET"),
    (f"source: graph, graph: {{{GRAPH_OK}, cache_ttl: soon}}", {}, "directory.graph.cache_ttl"),
    (f"source: graph, graph: {{{GRAPH_OK}, tenant: t2}}", {}, "directory.graph.tenant"),
    ("source: ldap", {}, "directory.ldap"),
    ("source: ldap, ldap: {url: 'http://dc1.example.com', base_dn: 'dc=x'}", {},
     "directory.ldap.url"),
    ("source: ldap, ldap: {base_dn: 'dc=x'}", {}, "directory.ldap.url"),
    ("source: ldap, ldap: {url: 'ldaps://dc1.example.com'}", {}, "directory.ldap.base_dn"),
    (f"source: ldap, ldap: {{{LDAP_OK}, bind_dn: 'cn=bot,dc=example,dc=com'}}", {},
     "LDAP_BIND_PASSWORD"),
    (f"source: ldap, ldap: {{{LDAP_OK}, cache_ttl: -5m}}", {}, "directory.ldap.cache_ttl"),
]  # fmt: skip


@pytest.mark.parametrize(("directory", "env", "key"), BAD_DIRECTORIES)
def test_a_bad_directory_setting_stops_serve_with_exit_2_naming_the_key(
    tmp_path: Path, directory: str, env: dict[str, str], key: str
) -> None:
    """SPEC: a bad setting stops start-up with one message naming the key, exit code 2."""
    config = tmp_path / "helpdesk.yaml"
    config.write_text(f"directory: {{{directory}}}\n")
    result = start_serve(
        {
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'h.db'}",
            "HELPDESK_CONFIG": str(config),
            **env,
        },
        tmp_path,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("config error: ") and key in lines[0], lines[0]


TYPOS = [
    ("ticket_prefx: HD", "ticket_prefx", "ticket_prefix"),
    ("csat: {dealy: 1h}", "csat.dealy", "delay"),
    ("directory: {source: ldap, ldap: {url: 'ldaps://dc1', base: 'dc=x'}}", "directory.ldap.base",
     "base_dn"),
    ("queues: {security: {slak: C0SEC}}", "queues.security.slak", "slack"),
    ("sla: {tiers: {gold: {P1: {respond: 1h, reslove: 2h}}}}", "sla.tiers.gold.P1.reslove",
     "resolve"),
]  # fmt: skip


@pytest.mark.parametrize(("config", "key", "meant"), TYPOS)
def test_a_mistyped_config_key_is_named_as_unknown_with_the_keys_known_there(
    tmp_path: Path, config: str, key: str, meant: str
) -> None:
    """SPEC: an unknown key stops start-up with one message naming it and the problem. The
    problem read "Extra inputs are not permitted" (pydantic's words), not that the key is
    unknown, nor which keys are known at that place."""
    path = tmp_path / "helpdesk.yaml"
    path.write_text(config + "\n")
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'h.db'}", "HELPDESK_CONFIG": str(path)}
    result = start_serve(env, tmp_path)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert f"{key}: unknown key (known keys: " in line, line
    assert meant in line.split("known keys: ")[1], line


async def test_a_worker_never_takes_slack_or_teams_requests(
    tmp_path: Path, slack_api: FakeSlack, spawn: Spawn
) -> None:
    """SPEC: `python -m bot worker` runs only the scheduler and outbox. With Socket Mode
    configured it must not open a Slack connection of its own (Slack spreads envelopes over
    every open connection: those reaching a worker would be lost), nor listen on PORT."""
    port = free_port()
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'helpdesk.db'}",
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_APP_TOKEN": "xapp-1-A0APP-worker-test",
        "SLACK_API_URL": f"{slack_api.url}/api/",
        "PORT": str(port),
    }
    worker = await spawn("worker", env=env, name="worker")
    await worker.wait_for_line("outbox worker running")
    await asyncio.sleep(0.5)  # what it would do next, it would do at once
    assert slack_api.api_calls("apps.connections.open") == []
    async with aiohttp.ClientSession() as http:
        assert not await healthy(http, port)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


@pytest.mark.parametrize("source", ["ldap"], indirect=True)
@on_sqlite
async def test_teams_a_frozen_ldap_server_is_told_within_teams_15_s_and_verify_works_after(
    make_app: Any, connector: FakeConnector, source: Source
) -> None:
    """The same on Teams, whose HTTP answer carries the reply and must come within 15 s
    (`say` checks it): LDAP's look-up limit (12 s) is the longest wait a source has."""
    try:
        app = await teams_start(make_app, source, cache_ttl="0s")
        await teams_ticket(app, connector, ANA)
        await wait_until(lambda: len(connector.activities(chat_of(TOM))) >= 2, timeout=20)
        hang(source)
        answer = await say(app, connector, TOM, "verify HD-1")
        assert f"The directory (LDAP) {UNREACHABLE}" in answer, answer
        assert "manager was not asked" in answer
        assert (await only_ticket(app)).identity_state == "not_required"
        assert not connector.created_conversations()
        thaw(source)
        assert "Bo Boss" in await say(app, connector, TOM, "verify HD-1")
        assert (await only_ticket(app)).identity_state == "pending"
    finally:
        thaw(source)
