"""Edges of a ticket's life after intake, in the core (no HTTP): a report closed with its P1
gets its SLA result, a fix answered after the ticket closed changes nothing, the **Add to**
card button is a first response."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from bot.directory.file import FileDirectory
from cards.model import ActionId
from handlers import closure
from handlers.commands import parse
from handlers.config import HelpdeskConfig
from handlers.deps import Deps
from handlers.sla.cards import status_line
from handlers.types import Actor, Conversation, Interaction
from handlers.working import confirm, linking
from storage import db
from storage import tickets as repo
from storage.models import FixConfirmation, Ticket, TicketEvent

NOW = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
TECH, ANA = Actor("slack", "UTECH", "tom"), Actor("slack", "UANA", "ana")
PEOPLE = [
    {"email": "tech@example.com", "name": "Tom Tech", "slack_id": "UTECH", "technician": True},
    {"email": "ana@example.com", "name": "Ana Lopez", "slack_id": "UANA"},
]
NOTE = "Cleared the print queue on PRN-0042 and reinstalled the HP UPD 7.1 driver"


@pytest.fixture
async def deps(db_url: str, tmp_path: Path) -> AsyncIterator[Deps]:
    (tmp_path / "people.yaml").write_text(yaml.safe_dump(PEOPLE))
    engine = db.create_engine(db_url)
    yield Deps(
        config=HelpdeskConfig.model_validate({"tier1_scope": []}),
        sessions=db.session_factory(engine),
        directory=FileDirectory(tmp_path / "people.yaml"),
        clock=lambda: NOW,
    )
    await engine.dispose()


async def make(deps: Deps, **fields: Any) -> Ticket:
    async with deps.sessions() as session, session.begin():
        seq, number = await repo.next_number(session, prefix="HD")
        values: dict[str, Any] = dict(
            number=number, prefix="HD", seq=seq, status="open", summary="Printer jams",
            reproducible="yes", priority="P3", category="printer", tier="standard",
            requester_id="UANA", requester_name="Ana Lopez", requester_email="ana@example.com",
            technician_id="UTECH", source_platform="slack", source_channel="C0HELP",
            source_thread="1700000000.000100", created_at=NOW - timedelta(hours=1),
            respond_by=NOW + timedelta(hours=7), resolve_by=NOW + timedelta(days=2),
        )  # fmt: skip
        return await repo.create(session, **(values | fields))


def act(action: ActionId | None = None, *, actor: Actor = TECH, text: str = "", **data: Any):
    return Interaction(
        actor=actor,
        conversation=Conversation(actor.platform, "C0HELP"),
        text=text,
        action=action,
        data=data,
    )


async def close(deps: Deps, ticket: Ticket) -> None:
    await closure.submit(
        deps,
        act(
            ActionId.CLOSE_SUBMIT,
            ticket=ticket.number,
            resolution_note=NOTE,
            resolution_category="Incident",
            time_spent="45m",
            kb_article="",
        ),
    )


async def reload(deps: Deps, number: str) -> Ticket:
    async with deps.sessions() as session:
        found = await repo.get_by_number(session, number)
    assert found is not None
    return found


async def events(deps: Deps, ticket: Ticket) -> list[TicketEvent]:
    async with deps.sessions() as session:
        rows = await session.execute(
            select(TicketEvent).where(TicketEvent.ticket_id == ticket.id).order_by(TicketEvent.id)
        )
        return list(rows.scalars())


async def test_a_report_closed_with_its_p1_has_its_sla_outcome(deps: Deps):
    """Closing stops both clocks for the reports closed with the P1 too (they were left
    without a result and read `missed` once resolve-by had passed)."""
    p1, report = await make(deps, priority="P1"), await make(deps)
    await linking.file_under(deps, act(), report=report.number, p1=p1.number)
    await close(deps, p1)
    child = await reload(deps, report.number)
    assert child.status == "closed"
    assert (child.resolve_met, child.respond_met) == (True, True)
    assert child.resolution_seconds == 3600
    line = status_line(child, "resolve", child.resolve_by + timedelta(hours=1))
    assert line.startswith("Resolve: met"), line


async def test_a_fix_answered_after_the_ticket_closed_changes_nothing(deps: Deps):
    """Closing without the requester's answer is recorded as not confirmed; a later
    **Works now** must not turn that into confirmed, nor tell the technician to close it."""
    ticket = await make(deps)
    await confirm.confirm_command(deps, act(text="confirm HD-1"), parse("confirm HD-1"))
    await close(deps, ticket)
    async with deps.sessions() as session:
        nonce = (await session.execute(select(FixConfirmation.nonce))).scalar_one()
    reply = await confirm.works(deps, act(ActionId.FIX_WORKS, actor=ANA, confirm=nonce))
    assert "was closed before you answered" in reply.text
    after = await reload(deps, ticket.number)
    assert after.fix_confirmed_at is None and after.fix_state != "works"
    kinds = [e.kind for e in await events(deps, ticket)]
    assert "fix.confirmed" not in kinds and kinds[-1] == "fix.refused"


async def test_the_add_to_p1_card_button_is_the_first_response(deps: Deps):
    p1 = await make(deps, priority="P1")
    report = await make(deps, p1_match="HD-1")
    await linking.add_button(deps, act(ActionId.FILE_UNDER_P1, ticket=report.number, p1=p1.number))
    after = await reload(deps, report.number)
    assert after.first_response_at == NOW and after.respond_met is True


async def test_show_lists_at_most_fifty_filed_reports_and_says_how_many_more(deps: Deps):
    """A big outage files hundreds of reports under its P1: `show` lists the first 50 and
    says how many more, so the card keeps its size and its buttons on both platforms."""
    from cards.model import Facts, Text
    from handlers.working import details

    p1 = await make(deps, priority="P1", filed_count=60)
    for _ in range(60):
        await make(deps, filed_under=p1.number)
    async with deps.sessions() as session:
        shown = await details.show_lines(session, await reload(deps, p1.number), deps.directory)
    [heading, facts, more] = shown
    assert isinstance(heading, Text) and "(60)" in str(heading.text)
    assert isinstance(facts, Facts) and len(facts.items) == details.SHOW_ROWS == 50
    assert isinstance(more, Text) and "… and 10 more" in str(more.text)
