"""`report` on one client, matched in any case, whatever the PostgreSQL database's locale.

A database created with `LC_CTYPE C` (`initdb --locale=C`, a common choice for its sorting
speed) has a lower() that folds ASCII letters only: `lower('ÄRZTE NORD')` is `Ärzte nord`.
The report compared that with Python's `ärzte nord`, so on such a server a client whose name
has a non-ASCII capital was never found, not even typed exactly as stored, while SQLite (whose
lower() is ASCII-only too, and which therefore compares in Python) found it."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from storage import db
from storage.migrate import upgrade
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness
from tests.http.diagnosis_support import ERROR_ACME, ERROR_GLOBEX, ERROR_NEW, open_ticket
from tests.http.diagnosis_support import PEOPLE as DIAGNOSIS_PEOPLE
from tests.http.test_report import cli, slack_facts


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A migrated database of this test's own; on PostgreSQL one whose LC_CTYPE is C."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'helpdesk.db'}"
        engine = db.create_engine(url)
        await upgrade(engine)
        await engine.dispose()
        yield url
        return
    base = request.getfixturevalue("pg_migrated")  # skips when PostgreSQL is not there
    name = f"helpdesk_c_{secrets.token_hex(4)}"
    admin = create_async_engine(base, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(
            text(
                f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' "
                "LC_COLLATE 'C' LC_CTYPE 'C'"
            )
        )
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    engine = db.create_engine(url)
    await upgrade(engine)
    await engine.dispose()
    yield url
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


async def test_a_client_with_a_non_ascii_capital_is_found_in_any_case(
    make_app, slack_api: FakeSlack, db_url: str, tmp_path: Path
) -> None:
    app: AppHarness = await make_app(slack=slack_api, people=DIAGNOSIS_PEOPLE)
    numbers = [
        (await open_ticket(app, slack_api, error=error, client=client))[0]
        for error, client in (
            (ERROR_ACME, "Ärzte Nord"),
            (ERROR_GLOBEX, "ÄRZTE NORD"),
            (ERROR_NEW, "ärzte nord "),
            (ERROR_ACME, "Acme"),
        )
    ]
    await app.slash(f"time {numbers[0]} 45m checked the update log")
    pattern = f"0x80070005 (3 tickets: {', '.join(numbers[:3])})"
    for typed in ("ÄRZTE NORD", "ärzte nord", "Ärzte Nord"):
        facts = slack_facts(await (await app.slash(f"report {typed}")).json())
        assert facts["Opened"] == "3", (typed, facts)
        assert facts["Time logged"].startswith("45m ("), facts
        assert facts["Top patterns"] == pattern, facts
    await slack_api.wait_for_method("files.completeUploadExternal", count=3, timeout=30)

    out = tmp_path / "aerzte.csv"
    code, lines, errors = await cli(tmp_path, db_url, "--client", "ÄRZTE NORD", "--csv", str(out))
    assert (code, errors) == (0, []), errors
    assert "Opened: 3" in lines
    assert len(out.read_text(encoding="utf-8").splitlines()) == 4  # the header and three rows
