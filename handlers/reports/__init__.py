"""The QBR report: SQL aggregates over a period's tickets (storage.reports), summed up and
written as lines, a card, CSV rows (`cards`) and a chart (`chart`); the period and the chat
syntax (`rules`); the chat command and the command line's use cases (`service`)."""

from handlers.reports.cards import CSV_HEADER, lines
from handlers.reports.chart import chart_png, render_kept, render_png
from handlers.reports.rules import Period, parse_date, period_of
from handlers.reports.service import build, report_command, top_patterns, write_csv

__all__ = [
    "CSV_HEADER",
    "Period",
    "build",
    "chart_png",
    "lines",
    "parse_date",
    "period_of",
    "render_kept",
    "render_png",
    "report_command",
    "top_patterns",
    "write_csv",
]
