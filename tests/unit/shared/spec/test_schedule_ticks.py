"""Ticks of a schedule: the next one, across DST changes, and which are due after a gap."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from shared.spec.schedule import (
    CATCH_UP_LIMIT,
    Schedule,
    due_ticks,
    next_tick,
    tick_execution_id,
    tick_text,
    ticks_between,
)
from shared.spec.types import Duration


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def every(seconds: float, catch_up: str = "one") -> Schedule:
    return Schedule(every=Duration(seconds), catch_up=catch_up)  # type: ignore[arg-type]


def stockholm(cron: str, catch_up: str = "one") -> Schedule:
    return Schedule(cron=cron, timezone="Europe/Stockholm", catch_up=catch_up)  # type: ignore[arg-type]


def walk(schedule: Schedule, after: datetime, count: int) -> list[str]:
    ticks, moment = [], after
    for _ in range(count):
        tick = next_tick(schedule, moment)
        assert tick is not None
        ticks.append(tick_text(tick))
        moment = tick
    return ticks


def test_every_counts_from_the_epoch_so_a_restart_does_not_move_the_ticks() -> None:
    assert walk(every(30), utc("2026-05-01 10:00:05.25"), 3) == [
        "2026-05-01T10:00:30Z",
        "2026-05-01T10:01:00Z",
        "2026-05-01T10:01:30Z",
    ]
    # Strictly after: a tick is never its own successor.
    assert next_tick(every(30), utc("2026-05-01 10:00:30")) == utc("2026-05-01 10:01:00")


def test_a_cron_in_stockholm_keeps_local_time_across_the_spring_change() -> None:
    # 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC). 09:00 local moves from 08:00 to 07:00 UTC.
    assert walk(stockholm("0 9 * * *"), utc("2026-03-27 12:00"), 3) == [
        "2026-03-28T08:00:00Z",
        "2026-03-29T07:00:00Z",
        "2026-03-30T07:00:00Z",
    ]


def test_a_time_the_spring_change_skips_runs_once_right_after_it() -> None:
    # 02:30 does not exist on 2026-03-29 in Stockholm: as cron does, it runs at 03:00 CEST.
    assert walk(stockholm("30 2 * * *"), utc("2026-03-27 12:00"), 3) == [
        "2026-03-28T01:30:00Z",
        "2026-03-29T01:00:00Z",
        "2026-03-30T00:30:00Z",
    ]


def test_hourly_ticks_across_the_spring_change_are_one_hour_apart_in_utc() -> None:
    assert walk(stockholm("0 * * * *"), utc("2026-03-28 23:30"), 4) == [
        "2026-03-29T00:00:00Z",  # 01:00 CET
        "2026-03-29T01:00:00Z",  # 03:00 CEST (02:00 never happens)
        "2026-03-29T02:00:00Z",
        "2026-03-29T03:00:00Z",
    ]


def test_a_time_the_autumn_change_repeats_runs_once() -> None:
    # 2026-10-25: 03:00 CEST becomes 02:00 CET (01:00 UTC); 02:30 local happens twice.
    ticks = walk(stockholm("30 2 * * *"), utc("2026-10-23 12:00"), 3)
    assert ticks == ["2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]


def test_every_five_minutes_across_the_autumn_change_never_repeats_a_moment() -> None:
    ticks = walk(stockholm("*/5 * * * *"), utc("2026-10-24 23:58"), 40)
    moments = [datetime.fromisoformat(t) for t in ticks]
    assert len(set(moments)) == 40
    assert all(b - a == timedelta(minutes=5) for a, b in itertools.pairwise(moments))


def test_ticks_between_include_both_ends_and_keep_the_latest() -> None:
    since, until = utc("2026-05-01 10:00:00"), utc("2026-05-01 10:00:10")
    assert [tick_text(t) for t in ticks_between(every(5), since, until, 10)] == [
        "2026-05-01T10:00:00Z",
        "2026-05-01T10:00:05Z",
        "2026-05-01T10:00:10Z",
    ]
    assert [tick_text(t) for t in ticks_between(every(5), since, until, 2)] == [
        "2026-05-01T10:00:05Z",
        "2026-05-01T10:00:10Z",
    ]
    cron = stockholm("*/5 * * * *")
    assert [tick_text(t) for t in ticks_between(cron, since, utc("2026-05-01 10:12:00"), 10)] == [
        "2026-05-01T10:00:00Z",
        "2026-05-01T10:05:00Z",
        "2026-05-01T10:10:00Z",
    ]


def test_a_cron_far_behind_gives_its_latest_ticks_without_walking_the_whole_gap() -> None:
    now = utc("2026-05-01 10:00:30")
    ticks = ticks_between(stockholm("* * * * *"), now - timedelta(days=365), now, CATCH_UP_LIMIT)
    assert len(ticks) == CATCH_UP_LIMIT
    assert ticks[-1] == utc("2026-05-01 10:00:00")
    assert ticks[0] == utc("2026-05-01 10:00:00") - timedelta(minutes=CATCH_UP_LIMIT - 1)


NOW = utc("2026-05-01 12:00:00.4")


@pytest.mark.parametrize(
    ("catch_up", "next_at", "now", "expected"),
    [
        # On time (one tick due, a fraction of a second late): every policy runs it.
        ("none", "12:00:00", "12:00:00.4", ["12:00:00"]),
        ("one", "12:00:00", "12:00:00.4", ["12:00:00"]),
        ("all", "12:00:00", "12:00:00.4", ["12:00:00"]),
        # Back after 37 s without a dispatcher: 4 ticks missed, the latest 7 s ago.
        ("none", "11:59:30", "12:00:07", []),
        ("one", "11:59:30", "12:00:07", ["12:00:00"]),
        ("all", "11:59:30", "12:00:07", ["11:59:30", "11:59:40", "11:59:50", "12:00:00"]),
    ],
)
def test_catch_up_decides_what_a_gap_runs(catch_up: str, next_at: str, now: str, expected: list[str]) -> None:
    day = "2026-05-01 "
    ticks = due_ticks(every(10, catch_up), utc(day + next_at), utc(day + now))
    assert [t.strftime("%H:%M:%S") for t in ticks] == expected


def test_catch_up_none_still_runs_a_tick_a_few_seconds_late() -> None:
    tick = utc("2026-05-01 12:00:00")
    assert due_ticks(every(60, "none"), tick, tick + timedelta(seconds=4)) == [tick]
    assert due_ticks(every(60, "none"), tick, tick + timedelta(seconds=6)) == []


def test_catch_up_all_is_capped_at_the_latest_thousand_ticks() -> None:
    ticks = due_ticks(every(1, "all"), NOW - timedelta(days=2), NOW)
    assert len(ticks) == CATCH_UP_LIMIT == 1000
    assert ticks[-1] == utc("2026-05-01 12:00:00")
    assert ticks[0] == utc("2026-05-01 12:00:00") - timedelta(seconds=999)


def test_nothing_is_due_before_the_next_tick() -> None:
    assert due_ticks(every(10, "all"), utc("2026-05-01 12:00:10"), NOW) == []


def test_a_tick_has_one_execution_id_whoever_publishes_it() -> None:
    tick = utc("2026-03-29 01:00:00")
    first = tick_execution_id("demo", "nightly", tick)
    assert first == tick_execution_id("demo", "nightly", tick.astimezone())
    others = {
        tick_execution_id("demo", "nightly", tick + timedelta(seconds=1)),
        tick_execution_id("demo", "other", tick),
        tick_execution_id("other", "nightly", tick),
    }
    assert first not in others
    assert len(others) == 3


def test_a_rare_cron_behind_by_years_walks_only_its_own_ticks() -> None:
    leap_day = Schedule(cron="0 0 29 2 *")
    since, until = utc("2020-06-01 00:00"), utc("2029-01-01 00:00")
    assert [tick_text(t) for t in ticks_between(leap_day, since, until, CATCH_UP_LIMIT)] == [
        "2024-02-29T00:00:00Z",
        "2028-02-29T00:00:00Z",
    ]
    assert ticks_between(leap_day, utc("2026-01-01 00:00"), utc("2026-12-31 00:00"), 1) == []
