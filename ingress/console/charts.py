"""Server-rendered charts: calls, failures and p95 duration per minute as plain SVG.

No script and no library: the geometry is computed here and written by the `chart.html`
macros (autoescaped like every template). Each bar carries its minute and counts as
`data-` attributes and a `<title>` (the browser's tooltip), so what is drawn can be read.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.db.trends import Trend

WIDTH = 720.0
HEIGHT = 110.0
TOP = 8.0  # room above the tallest bar


@dataclass(frozen=True)
class Bar:
    minute: str  # "HH:MM" UTC
    x: float
    width: float
    calls: int
    failures: int
    p95_ms: float | None
    calls_y: float
    calls_height: float
    failures_y: float
    failures_height: float
    p95_y: float | None  # a short mark at the minute's p95 (a polyline of one point draws nothing)


@dataclass(frozen=True)
class Chart:
    """What the templates draw: bars, the p95 line, the scales' maxima, and the totals."""

    bars: list[Bar]
    p95_points: str  # an SVG polyline's points; minutes without a finished run are skipped
    max_calls: int
    max_p95_ms: float
    calls: int
    failures: int
    since: str
    until: str
    hours: int
    width: float = WIDTH
    height: float = HEIGHT


def _y(value: float, top: float) -> float:
    return HEIGHT - (value / top) * (HEIGHT - TOP) if top else HEIGHT


def chart(trend: Trend, hours: int) -> Chart:
    """The geometry of one trend, scaled to its largest minute."""
    minutes = trend.minutes
    step = WIDTH / max(len(minutes), 1)
    max_calls = max((m.calls for m in minutes), default=0)
    max_p95 = max((m.p95_ms or 0.0 for m in minutes), default=0.0)
    bars = []
    points = []
    for n, m in enumerate(minutes):
        x = round(n * step, 2)
        calls_y = _y(m.calls, max_calls)
        failures_y = _y(m.failures, max_calls)
        bars.append(
            Bar(
                minute=m.at.strftime("%H:%M"),
                x=x,
                width=round(max(step - 0.5, 0.5), 2),
                calls=m.calls,
                failures=m.failures,
                p95_ms=None if m.p95_ms is None else round(m.p95_ms, 1),
                calls_y=round(calls_y, 2),
                calls_height=round(HEIGHT - calls_y, 2),
                failures_y=round(failures_y, 2),
                failures_height=round(HEIGHT - failures_y, 2),
                p95_y=None if m.p95_ms is None else round(min(_y(m.p95_ms, max_p95), HEIGHT - 2), 2),
            )
        )
        if m.p95_ms is not None:
            points.append(f"{round(x + step / 2, 2)},{round(_y(m.p95_ms, max_p95), 2)}")
    return Chart(
        bars=bars,
        p95_points=" ".join(points),
        max_calls=max_calls,
        max_p95_ms=round(max_p95, 1),
        calls=sum(m.calls for m in minutes),
        failures=sum(m.failures for m in minutes),
        since=trend.since.strftime("%Y-%m-%d %H:%M"),
        until=trend.until.strftime("%H:%M"),
        hours=hours,
    )
