"""The report's chart: a 1200x750 PNG (matplotlib, Agg backend), four panels.

Rendering is blocking CPU work: callers run `render_png` on a thread (`chart_png` does), never
on the event loop. matplotlib's object API is used (no pyplot state), one render at a time.
"""

from __future__ import annotations

import asyncio
import functools
import io
import logging
import threading
import warnings
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from handlers.reports.cards import average, hours, percent
from handlers.reports.rules import PRIORITIES, Rate, Summary, read_summary

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)
WIDTH, HEIGHT, DPI = 1200, 750, 100
MAX_BARS = 8
_RENDERING = threading.Lock()  # matplotlib's font cache and the like are not thread-safe
# Client names are typed in any script. matplotlib's own DejaVu Sans has Latin, Greek and
# Cyrillic but no CJK; these families, those installed (none come with pip's matplotlib),
# follow it as fallbacks, glyph by glyph (matplotlib >= 3.6).
FALLBACK_FAMILIES = (
    "Noto Sans CJK JP",
    "Noto Sans CJK SC",
    "Noto Sans CJK TC",
    "Noto Sans CJK KR",
    "Source Han Sans",
    "Droid Sans Fallback",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "IPAexGothic",
    "IPAGothic",
    "Noto Sans",
    "Noto Sans Thai",
    "Noto Sans Devanagari",
    "Arial Unicode MS",
)
UNDRAWN_NOTE = (
    "Some names cannot be drawn with the fonts installed on this server; "
    "the report's text has them as typed."
)


@functools.cache
def _fonts() -> tuple[tuple[str, ...], frozenset[int]]:
    """The font families the chart uses (DejaVu Sans, then the installed fallbacks) and every
    character they can draw."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    installed = {font.name for font in font_manager.fontManager.ttflist}
    families = ("DejaVu Sans", *(name for name in FALLBACK_FAMILIES if name in installed))
    covered: set[int] = set()
    for name in families:
        try:
            path = font_manager.findfont(
                font_manager.FontProperties(family=name), fallback_to_default=False
            )
            covered.update(FT2Font(path).get_charmap())
        except (ValueError, OSError, RuntimeError):
            log.info("report chart: the font %s could not be read; not used", name)
    return families, frozenset(covered)


def drawable(text: str) -> bool:
    """Whether the chart's fonts draw every character of `text`."""
    return not _undrawn(text)


def _undrawn(text: str) -> set[str]:
    covered = _fonts()[1]
    return {c for c in text if ord(c) not in covered and not c.isspace()}


def render_png(summary: Summary) -> bytes:
    """Tickets by priority, SLA met by priority, CSAT answers, time logged per client."""
    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    # Client names are typed text: matplotlib would read `$…$` in them as TeX math (shown as
    # something else, or failing the whole chart on what it cannot parse). No text here is math.
    families, _ = _fonts()
    who = summary.client or "all clients"
    # What the chart shows that people typed: a name no installed font draws would be boxes;
    # the chart says so (and the log, once per chart, with the fix), not matplotlib's warning
    # per missing character.
    typed = [who, *(name for name, _ in summary.minutes_by_client[:MAX_BARS])]
    undrawn = [name for name in dict.fromkeys(typed) if _undrawn(name)]  # in the chart's order
    with (
        _RENDERING,
        rc_context({"text.parse_math": False, "font.family": list(families)}),
        warnings.catch_warnings(),
    ):
        warnings.filterwarnings(
            "ignore", message="Glyph .* missing from font", category=UserWarning
        )
        figure = Figure(figsize=(WIDTH / DPI, HEIGHT / DPI), dpi=DPI)
        FigureCanvasAgg(figure)
        _title(figure, who, summary)
        grid = figure.subplots(2, 2)

        tickets = grid[0][0]
        names = [name for name, _ in summary.by_priority]
        opened = [count for _, count in summary.by_priority]
        tickets.bar(names, opened, color="#1d4ed8")
        tickets.yaxis.set_major_locator(MaxNLocator(integer=True))  # no "2.5 tickets"
        tickets.set_title(f"Tickets by priority (opened {summary.opened}, closed {summary.closed})")

        sla = grid[0][1]
        rates = dict(summary.respond_by_priority), dict(summary.resolve_by_priority)
        x = range(len(PRIORITIES))
        series = (("Respond", rates[0], -0.2), ("Resolve", rates[1], 0.2))
        for label, by, offset in series:
            values = [
                100 * by[p].met / by[p].decided if p in by and by[p].decided else 0.0
                for p in PRIORITIES
            ]
            bars = sla.bar([i + offset for i in x], values, width=0.4, label=label)
            sla.bar_label(bars, labels=sla_labels(by), fontsize=8, padding=2)
        sla.set_xticks(list(x), list(PRIORITIES))
        sla.set_ylim(0, 125)  # room for the labels over 100% and the legend
        sla.set_yticks([0, 20, 40, 60, 80, 100])
        sla.set_ylabel("% met")
        sla.legend(loc="upper center", ncol=2, fontsize=8)
        respond, resolve = summary.respond, summary.resolve
        sla.set_title(
            "SLA met: respond "
            + (percent(respond.met, respond.decided) if respond.decided else "n/a")
            + ", resolve "
            + (percent(resolve.met, resolve.decided) if resolve.decided else "n/a")
        )

        csat = grid[1][0]
        csat.bar([str(r) for r in range(1, 6)], list(summary.ratings), color="#16a34a")
        csat.yaxis.set_major_locator(MaxNLocator(integer=True))
        csat.set_title(
            "CSAT answers"
            + (f" (average {average(summary.ratings)})" if summary.answers else " (none)")
        )

        logged = grid[1][1]
        clients = summary.minutes_by_client[:MAX_BARS]
        rest = sum(m for _, m in summary.minutes_by_client[MAX_BARS:])
        labels = bar_labels([name for name, _ in clients] + (["others"] if rest else []))
        values = [m / 60 for _, m in clients] + ([rest / 60] if rest else [])
        # One position per bar: names that shorten alike (or a client called "others") are
        # still two bars, not one drawn over the other under one label.
        places = range(len(labels))
        logged.barh(list(places), values[::-1], color="#9333ea")
        logged.set_yticks(list(places), labels[::-1])
        logged.set_xlabel("hours")
        logged.set_title(f"Time logged ({hours(summary.minutes_total)})")

        bottom = 0.0
        if undrawn:
            figure.text(0.01, 0.01, UNDRAWN_NOTE, fontsize=9, color="#6b7280")
            bottom = 0.03
            shown = ", ".join(undrawn[:5]) + (
                f" and {len(undrawn) - 5} more" if undrawn[5:] else ""
            )
            log.warning(
                "report chart: no font installed here draws the names %s (drawn as boxes; the "
                "card, summary and CSV have them as typed). Install a font that does (Debian: "
                "fonts-wqy-microhei or fonts-noto-cjk), delete matplotlib's font cache "
                "(fontlist-*.json in $MPLCONFIGDIR or ~/.cache/matplotlib) and restart",
                shown,
            )
        figure.tight_layout(rect=(0, bottom, 1, 0.95))
        out = io.BytesIO()
        figure.savefig(out, format="png", dpi=DPI)
        return out.getvalue()


def _title(figure: Figure, who: str, summary: Summary) -> None:
    """`QBR report: <client>, <period>` over the chart, the client's name shortened in the
    middle (`_short`) until the whole title fits the chart's width (a client's name can be 200
    characters; a CJK one is twice as wide)."""
    title = figure.suptitle(f"QBR report: {who}, {summary.period}", fontsize=14)
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    size = len(who)
    while title.get_window_extent(renderer).width > WIDTH - 40 and size > 12:
        size = max(12, size * 4 // 5)
        title.set_text(f"QBR report: {_short(who, size)}, {summary.period}")


def sla_labels(by: dict[str, Rate]) -> list[str]:
    """What each priority's SLA bar says: `0%` (a bar of no height: every target missed) is
    not `n/a` (no bar either: no target decided), which a bar alone cannot tell apart."""
    return [
        percent(by[p].met, by[p].decided) if p in by and by[p].decided else "n/a"
        for p in PRIORITIES
    ]


def bar_labels(names: list[str], size: int = 18) -> list[str]:
    """Each bar's label: the name shortened (`_short`), longer where two would read alike
    (branches of one client often differ only in the middle: `... Boston Clinic`, `... Austin
    Clinic`), up to the whole name."""
    sizes = [size] * len(names)
    while True:
        labels = [_short(name, s) for name, s in zip(names, sizes, strict=True)]
        seen = Counter(labels)
        alike = [i for i, label in enumerate(labels) if seen[label] > 1 and label != names[i]]
        if not alike:
            return labels
        for i in alike:
            sizes[i] += 4


def _short(name: str, size: int = 18) -> str:
    """A client's bar label: its start and its end (which often tells branches apart)."""
    if len(name) <= size:
        return name
    tail = (size - 1) // 2
    return f"{name[: size - 1 - tail]}…{name[-tail:]}"


async def chart_png(summary: Summary) -> bytes:
    """`render_png` on a thread."""
    return await asyncio.to_thread(render_png, summary)


def render_kept(data: Mapping[str, Any]) -> bytes:
    """`render_png` of a summary kept as data (`rules.summary_data`: a queued chart's row);
    blocking like it. KeyError, TypeError or ValueError when `data` is no summary."""
    return render_png(read_summary(data))
