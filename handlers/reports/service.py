"""Use cases: the QBR report in chat (`report ...`) and for the command line (summary, CSV)."""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import replace
from datetime import datetime
from functools import partial
from typing import IO

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from cards.model import Inline, Rich, Typed, plain
from handlers import diagnosis, notify
from handlers.commands import Command
from handlers.deps import Deps
from handlers.reports.cards import CSV_HEADER, csv_row, report_card
from handlers.reports.chart import render_png
from handlers.reports.rules import (
    CHAT_USAGE,
    BadPeriod,
    Period,
    Summary,
    parse_chat,
    summarize,
    summary_data,
)
from handlers.types import Image, Interaction, InvalidInput, Reply
from storage import reports as repo

log = logging.getLogger(__name__)
# The chart's file name names the client by at most this many characters of it: a client typed
# at any length (a Teams message takes thousands) made a name Teams counts against its message
# size limit (the answer refused, 413) and Slack shows in full.
FILENAME_CLIENT_MAX = 60


async def top_patterns(
    engine: AsyncEngine, scope: repo.Scope, *, threshold: int, limit: int = 5
) -> list[Inline]:
    """The period's top repeat patterns (diagnosis help), most tickets first:
    `0x80070005 (4 tickets: HD-1, HD-4, ...)`. The error is as typed (a code found in it, or
    its first line): `Typed`."""
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    found = await diagnosis.patterns_in(
        sessions,
        threshold=threshold,
        since=scope.start,
        until=scope.end,
        client=scope.client,
        clients=scope.spellings,
        limit=limit,
    )
    return [
        Rich(
            Typed(p.error),
            f" ({p.tickets} tickets: {', '.join(p.numbers[:5])}"
            + (", ..." if len(p.numbers) > 5 else "")
            + ")",
        )
        for p in found
    ]


async def build(
    engine: AsyncEngine,
    *,
    period: Period,
    client: str | None,
    now: datetime,
    pattern_threshold: int = 3,
) -> Summary:
    """The report of `period` for `client` (None: all clients)."""
    scope = repo.Scope(start=period.start, end=period.end, client=client, now=now)
    scope = await repo.resolve(engine, scope)  # once, for the figures and the patterns
    figures = await repo.figures(engine, scope)
    patterns = await top_patterns(engine, scope, threshold=pattern_threshold)
    summary = summarize(figures, period=period, client=client, patterns=patterns)
    if client is not None and not summary.opened:
        # No ticket of that client: likely another spelling of one that has some. Say which.
        others = await repo.clients_of(engine, replace(scope, client=None, spellings=None))
        summary = replace(summary, other_clients=tuple(others))
    return summary


async def write_csv(
    engine: AsyncEngine, out: IO[str], *, period: Period, client: str | None, now: datetime
) -> int:
    """One RFC 4180 row per ticket of the period (CRLF line ends); returns how many."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    scope = repo.Scope(start=period.start, end=period.end, client=client, now=now)
    written = 0
    async for batch in repo.each_ticket(engine, scope):
        writer.writerows(csv_row(row, now) for row in batch)
        written += len(batch)
    return written


async def report_command(deps: Deps, interaction: Interaction, command: Command) -> Reply:
    """`report [client] [YYYY-MM-DD YYYY-MM-DD]`: the summary card and its chart, where it was
    asked (technicians only)."""
    await deps.require_technician(interaction.actor, "run reports")
    now = deps.clock()
    try:
        client, period = parse_chat(command.args, today=now.date())
    except ValueError as exc:
        # A date it names is what was typed (`BadPeriod`): shown literally.
        said: Inline = exc.words if isinstance(exc, BadPeriod) else str(exc)
        raise InvalidInput(
            said if CHAT_USAGE in plain(said) else Rich(said, ". ", CHAT_USAGE)
        ) from None
    async with deps.sessions() as session:
        engine = session.bind
    assert isinstance(engine, AsyncEngine)
    summary = await build(
        engine,
        period=period,
        client=client,
        now=now,
        pattern_threshold=deps.config.patterns.repeat_threshold,
    )
    who = re.sub(r"[^a-z0-9]+", "-", (client or "all").lower()).strip("-")
    who = who[:FILENAME_CLIENT_MAX].rstrip("-") or "client"
    name = f"report-{who}-{period.since}-{period.until}"
    filename = f"{name}.png"
    title = f"QBR report chart: {client or 'all clients'}, {period}"
    # Answering is this route's one change: the delivery id is claimed now that the figures
    # are there, so a redelivery (a Slack retry, the same Teams activity) is answered as a
    # duplicate and its chart is not uploaded or sent again. Nothing is claimed when the
    # report failed: a retry of it runs. On Slack the chart is a file shared of its own: its
    # upload is queued in this same transaction, so it is stored exactly when the claim is,
    # before anyone is answered; the worker draws it when it uploads it (the drawing takes
    # about a second, which the answer has no time for) and retries it. A process that dies
    # after answering loses nothing.
    uploaded = interaction.platform == "slack"
    async with deps.sessions() as session, session.begin():
        await session.connection()
        if uploaded:
            delivery = interaction.delivery_id
            await notify.share_file(
                session,
                platform="slack",
                channel=interaction.conversation.id,
                user=interaction.actor.id,
                image={"name": filename, "title": title, "report": summary_data(summary)},
                respond=interaction.response_url,
                dedup_key=f"file:{delivery}" if delivery else None,
            )
    log.info(
        "report",
        extra={"client": client or "*", "since": str(period.since), "opened": summary.opened},
    )
    chart = (
        None
        if uploaded
        else Image(
            filename=filename,
            title=title,
            render=partial(render_png, summary),
            data=summary_data(summary),
        )
    )
    return Reply(card=report_card(summary), private=False, image=chart)
