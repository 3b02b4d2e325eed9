"""Shared fixtures: a database per test (SQLite and PostgreSQL), the fakes, the running app."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from storage import db
from storage.migrate import upgrade
from storage.models import Base
from tests import log_audit
from tests.fakes.slack_api import FakeSlack
from tests.harness import BOT_TOKEN, SIGNING_SECRET, AppHarness

_AUDIT = log_audit.Audit()


def pytest_configure(config: pytest.Config) -> None:
    _AUDIT.install()


# With pytest-xdist each worker audits its own logs and hands what it found to the controller,
# which fails the run; without it the one process does both.
_WORKER_AUDITS: list[dict[str, Any]] = []


def _audit_summary() -> dict[str, Any]:
    leaks = _AUDIT.leaks()
    return {
        "leaks": leaks,
        # Hashes, not the secrets: only how many different ones were checked is reported.
        "secrets": sorted(
            hashlib.sha256(secret.encode()).hexdigest()
            for secret in (log_audit.SEEN | log_audit.ISSUED if log_audit.SEEN else ())
        ),
        "lines": _AUDIT.lines(),
    }


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    summary = getattr(node, "workeroutput", {}).get("log_audit")
    if summary is not None:
        _WORKER_AUDITS.append(summary)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when any log line carried a token or secret a test gave the app."""
    mine = _audit_summary()
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller reports
        workeroutput["log_audit"] = mine
        return
    audits = [mine, *_WORKER_AUDITS]
    leaks = [leak for audit in audits for leak in audit["leaks"]]
    secrets_checked = len({digest for audit in audits for digest in audit["secrets"]})
    lines = sum(audit["lines"] for audit in audits)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if leaks:
        if reporter is not None:
            reporter.write_line("SECRETS IN LOGS:", red=True)
            for leak in leaks:
                reporter.write_line("  " + leak, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif reporter is not None and secrets_checked:
        reporter.write_line(
            f"log audit: {secrets_checked} secrets checked against {lines} log lines "
            f"({len(audits)} process{'es' if len(audits) > 1 else ''}), none found"
        )


PG_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgresql"]


def _run(factory: Callable[[], Awaitable[Any]]) -> Any:
    """Run a coroutine to completion from sync code, even inside a running event loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()  # type: ignore[arg-type]


async def _pg_reachable() -> bool:
    engine = db.create_engine(PG_URL)
    try:
        await asyncio.wait_for(db.ping(engine), timeout=5)
        return True
    except Exception:
        return False
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file migrated from empty by the Alembic history; tests copy it."""
    path = tmp_path_factory.mktemp("template") / "template.db"

    async def build() -> None:
        engine = db.create_engine(f"sqlite+aiosqlite:///{path}")
        await upgrade(engine)
        await engine.dispose()

    _run(build)
    return path


@pytest.fixture(scope="session")
def pg_migrated() -> Iterator[str]:
    """A PostgreSQL database of this test run's own, built by the Alembic history from empty.

    Made next to TEST_POSTGRES_URL's database and dropped afterwards, so concurrent runs on
    one server never truncate each other's tables.
    """
    name = f"helpdesk_test_{secrets.token_hex(4)}"
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)

    async def admin(sql: str) -> None:
        engine = create_async_engine(PG_URL, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text(sql))
        finally:
            await engine.dispose()

    async def build() -> bool:
        if not await _pg_reachable():
            return False
        await admin(f'CREATE DATABASE "{name}"')
        engine = db.create_engine(url)
        await upgrade(engine)
        await engine.dispose()
        return True

    if not _run(build):
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {PG_URL} (CI must test it)")
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL}")
    yield url
    _run(lambda: admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of this test's own (nothing migrated), on each backend."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'helpdesk.db'}"
        return
    base = request.getfixturevalue("pg_migrated")
    name = f"helpdesk_upgrade_{secrets.token_hex(4)}"
    admin = create_async_engine(base, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(base).set(database=name).render_as_string(hide_password=False)
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


_RESTART_SEQUENCES = (
    "SELECT setval(c.oid, 1, false) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relkind = 'S' AND n.nspname = 'public'"
)


@pytest.fixture(params=BACKENDS)
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A clean, migrated database for one test, on each backend."""
    if request.param == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        path = tmp_path / "helpdesk.db"
        shutil.copy(template, path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    url = request.getfixturevalue("pg_migrated")
    engine = db.create_engine(url)
    # DELETE, children first, and every sequence back to 1: what TRUNCATE ... RESTART IDENTITY
    # did, at a fifth of its time on the few rows a test leaves (TRUNCATE makes new files for
    # every table; it cost about 0.4 s per test, a minute and more of CI).
    async with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            await conn.execute(text(f"DELETE FROM {table.name}"))
        await conn.execute(text(_RESTART_SEQUENCES))
    await engine.dispose()
    yield url


@pytest.fixture
async def slack_api() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    await fake.start()
    yield fake
    await fake.stop()


AppFactory = Callable[..., Awaitable[AppHarness]]


@pytest.fixture
async def make_app(db_url: str, tmp_path: Path) -> AsyncIterator[AppFactory]:
    """Start the real app: `await make_app(config=..., people=..., env=..., slack=fake)`."""
    started: list[AppHarness] = []

    async def factory(
        *,
        config: dict[str, Any] | None = None,
        people: list[dict[str, Any]] | None = None,
        env: dict[str, str] | None = None,
        slack: FakeSlack | None = None,
        scheduler: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> AppHarness:
        full_env = {"DATABASE_URL": db_url, "HOST": "127.0.0.1", "PORT": "3978"}
        if slack is not None:
            full_env |= {
                "SLACK_BOT_TOKEN": BOT_TOKEN,
                "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                "SLACK_API_URL": f"{slack.url}/api/",
            }
        full_env |= env or {}
        harness = AppHarness(tmp_path, full_env, config, people, scheduler=scheduler, clock=clock)
        await harness.start()
        started.append(harness)
        return harness

    yield factory
    for harness in started:
        await harness.stop()


@pytest.fixture
def database_url(db_url: str) -> str:
    return db_url
