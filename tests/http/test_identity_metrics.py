"""`helpdesk_identity_checks_total` counts what was recorded: an identity outcome was counted
inside its transaction, so one whose COMMIT failed (a fail-over at that moment, a commit-time
constraint) counted `approved` while the check stayed pending and the manager was told it
was not saved."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fakes.slack_api import FakeSlack
from tests.harness import only_ticket
from tests.http.test_identity_slack import click, manager_dm, new_ticket, start
from tests.http.test_metrics import sample, scrape


@asynccontextmanager
async def commits_of_approvals_fail(engine: AsyncEngine) -> AsyncIterator[None]:
    """PostgreSQL refuses, at COMMIT, a transaction that records an approval (a deferred
    constraint trigger): what a database lost at that moment looks like to the bot."""
    async with engine.begin() as conn:
        await conn.execute(text(
            "CREATE FUNCTION refuse_approval() RETURNS trigger AS $$ BEGIN "
            "IF NEW.kind = 'identity.approved' THEN RAISE EXCEPTION 'commit refused'; END IF; "
            "RETURN NULL; END $$ LANGUAGE plpgsql"
        ))  # fmt: skip
        await conn.execute(text(
            "CREATE CONSTRAINT TRIGGER refuse_approval AFTER INSERT ON ticket_events "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_approval()"
        ))  # fmt: skip
    try:
        yield
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("DROP TRIGGER refuse_approval ON ticket_events"))
            await conn.execute(text("DROP FUNCTION refuse_approval()"))


async def test_an_answer_whose_commit_failed_is_not_counted(
    make_app, slack_api: FakeSlack, db_url: str
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite checks nothing at COMMIT that a test could make refuse it")
    app = await start(make_app, slack_api)
    await new_ticket(app, slack_api)
    assert (await app.slash("verify HD-1")).status == 200
    dm = await manager_dm(slack_api)
    assert sample(await scrape(app), "helpdesk_identity_checks_total", outcome="requested") == 1

    async with commits_of_approvals_fail(app.services.engine):
        refused = await click(app, slack_api, dm, "Approve", "U0BO")
    assert "confirmed the identity" not in refused
    assert (await only_ticket(app)).identity_state == "pending"
    counted = await scrape(app)
    assert sample(counted, "helpdesk_identity_checks_total", outcome="approved") == 0, counted

    # Once the database takes it, the answer counts, once.
    approved = await click(app, slack_api, dm, "Approve", "U0BO")
    assert "confirmed the identity for HD-1" in approved
    assert (await only_ticket(app)).identity_state == "confirmed"
    counted = await scrape(app)
    assert sample(counted, "helpdesk_identity_checks_total", outcome="approved") == 1
    assert sample(counted, "helpdesk_identity_checks_total", outcome="requested") == 1
