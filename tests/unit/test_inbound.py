"""storage.inbound: a delivery is claimed in the transaction that changes something, only then."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from handlers import dispatch
from handlers.config import HelpdeskConfig
from handlers.deps import Deps
from handlers.directory import EmptyDirectory
from handlers.dispatch import Route, changes, reads
from handlers.types import Actor, Conversation, Interaction, InvalidInput, Reply
from storage import db, inbound, sqlite_reader
from storage import tickets as repo
from storage.models import Base, InboundDelivery, TicketEvent
from tests.harness import wait_until


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = db.create_engine(db_url)
    yield engine
    await engine.dispose()


async def count(sessions: Any, model: Any) -> int:
    async with sessions() as session:
        return (await session.execute(select(func.count()).select_from(model))).scalar_one()


async def write_event(session: Any, kind: str = "test.event") -> None:
    await repo.add_event(session, ticket_id=None, kind=kind)


async def test_the_claim_commits_with_the_change_and_a_second_claim_is_refused(engine):
    sessions = db.session_factory(engine)
    binding = inbound.Binding(key="k-1", writes=True)
    async with inbound.bound(sessions, binding)() as session, session.begin():
        await write_event(session)
        assert inbound.holds(session, "k-1")
    assert binding.done and await count(sessions, InboundDelivery) == 1
    again = inbound.Binding(key="k-1", writes=True)
    with pytest.raises(inbound.AlreadyHandled):
        async with inbound.bound(sessions, again)() as session, session.begin():
            await write_event(session)
    assert await count(sessions, TicketEvent) == 1
    async with sessions() as session:
        assert await inbound.seen(session, "k-1") and not await inbound.seen(session, "k-2")


async def test_a_failed_change_takes_its_claim_with_it(engine):
    sessions = db.session_factory(engine)
    binding = inbound.Binding(key="k-fail", writes=True)
    factory = inbound.bound(sessions, binding)
    with pytest.raises(InvalidInput):
        async with factory() as session, session.begin():
            await write_event(session)
            raise InvalidInput("refused")
    assert (binding.pending, binding.done) == (None, False)
    assert await count(sessions, InboundDelivery) == 0
    async with factory() as session, session.begin():  # the corrected attempt goes through
        await write_event(session)
    assert await count(sessions, InboundDelivery) == 1 and await count(sessions, TicketEvent) == 1


async def test_a_commit_without_begin_claims_too(engine):
    sessions = db.session_factory(engine)
    binding = inbound.Binding(key="k-auto", writes=True)
    async with inbound.bound(sessions, binding)() as session:
        await write_event(session)
        await session.commit()
    assert binding.done and await count(sessions, InboundDelivery) == 1


async def test_reads_claim_nothing_and_read_only_deliveries_cannot_commit(engine):
    sessions = db.session_factory(engine)
    binding = inbound.Binding(key="k-read", writes=True)
    async with inbound.bound(sessions, binding)() as session:
        await session.execute(select(func.count()).select_from(TicketEvent))
    assert await count(sessions, InboundDelivery) == 0
    read_only = inbound.bound(sessions, inbound.Binding(key=None, writes=False))
    with pytest.raises(inbound.UndeclaredWrite):
        async with read_only() as session, session.begin():
            await write_event(session)
    assert await count(sessions, TicketEvent) == 0


async def test_one_delivery_changes_state_in_one_transaction(engine):
    sessions = db.session_factory(engine)
    factory = inbound.bound(sessions, inbound.Binding(key="k-two", writes=True))
    async with factory() as session, session.begin():
        await write_event(session, "first")
    with pytest.raises(inbound.UndeclaredWrite, match="second transaction"):
        async with factory() as session, session.begin():
            await write_event(session, "second")
    assert await count(sessions, TicketEvent) == 1


async def test_claim_delivery_inside_a_bound_transaction_agrees_with_it(engine):
    """Use cases written before the dispatcher claimed for them still work unchanged."""
    sessions = db.session_factory(engine)
    factory = inbound.bound(sessions, inbound.Binding(key="k-old", writes=True))
    async with factory() as session, session.begin():
        assert await repo.claim_delivery(session, "k-old")
        assert await repo.claim_delivery(session, "k-other")
    assert await count(sessions, InboundDelivery) == 2
    async with sessions() as session, session.begin():
        assert not await repo.claim_delivery(session, "k-old")


def test_long_delivery_ids_are_stored_by_their_hash():
    long_id = "teams:" + "19:" + "x" * 400 + ":1700000000001"
    key = inbound.key_for(long_id)
    assert key.startswith("sha256:") and len(key) <= inbound.MAX_KEY
    assert inbound.key_for("slack:command:t-1") == "slack:command:t-1"


async def test_the_dispatcher_runs_a_state_changing_route_once_and_a_read_only_one_again(
    engine, monkeypatch
):
    deps = Deps(
        config=HelpdeskConfig(), sessions=db.session_factory(engine), directory=EmptyDirectory()
    )
    runs: list[str] = []

    async def write(d: Deps, interaction: Interaction, command: Any) -> Reply:
        runs.append("write")
        async with d.sessions() as session, session.begin():
            await write_event(session)
        return Reply(text="written")

    async def sneaky(d: Deps, interaction: Interaction, command: Any) -> Reply:
        runs.append("sneaky")
        async with d.sessions() as session, session.begin():
            await write_event(session, "sneaky")
        return Reply(text="should not commit")

    commands: dict[str, Route[Any]] = {"time": changes(write), "help": reads(sneaky)}
    monkeypatch.setattr(dispatch, "COMMANDS", commands)
    turn = Interaction(
        actor=Actor("slack", "UTECH"),
        conversation=Conversation("slack", "C0HELP"),
        text="time HD-1 1m",
        delivery_id="slack:command:t-9",
    )
    first, retry = await dispatch.handle(deps, turn), await dispatch.handle(deps, turn)
    # The retry runs nothing and is answered what the first was (its answer did not count).
    assert (first.text, retry.text, runs) == ("written", "written", ["write"])
    assert not retry.duplicate
    with pytest.raises(inbound.UndeclaredWrite):
        await dispatch.handle(deps, Interaction(turn.actor, turn.conversation, text="help"))
    async with deps.sessions() as session:
        kinds = (await session.execute(select(TicketEvent.kind))).scalars().all()
    assert kinds == ["test.event"]


def _slow_turn() -> Interaction:
    return Interaction(
        actor=Actor("slack", "UTECH"),
        conversation=Conversation("slack", "C0HELP"),
        text="time HD-1 1m",
        delivery_id="slack:command:t-slow",
    )


async def test_work_that_has_not_begun_to_commit_is_given_up_at_the_budget_and_saves_nothing(
    engine, monkeypatch
):
    deps = Deps(
        config=HelpdeskConfig(), sessions=db.session_factory(engine), directory=EmptyDirectory()
    )
    refused: list[BaseException] = []
    stalled = asyncio.Event()

    async def stubborn(d: Deps, interaction: Interaction, command: Any) -> Reply:
        # Work that outlives its cancellation (a clean-up that writes): once the person has
        # been told nothing was saved, its commit is refused.
        async with d.sessions() as session:
            await write_event(session)
            stalled.set()
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                try:
                    await session.commit()
                except inbound.GivenUp as exc:
                    refused.append(exc)
                raise
        return Reply(text="too late")

    monkeypatch.setattr(dispatch, "COMMANDS", {"time": changes(stubborn)})
    # The budget is measured on the stalled part: on a loaded box the claim check, the first
    # connection and the INSERT before it can take longer than 0.2 s themselves, and work
    # cancelled there never reaches the commit this test is about. Until then each budget
    # is followed by another (as while the directory is asked), never longer.
    reply = await dispatch.answer(
        deps, _slow_turn(), budget=0.2, keep_waiting=lambda: not stalled.is_set()
    )
    assert reply.text == dispatch.UNAVAILABLE
    await wait_until(lambda: bool(refused), what="the late commit to be refused")
    assert len(refused) == 1
    assert await count(deps.sessions, TicketEvent) == 0
    assert await count(deps.sessions, InboundDelivery) == 0


async def test_a_commit_under_way_when_the_budget_ends_is_waited_for(engine, db_url, monkeypatch):
    """The person is told what happened, never "nothing was saved" about a change whose COMMIT
    was already on its way (on PostgreSQL a deferred trigger makes the COMMIT itself slow)."""
    if not db_url.startswith("postgresql"):
        pytest.skip("an SQLite COMMIT cannot be made slow from outside: PostgreSQL only")
    deps = Deps(
        config=HelpdeskConfig(), sessions=db.session_factory(engine), directory=EmptyDirectory()
    )

    async def write(d: Deps, interaction: Interaction, command: Any) -> Reply:
        async with d.sessions() as session, session.begin():
            await write_event(session, "slow.commit")
        return Reply(text="written")

    monkeypatch.setattr(dispatch, "COMMANDS", {"time": changes(write)})
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "CREATE FUNCTION test_slow_commit() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN PERFORM pg_sleep(0.8); RETURN NULL; END $$"
            )
        )
        await conn.execute(
            text(
                "CREATE CONSTRAINT TRIGGER test_slow_commit AFTER INSERT ON ticket_events "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_slow_commit()"
            )
        )
    try:
        reply = await dispatch.answer(deps, _slow_turn(), budget=0.3)
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("DROP TRIGGER test_slow_commit ON ticket_events"))
            await conn.execute(text("DROP FUNCTION test_slow_commit()"))
    assert reply.text == "written"
    assert await count(deps.sessions, TicketEvent) == 1
    assert await count(deps.sessions, InboundDelivery) == 1


async def test_an_answers_renewals_end_with_it_wherever_they_are(engine, monkeypatch):
    """`Answering` renews its claim while the answer is slow to go out; once its block has
    ended no renewal may follow, wherever the renewal under way was when it ended. The block
    is left at a different point of a renewal each time (its write starting, committing,
    closing its session, sleeping): before, a renewal whose write had just finished when it
    was cancelled went on renewing the claim every quarter lease for the life of the process
    (Python 3.11's `asyncio.wait_for` returned the finished write's result instead of the
    cancellation), and one cancelled in its write could still write after the answer was
    recorded."""
    monkeypatch.setattr(dispatch, "ANSWER_LEASE", 0.04)  # renewed every 0.01 s
    deps = Deps(
        config=HelpdeskConfig(), sessions=db.session_factory(engine), directory=EmptyDirectory()
    )
    renewed: list[str] = []
    renew = inbound.renew

    async def counted(session: Any, delivery_id: str) -> None:
        renewed.append(delivery_id)
        await renew(session, delivery_id)

    monkeypatch.setattr(inbound, "renew", counted)
    for offset in range(40):
        delivery = f"answer-{offset}"
        answering = await dispatch.first_answer(deps, delivery)
        assert answering is not None and answering.delivery_id == delivery
        async with answering:
            await wait_until(lambda: delivery in renewed, timeout=5)  # noqa: B023
            for _ in range(offset):
                await asyncio.sleep(0)
        ended = renewed.count(delivery)
        await asyncio.sleep(dispatch.ANSWER_LEASE)  # four renewal periods
        assert renewed.count(delivery) == ended, f"renewed after the answer (offset {offset})"
        async with deps.sessions() as session:
            assert await inbound.seen(session, inbound.ANSWERED + delivery)


async def test_the_look_before_the_work_reads_the_committed_claim_without_waiting(engine):
    """`recorded_before`, the look every change takes before its work, gives what `recorded`
    gives (the kept answer and when the claim was written) and nothing for an id not claimed;
    and it does not wait for a transaction in flight: on SQLite the engine's one connection is
    held by it, and the look reads the file through a reader of its own."""
    sessions = db.session_factory(engine)
    binding = inbound.Binding(key="k-look", writes=True, answer='{"asked": "by"}')
    async with inbound.bound(sessions, binding)() as session, session.begin():
        await write_event(session)
    async with sessions() as session:
        expected = await inbound.recorded(session, "k-look")
    assert expected is not None and expected.answer == '{"asked": "by"}'
    assert await inbound.recorded_before(sessions, "k-look") == expected
    assert await inbound.recorded_before(sessions, "k-other") is None
    async with sessions() as session, session.begin():
        await write_event(session, "test.in_flight")  # holds the connection until the end
        found = await asyncio.wait_for(inbound.recorded_before(sessions, "k-look"), 2.0)
        assert found == expected
        assert await asyncio.wait_for(inbound.recorded_before(sessions, "k-new"), 2.0) is None


async def test_the_look_before_the_work_falls_back_to_the_engine_when_the_file_cannot_be_read(
    engine, db_url
):
    """A SQLite file its reader cannot read (here: the reader's connection made unusable) is
    read through the engine instead: the look answers all the same."""
    if not db_url.startswith("sqlite"):
        pytest.skip("the reader is SQLite's")
    sessions = db.session_factory(engine)
    binding = inbound.Binding(key="k-fallback", writes=True)
    async with inbound.bound(sessions, binding)() as session, session.begin():
        await write_event(session)
    reader = sqlite_reader.of(engine)
    assert reader is not None
    reader._uri = "file:/nonexistent/helpdesk.db?mode=ro"  # what a test breaks
    reader.close()
    found = await inbound.recorded_before(sessions, "k-fallback")
    assert found is not None and found.answer is None


@pytest.mark.parametrize("query", ["?uri=true", "?mode=rwc&uri=true"])
async def test_the_look_before_the_work_never_creates_a_sqlite_file_named_by_a_uri(db_url, query):
    """The reader of a file named by a `file:` URI is read-only like any other: with the file
    deleted under the engine's open connection, the look answers through the engine and leaves
    the file gone (an empty one in its place answered the health check)."""
    if not db_url.startswith("sqlite"):
        pytest.skip("the reader is SQLite's")
    path = Path(make_url(db_url).database or "")
    engine = db.create_engine(f"sqlite+aiosqlite:///file:{path}{query}")
    try:
        async with engine.connect() as conn:  # the engine's one connection, kept in its pool
            await conn.execute(text("SELECT 1"))
        for gone in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            await asyncio.to_thread(gone.unlink, missing_ok=True)
        assert await inbound.recorded_before(db.session_factory(engine), "k-gone") is None
        assert not await asyncio.to_thread(path.exists)
    finally:
        await engine.dispose()


async def test_an_in_memory_database_named_by_a_uri_has_no_reader(tmp_path, monkeypatch):
    """`file:NAME?mode=memory` (the mode in the URL's query) is in memory: no reader, and no
    file NAME made in the working directory; the look answers through the engine."""
    monkeypatch.chdir(tmp_path)
    engine = db.create_engine(
        "sqlite+aiosqlite:///file:helpdesk_mem?mode=memory&cache=shared&uri=true"
    )
    try:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        sessions = db.session_factory(engine)
        binding = inbound.Binding(key="k-mem", writes=True)
        async with inbound.bound(sessions, binding)() as session, session.begin():
            await write_event(session)
        assert sqlite_reader.of(engine) is None
        found = await inbound.recorded_before(sessions, "k-mem")
        assert found is not None and found.answer is None
        assert await asyncio.to_thread(lambda: list(tmp_path.iterdir())) == []
    finally:
        await engine.dispose()
