"""GET /healthz, and start-up refusing bad settings with exit code 2."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tests.harness import AppHarness, view_submission
from tests.http.test_slack_intake import open_modal, states

ROOT = Path(__file__).resolve().parents[2]


async def test_healthz_ok(make_app):
    app = await make_app()
    response = await app.http.get(f"{app.url}/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok", "db": "ok"}


async def test_healthz_503_when_the_database_goes_away(pg_migrated: str, tmp_path: Path):
    """A database that disappears under a running app: 503, and the app keeps answering."""
    name = f"helpdesk_gone_{secrets.token_hex(3)}"
    admin = create_async_engine(pg_migrated, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(pg_migrated).set(database=name).render_as_string(hide_password=False)
    from storage import db
    from storage.migrate import upgrade

    engine = db.create_engine(url)
    await upgrade(engine)
    await engine.dispose()
    app = await AppHarness(tmp_path, {"DATABASE_URL": url}, None, None, scheduler=False).start()
    try:
        assert (await app.http.get(f"{app.url}/healthz")).status == 200
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        response = await app.http.get(f"{app.url}/healthz")
        assert response.status == 503
        assert (await response.json())["db"] != "ok"
    finally:
        await app.stop()
        await admin.dispose()


def _start(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "Microsoft", "PAGERDUTY", "OPSGENIE"))
    }
    full |= {"PORT": "1", "PYTHONPATH": str(ROOT)} | env
    return subprocess.run(
        [sys.executable, "-m", "bot", "serve"],
        env=full,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("files", "env", "expected"),
    [
        ({"c.yaml": "csat: {delay: soon}"}, {"HELPDESK_CONFIG": "c.yaml"}, "csat.delay"),
        ({"c.yaml": "bogus: 1"}, {"HELPDESK_CONFIG": "c.yaml"}, "bogus"),
        (
            {"c.yaml": "directory: {source: file, path: people.yaml}", "people.yaml": "- name: x"},
            {"HELPDESK_CONFIG": "c.yaml"},
            "people.yaml",
        ),
        ({}, {"DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:1/none"}, "DATABASE_URL"),
        ({}, {"PORT": "seventy"}, "PORT"),
    ],
)
def test_bad_settings_exit_2_naming_the_problem(
    tmp_path: Path, files: dict[str, str], env: dict[str, str], expected: str
) -> None:
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'h.db'}", **env}
    if "HELPDESK_CONFIG" in env:
        env["HELPDESK_CONFIG"] = str(tmp_path / env["HELPDESK_CONFIG"])
    result = _start(env, tmp_path)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"MicrosoftAppId": "app-guid", "MicrosoftAppType": "UserAssignedMSI"},
            "MicrosoftAppTenantId: required when MicrosoftAppType is UserAssignedMSI",
        ),
        (
            {"MicrosoftAppType": "SingleTenant", "MicrosoftAppTenantId": "tenant-guid"},
            "MicrosoftAppId: required when MicrosoftAppType is SingleTenant",
        ),
        (
            {"MicrosoftAppType": "UserAssignedMSI", "MicrosoftAppTenantId": "tenant-guid"},
            "MicrosoftAppId: required when MicrosoftAppType is UserAssignedMSI",
        ),
    ],
    ids=["msi-without-tenant", "single-tenant-without-id", "msi-without-id"],
)
@pytest.mark.parametrize("command", ["serve", "worker", "check-config"])
def test_an_app_type_missing_what_it_needs_stops_every_command_naming_the_variable(
    tmp_path: Path, env: dict[str, str], expected: str, command: str
) -> None:
    """botbuilder needs an app id for SingleTenant and UserAssignedMSI, and a tenant for
    both: without them `serve` and `worker` died with its traceback (exit 1) once the
    database was up, and `check-config` said OK."""
    full = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "Microsoft", "PAGERDUTY", "OPSGENIE"))
    }
    full |= {"PORT": "1", "PYTHONPATH": str(ROOT), "MicrosoftAppPassword": "secret"} | env
    full["DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'h.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "bot", *command.split()],
        env=full,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [f"config error: {expected}"], result.stderr
    assert not (tmp_path / "h.db").exists()  # stopped before anything was touched


def test_a_port_already_taken_stops_start_up_naming_port(tmp_path: Path) -> None:
    """Found by a review: a taken PORT (or a HOST that is not this machine's) was a traceback
    with exit 1, after the log had said "listening on" and the services had started."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'h.db'}", "PORT": str(port)}
        result = _start(env, tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert "listening on" not in result.stderr
    assert lines[-1].startswith("config error: PORT: ") and str(port) in lines[-1], lines
    assert "already in use" in lines[-1]


def test_a_host_that_cannot_be_listened_on_stops_start_up_naming_host(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'h.db'}", "HOST": "nosuch.invalid"}
    result = _start(env, tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert lines[-1].startswith("config error: HOST: ") and "nosuch.invalid" in lines[-1], lines


async def test_start_up_says_each_directory_and_queue_line_once(tmp_path: Path, spawn) -> None:
    """`directory: none configured ...` was logged twice (the pre-flight check built the
    directory, then the app did); an escalation queue with no channel was not said at all."""
    from tests.http.processes import free_port

    config = tmp_path / "c.yaml"
    config.write_text("escalation: {queues: {m365: messaging}}\n")
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'h.db'}",
        "HELPDESK_CONFIG": str(config),
        "PORT": str(free_port()),
    }
    server = await spawn("serve", env=env)
    await server.wait_for_line("listening on")
    said = "\n".join(server.lines)
    assert said.count("directory: none configured") == 1, said
    assert said.count("category m365 goes to queue messaging, which has no channel") == 1, said


async def test_a_clean_stop_is_said_in_the_log(tmp_path: Path, spawn) -> None:
    """`serve` and `worker` stopped by SIGTERM said nothing: a clean stop and a crash looked
    alike in the log. Each says it is stopping and that it stopped, and exits 0."""
    from tests.http.processes import free_port

    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'h.db'}",
        "PORT": str(free_port()),
    }
    server = await spawn("serve", env=env)
    await server.wait_for_line("listening on")
    worker = await spawn("worker", env=env)
    await worker.wait_for_line("outbox worker running")
    for proc, stopping, stopped in (
        (server, "stopping: finishing the requests in flight", "stopped"),
        (worker, "stopping (SIGTERM): finishing the deliveries in hand", "outbox worker stopped"),
    ):
        await proc.stop(signal.SIGTERM)
        assert proc.process.returncode == 0, proc.lines[-20:]
        said = [line for line in proc.lines if "stopp" in line]
        assert any(stopping in line for line in said), proc.lines[-20:]
        assert any(line.rstrip().endswith(stopped) for line in said), proc.lines[-20:]


async def _hold_the_connection(app: AppHarness, seconds: float, held: asyncio.Event) -> None:
    """Keep SQLite's one pooled connection checked out, as a coroutine does whose event loop
    is starved on a loaded box (seen holding it for over 3 s)."""
    async with app.services.sessions() as session:
        await session.execute(text("SELECT 1"))
        held.set()
        await asyncio.sleep(seconds)


async def test_a_busy_sqlite_connection_is_not_an_outage(make_app, db_url: str, slack_api):
    """SQLite's engine has one connection. While it is busy longer than the health ping's 3 s,
    the ping timed out and /healthz said 503, and a request past its 2 s answer budget marked
    the database down: `/ticket new` was then refused ("cannot save tickets right now") though
    the file was fine. The file is now pinged on a connection of its own, and a timeout alone
    does not mark SQLite down."""
    if not db_url.startswith("sqlite"):
        pytest.skip("SQLite's single pooled connection")
    app = await make_app(slack=slack_api)
    held = asyncio.Event()
    holder = asyncio.ensure_future(_hold_the_connection(app, 4.5, held))
    await held.wait()
    health = await app.http.get(f"{app.url}/healthz")
    assert health.status == 200 and await health.json() == {"status": "ok", "db": "ok"}
    # A submission stuck behind the busy connection past its answer budget: told to try again,
    # nothing saved (unchanged); but the database is not taken for down because of it.
    view = await open_modal(app, slack_api)
    late = await app.interactive(view_submission(view, states(), view_id="V-LATE"))
    assert "cannot save tickets right now" in await late.text()
    assert app.services.database is not None and app.services.database.available
    await holder
    opened = len(slack_api.views_opened())
    response = await app.slash("new Printer jams")
    assert "cannot save tickets" not in await response.text()
    await slack_api.wait_for_method("views.open", count=opened + 1)


async def test_a_deleted_sqlite_file_is_an_outage(make_app, db_url: str):
    """The open connection still answers `SELECT 1` after its file is deleted (the inode lives
    on, and everything written into it is lost at the next start): the file is what is pinged."""
    if not db_url.startswith("sqlite"):
        pytest.skip("an SQLite file")
    app = await make_app()
    path = Path(make_url(db_url).database or "")
    assert await asyncio.to_thread(path.is_file)
    await asyncio.to_thread(path.unlink)
    health = await app.http.get(f"{app.url}/healthz")
    assert health.status == 503
    assert await health.json() == {"status": "degraded", "db": "unavailable"}


async def test_a_deleted_sqlite_file_named_by_a_file_uri_is_an_outage_and_stays_deleted(
    make_app, db_url: str, slack_api
):
    """The same with DATABASE_URL naming the file as a `file:` URI (`?uri=true`): neither the
    health check, nor the checkpoints, nor the look a change takes before its work (its reader
    of the file) creates the file again. An empty file there answered the ping, and the app
    went on writing into the deleted one."""
    if not db_url.startswith("sqlite"):
        pytest.skip("an SQLite file")
    path = Path(make_url(db_url).database or "")
    app = await make_app(
        env={"DATABASE_URL": f"sqlite+aiosqlite:///file:{path}?uri=true"}, slack=slack_api
    )
    view = await open_modal(app, slack_api)
    await asyncio.to_thread(path.unlink)
    # A change: its look before the work reads the file through a reader of its own.
    response = await app.interactive(view_submission(view, states(), view_id="V-GONE"))
    assert response.status == 200
    assert not await asyncio.to_thread(path.exists)
    health = await app.http.get(f"{app.url}/healthz")
    assert health.status == 503
    assert await health.json() == {"status": "degraded", "db": "unavailable"}
    assert not await asyncio.to_thread(path.exists)
