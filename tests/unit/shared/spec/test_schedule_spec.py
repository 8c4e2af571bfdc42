"""A trigger's `schedule` in the trigger file: what loads, and every mistake in one line."""

from __future__ import annotations

import pytest

from shared.errors import SpecError
from shared.spec.loader import load_text
from shared.spec.schedule import Schedule

DOC = """
workspace: demo
triggers:
  - name: nightly
    auth: {{type: none}}
{fields}
    workflow:
      - map: {{at: "{{{{ request.scheduled_at }}}}", method: "{{{{ request.method }}}}"}}
"""


def _load(fields: str) -> Schedule | None:
    [workspace] = load_text(DOC.format(fields=fields), source="f.yaml")
    return workspace.triggers[0].schedule


def test_a_cron_in_a_time_zone_and_an_interval_load_with_catch_up_one_by_default() -> None:
    cron = _load('    schedule: {cron: "*/5 * * * *", timezone: Europe/Stockholm}')
    assert cron == Schedule(cron="*/5 * * * *", timezone="Europe/Stockholm", catch_up="one")
    every = _load("    schedule: {every: 30s, catch_up: all}")
    assert every == Schedule(every=30.0, catch_up="all")  # type: ignore[arg-type]


def test_a_scheduled_trigger_may_take_no_calls() -> None:
    [workspace] = load_text(DOC.format(fields="    methods: []\n    schedule: {every: 1m}"))
    assert workspace.triggers[0].methods == []


def test_no_methods_without_a_schedule_is_refused() -> None:
    with pytest.raises(SpecError) as refused:
        load_text(DOC.format(fields="    methods: []"), source="f.yaml")
    assert str(refused.value) == (
        "f.yaml: trigger nightly: `methods` must list at least one method "
        "(`methods: []` is for a trigger with a `schedule`)"
    )


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("{every: 500ms}", "field schedule: `every` must be from 1s to 366d"),
        ("{every: 0}", "field schedule: `every` must be from 1s to 366d"),
        ("{every: 367d}", "field schedule: `every` must be from 1s to 366d"),
        ("{every: .inf}", "field schedule: `every` must be from 1s to 366d"),
        ("{every: .nan}", "field schedule: `every` must be from 1s to 366d"),
        ("{every: 1500ms}", "field schedule: `every` must be a whole number of seconds"),
        (
            "{every: 2x}",
            "field schedule.every: invalid duration '2x': use a number of seconds or 500ms, 10s, 5m, 24h",
        ),
        ("{}", "field schedule: a schedule has exactly one of `cron` and `every`"),
        (
            '{every: 1m, cron: "* * * * *"}',
            "field schedule: a schedule has exactly one of `cron` and `every`",
        ),
        (
            "{every: 1m, timezone: Europe/Stockholm}",
            "field schedule: `timezone` belongs to `cron`; `every` counts from 1970-01-01 UTC",
        ),
        (
            '{cron: "* * * * * *"}',
            "field schedule: `cron` '* * * * * *' must have five fields: "
            "minute hour day-of-month month day-of-week",
        ),
        ('{cron: "61 * * * *"}', "field schedule: `cron` '61 * * * *' is not valid: Bad minute"),
        ('{cron: "0 0 31 2 *"}', "field schedule: `cron` '0 0 31 2 *' is not valid: Bad day-of-month"),
        (
            '{cron: "0 0 * * *", timezone: Mars/Olympus}',
            "field schedule: unknown `timezone` 'Mars/Olympus': use an IANA name such as Europe/Stockholm",
        ),
        ("{every: 1m, catch_up: some}", "field schedule.catch_up: Invalid enum value 'some'"),
        ("{every: 1m, catchup: all}", "field schedule: Object contains unknown field `catchup`"),
    ],
)
def test_a_wrong_schedule_is_named_in_one_line(schedule: str, message: str) -> None:
    with pytest.raises(SpecError) as refused:
        _load(f"    schedule: {schedule}")
    assert str(refused.value) == f"f.yaml: trigger nightly, {message}"
    assert "\n" not in str(refused.value)
