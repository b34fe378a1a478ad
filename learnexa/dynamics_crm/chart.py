"""The dashboard's chart of recent syncs: its geometry, computed here so that the template
only draws it (inline SVG, no script).

Stacked bars of users created, updated and deactivated per finished sync (dry runs left
out, as they changed nobody), oldest on the left, on a y axis rounded up to a nice number.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from django.utils import timezone

WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 24, 40  # margins: y labels, -, totals, x labels
MAX_BARS = 14
# A segment that isn't zero is at least this tall, so that 1 never looks like 0.
MIN_SEGMENT = 3.0


@dataclass(frozen=True)
class Series:
    key: str
    label: str
    fill: str  # an SVG paint: a colour, or a pattern (defined in the template) over one
    colour: str


# Bottom to top. Three colours apart in hue and lightness, and patterns besides, so that
# they are told apart without colour too.
SERIES = (
    Series("created", "Created", "#1a7f37", "#1a7f37"),
    Series("updated", "Updated", "url(#chart-hatch)", "#0b5cad"),
    Series("deactivated", "Deactivated", "url(#chart-dots)", "#b42318"),
)


def nice_scale(peak: float, ticks: int = 4) -> tuple[int, int]:
    """(top, step): the axis' top, a multiple of a 1-2-(2.5)-5 step at or above `peak`, in
    about `ticks` steps; whole numbers, since these are counts of people."""
    if peak <= 0:
        return 1, 1
    raw = peak / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    # 2.5 only where it makes whole steps (25, 250, ...).
    steps = (1, 2, 2.5, 5, 10) if magnitude >= 10 else (1, 2, 5, 10)
    step = max(1, round(next(m * magnitude for m in steps if m * magnitude >= raw)))
    return math.ceil(peak / step) * step, step


def chart_runs(runs: Iterable) -> list:
    """The runs the chart shows: the latest finished ones that weren't dry runs, at most
    MAX_BARS, oldest first. `runs` newest first, as SyncRun's ordering gives them."""
    shown = [r for r in runs if r.is_finished and not r.dry_run][:MAX_BARS]
    return list(reversed(shown))


def build_chart(runs: Iterable) -> dict | None:
    """The chart of `runs` (newest first): None when there is nothing to show."""
    runs = chart_runs(runs)
    if not runs:
        return None
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    baseline = TOP + plot_height
    totals = [sum(getattr(r, s.key) for s in SERIES) for r in runs]
    top, step = nice_scale(max(totals))
    slot = plot_width / MAX_BARS
    bar_width = round(slot * 0.6, 1)

    moments = [timezone.localtime(r.started_at or r.queued_at) for r in runs]
    days = Counter(m.date() for m in moments)
    bars = []
    for index, (run, total) in enumerate(zip(runs, totals, strict=True)):
        x = LEFT + slot * index + (slot - bar_width) / 2
        y, segments = float(baseline), []
        for series in SERIES:
            value = getattr(run, series.key)
            if not value:
                continue
            height = max(MIN_SEGMENT, value / top * plot_height)
            y -= height
            segments.append(
                {
                    "key": series.key,
                    "label": series.label,
                    "fill": series.fill,
                    "value": value,
                    "y": round(y, 1),
                    "height": round(height, 1),
                }
            )
        when = moments[index]
        bars.append(
            {
                "run": run,
                "total": total,
                "x": round(x, 1),
                "width": bar_width,
                "middle": round(x + bar_width / 2, 1),
                "top": round(y, 1),
                "total_y": round(y - 5, 1),
                "date": when,
                # The day under each bar, and its time too where a day has several.
                "day": f"{when.day} {when:%b}",
                "time": f"{when:%H:%M}" if days[when.date()] > 1 else "",
                "segments": segments,
                # Where the bar's link lies over the SVG, in % of its box (the whole slot,
                # from the total down to the dates, to be easy to hit).
                "link": {
                    "left": round(100 * (LEFT + slot * index) / WIDTH, 2),
                    "width": round(100 * slot / WIDTH, 2),
                    "top": round(100 * max(0.0, y - 20) / HEIGHT, 2),
                    "height": round(100 * (HEIGHT - max(0.0, y - 20)) / HEIGHT, 2),
                },
            }
        )
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "right": WIDTH - RIGHT,
        "top": TOP,
        "baseline": baseline,
        "max": top,
        "ticks": [
            {"value": value, "y": round(baseline - value / top * plot_height, 1)}
            for value in range(0, top + 1, step)
        ],
        "bars": bars,
        "series": SERIES,
        "label_y": baseline + 15,
        "time_y": baseline + 28,
        "caption_y": HEIGHT - 4,
    }
