"""A Socket Mode envelope delivered again while its first delivery is still committing.

Found by the Socket Mode chaos soak (`python -m bench.chaos --transport socket`, seed 4 on
PostgreSQL): a `serve` process stalled while committing an intake, so its envelope went
unacknowledged past 3 s and Slack delivered it again to another connection. There the
redelivery's claim of the delivery id waited for the key the first delivery's transaction
held, its answer budget ran out, and it answered "cannot save tickets right now ... Nothing
was saved: please try again"; the first delivery then committed, and the ticket the person
had been told to submit again existed (SPEC: "a ticket the person was told to retry is never
created later"). The redelivery now says it could not confirm whether this was saved.

The first delivery's COMMIT is held here by a deferred constraint trigger on `tickets` that
waits for an advisory lock the test holds, as the stalled process's commit was held.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.fakes.slack_api import FakeSlack
from tests.fakes.socket_mode import FakeSocketMode, interactive_envelope
from tests.harness import view_submission, wait_until
from tests.http.test_slack_socket_mode import (
    intake_values,
    open_intake,
    socket_server,
    start_socket_app,
    ticket_count,
)

__all__ = ["socket_server"]  # the fixture, used by name

LOCK = 7_407_407
NOTHING_SAVED = "Nothing was saved"
IN_DOUBT = "did not confirm in time whether this was saved"


@pytest.fixture
async def held_commits(db_url: str) -> AsyncIterator[Any]:
    """While the yielded connection holds advisory lock LOCK, a transaction that inserted a
    ticket waits in its COMMIT (PostgreSQL only: an SQLite COMMIT cannot be held from
    outside)."""
    if not db_url.startswith("postgresql"):
        pytest.skip("an SQLite COMMIT cannot be held from outside: PostgreSQL only")
    engine = create_async_engine(db_url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(
            text(
                "CREATE FUNCTION test_held_commit() RETURNS trigger LANGUAGE plpgsql AS "
                f"$$ BEGIN PERFORM pg_advisory_xact_lock({LOCK}); RETURN NULL; END $$"
            )
        )
        await conn.execute(
            text(
                "CREATE CONSTRAINT TRIGGER test_held_commit AFTER INSERT ON tickets "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_held_commit()"
            )
        )
        try:
            await conn.execute(text(f"SELECT pg_advisory_lock({LOCK})"))
            yield conn
        finally:
            await conn.execute(text("SELECT pg_advisory_unlock_all()"))
            await conn.execute(text("DROP TRIGGER test_held_commit ON tickets"))
            await conn.execute(text("DROP FUNCTION test_held_commit()"))
    await engine.dispose()


async def commits_waiting(conn: Any) -> int:
    found = await conn.execute(
        text(f"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = {LOCK} "
             "AND NOT granted")
    )  # fmt: skip
    return int(found.scalar_one())


async def test_a_redelivery_while_the_first_delivery_commits_is_not_told_nothing_was_saved(
    make_app, slack_api: FakeSlack, socket_server: FakeSocketMode, held_commits: Any
) -> None:
    app = await start_socket_app(make_app, slack_api, socket_server)
    view = await open_intake(socket_server, slack_api, "held")
    submission = view_submission(view, intake_values(category="printer"), view_id="V-HELD")
    envelope = interactive_envelope(submission, envelope_id="env-held")
    await socket_server.send(envelope)

    async def committing() -> bool:
        return await commits_waiting(held_commits) == 1

    await wait_until(committing, timeout=10)
    # No ack within 3 s: Slack delivers the envelope again (here, on the same connection).
    await socket_server.send({**envelope, "retry_attempt": 1, "retry_reason": "timeout"})

    def answers() -> list[str]:
        """What the acks of the envelope said so far. Either delivery may be acked first: on
        a loaded box the first one's ack (empty: its commit is still held) can come before
        the redelivery's answer."""
        return [
            json.dumps(ack.get("payload"))
            for ack in socket_server.acks
            if ack.get("envelope_id") == "env-held"
        ]

    def redelivery_answered() -> bool:
        return any(IN_DOUBT in said or NOTHING_SAVED in said for said in answers())

    await wait_until(redelivery_answered, timeout=10)
    await held_commits.execute(text(f"SELECT pg_advisory_unlock({LOCK})"))
    await socket_server.ack_for("env-held", count=2, timeout=15)
    assert await ticket_count(app) == 1  # the first delivery's change landed
    said = answers()
    assert not any(NOTHING_SAVED in answer for answer in said), said
    assert sum(IN_DOUBT in answer for answer in said) == 1, said
    # A later redelivery is answered with the first delivery's own answer; still one ticket.
    await socket_server.send({**envelope, "retry_attempt": 2, "retry_reason": "timeout"})
    await socket_server.ack_for("env-held", count=3)
    await asyncio.sleep(0.3)
    assert await ticket_count(app) == 1
