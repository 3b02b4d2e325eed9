"""What `ticket show` adds for working the ticket to the end: the reports filed under a P1
and the files shared on the ticket."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from cards.model import Element, Facts, Inline, Rich, Text
from handlers.directory import Directory
from handlers.formatting import requester
from handlers.working.attachments import more_line
from handlers.working.attachments import show_lines as attachment_lines
from storage import working as repo
from storage.models import Ticket

# A card lists at most this many rows of a list (a big outage files hundreds of reports):
# beyond that Slack's 50 blocks and Teams' card size would cut the card, buttons included.
SHOW_ROWS = 50


async def show_lines(session: AsyncSession, ticket: Ticket, directory: Directory) -> list[Element]:
    """Reports filed under the ticket (a P1), then one line per shared file."""
    out: list[Element] = []
    if ticket.filed_count:
        reports = await repo.filed_under(session, ticket.number)
        out.append(Text(f"Reports filed under {ticket.number} ({len(reports)})", muted=True))
        lines: list[tuple[Inline, Inline]] = [
            (
                report.number,
                Rich(requester(report), f" - {report.users_affected} affected - {report.status}"),
            )
            for report in reports[:SHOW_ROWS]
        ]
        out.append(Facts(lines))
        out.extend(more_line(len(reports), SHOW_ROWS))
    return out + await attachment_lines(session, ticket, directory, limit=SHOW_ROWS)
