"""The console's trigger page pieces that need no server: the chart's geometry, the
minutes filled in, the try-it form's header lines and its pre-fill from a sample."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ingress.console.charts import HEIGHT, TOP, WIDTH, chart
from ingress.console.triggers import header_lines, prefill
from ingress.errors import BadRequest
from shared.db.trends import Minute, fill
from shared.db.triggers import Sample

NOW = datetime(2026, 12, 2, 14, 5, tzinfo=UTC)


def test_every_minute_of_the_window_is_there_the_empty_ones_as_zeros() -> None:
    busy = NOW - timedelta(minutes=2)
    trend = fill(NOW, 1, {busy: Minute(busy, 4, 1, 12.5), NOW: Minute(NOW, 2, 0, 3.0)})
    assert len(trend.minutes) == 61  # an hour and the current minute
    assert (trend.since, trend.minutes[0].at, trend.minutes[-1].at) == (
        NOW - timedelta(hours=1),
        trend.since,
        NOW,
    )
    assert [(m.calls, m.failures) for m in trend.minutes[-3:]] == [(4, 1), (0, 0), (2, 0)]
    assert trend.minutes[-2].p95_ms is None


def test_the_chart_scales_to_its_busiest_minute_and_keeps_each_minutes_counts() -> None:
    busy = NOW - timedelta(minutes=2)
    drawn = chart(fill(NOW, 1, {busy: Minute(busy, 4, 1, 12.5), NOW: Minute(NOW, 2, 0, 3.0)}), 1)
    assert (drawn.calls, drawn.failures, drawn.max_calls, drawn.max_p95_ms) == (6, 1, 4, 12.5)
    tallest, current = drawn.bars[-3], drawn.bars[-1]
    assert (tallest.minute, tallest.calls, tallest.calls_y, tallest.calls_height) == (
        "14:03",
        4,
        TOP,
        HEIGHT - TOP,
    )
    assert tallest.failures_height == pytest.approx((HEIGHT - TOP) / 4)
    assert (current.minute, current.calls, current.calls_height) == (
        "14:05",
        2,
        pytest.approx((HEIGHT - TOP) / 2),
    )
    assert drawn.bars[-2].calls_height == 0
    assert all(0 <= b.x < WIDTH for b in drawn.bars)
    points = drawn.p95_points.split()
    assert len(points) == 2  # minutes without a finished run are skipped
    assert float(points[0].split(",")[1]) == TOP  # the slowest minute at the top
    assert (tallest.p95_y, drawn.bars[-2].p95_y) == (TOP, None)


def test_a_quiet_window_draws_nothing() -> None:
    drawn = chart(fill(NOW, 2, {}), 2)
    assert (drawn.calls, drawn.max_calls, drawn.p95_points, len(drawn.bars)) == (0, 0, "", 121)
    assert all(b.calls_height == 0 for b in drawn.bars)


def test_header_lines_are_name_colon_value_and_anything_else_is_refused() -> None:
    assert header_lines("X-Request-Id: r-1\n\ncontent-type:application/json\r\nX-Empty:") == {
        "X-Request-Id": "r-1",
        "content-type": "application/json",
        "X-Empty": "",
    }
    with pytest.raises(BadRequest, match="Name: value"):
        header_lines("just text")
    with pytest.raises(BadRequest):
        header_lines(": no name")


def test_the_form_is_pre_filled_from_the_last_sample() -> None:
    sample = Sample(
        "e1",
        NOW,
        {
            "method": "PUT",
            "query": {"item": "7", "tags": ["a", "b"]},
            "headers": {"x-request-id": "r-9"},
            "content_type": "application/json",
            "body_kind": "json",
            "body": {"order": 7},
        },
    )
    form = prefill(sample)
    assert (form.method, form.query, form.body) == ("PUT", "item=7&tags=a&tags=b", '{"order":7}')
    assert form.headers.splitlines() == ["x-request-id: r-9", "content-type: application/json"]
    empty = prefill(None)
    assert (empty.method, empty.body) == ("POST", "{}")
