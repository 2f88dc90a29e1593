"""The activity chart as plain data for the template: a server-drawn SVG, no script, no build step.

Each bar is a link that narrows the list to its span; failures are drawn apart (stacked at the
base, in the failure colour and a hatch, so they do not rely on colour alone), and the same
numbers are in a table for screen readers and for reading exact values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from .. import _timefmt as timefmt
from ..stores._summary import Summary

WIDTH: Final = 960
HEIGHT: Final = 140
AXIS: Final = 18
"""Pixels under the bars for the time labels."""
LEFT: Final = 44
"""Pixels left of the bars for the count labels."""


@dataclass(frozen=True)
class BarView:
    start: str
    end: str
    until: str
    """The filter's ``until`` for this bar: its last microsecond (``until`` includes its bound)."""
    total: int
    failures: int
    x: float
    width: float
    y: float
    height: float
    fail_y: float
    fail_height: float
    label: str
    """What a screen reader says for the bar's link."""


@dataclass(frozen=True)
class ChartView:
    bars: list[BarView]
    ticks: list[tuple[float, str]]
    peak: int
    label: str
    """The svg's accessible name: begins with ``Activity``."""
    width: int = WIDTH
    height: int = HEIGHT
    plot_height: int = HEIGHT - AXIS
    left: int = LEFT


def build(summary: Summary, span: timedelta) -> ChartView:
    """Bar geometry and labels from a summary whose bars are ``span`` wide."""
    bars = summary.bars
    peak = max((b.total for b in bars), default=0)
    plot = HEIGHT - AXIS - 4
    step = (WIDTH - LEFT) / max(len(bars), 1)
    views = []
    for i, bar in enumerate(bars):
        height = plot * bar.total / peak if peak else 0.0
        fail = plot * bar.failures / peak if peak else 0.0
        top = HEIGHT - AXIS - height
        views.append(BarView(bar.start, bar.end, _before(bar.end), bar.total, bar.failures, LEFT + i * step + 1,
                             max(step - 2, 1.0), top, height, HEIGHT - AXIS - fail, fail,
                             f"{_when(bar.start, span)}: {bar.total} events, {bar.failures} failed"))
    every = max(1, len(bars) // 6)
    ticks = [(v.x, _when(v.start, span)) for v in views[::every] if v.x < WIDTH - 100]  # room for the label
    label = (f"Activity: {summary.total} events, {summary.failures} failed, in {len(bars)} bars of {_span(span)}"
             + (f" from {_when(bars[0].start, span)} to {_when(bars[-1].end, span)} UTC" if bars else ""))
    return ChartView(views, ticks, peak, label)


def _before(stamp: str) -> str:
    return timefmt.format_datetime(datetime.fromisoformat(stamp.replace("Z", "+00:00")) - timedelta(microseconds=1))


def _when(stamp: str, span: timedelta) -> str:
    """A bar's start as short as its width allows: ``2026-12-02 14:05`` or ``2026-12-02``."""
    return stamp[:10] if span >= timedelta(days=1) else f"{stamp[:10]} {stamp[11:16]}"


def _span(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} seconds"
