"""A trigger's `schedule`: when it runs by itself, and which ticks are due after a pause.

`cron` is five fields (minute hour day-of-month month day-of-week) read in `timezone` as
cron reads them (cronsim: a time skipped by a DST change runs once right after the change,
a time repeated runs once); `every` is a whole number of seconds counted from 1970-01-01
UTC, so ticks do not move when a dispatcher restarts. Ticks are UTC datetimes.
"""

from __future__ import annotations

import math
import uuid
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from shared.spec.base import Spec
from shared.spec.types import Duration

# The method a scheduled run sees as `request.method` (no HTTP call has it).
SCHEDULE_METHOD = "SCHEDULE"
# A workspace cannot make the dispatchers publish more often than this per trigger.
MIN_EVERY = 1.0
MAX_EVERY = 366 * 86400.0
# `catch_up: all` runs at most this many missed ticks (the latest ones); older ones are skipped.
CATCH_UP_LIMIT = 1000
# `catch_up: none` still runs a tick this late (seconds): a dispatcher taking over, a slow
# database; later than that it was missed and is skipped.
LATE_GRACE = 5.0
# Execution ids of ticks: uuid5 in this namespace of "workspace/trigger/tick".
_TICK_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://hookline.dev/schedule-tick")
_BACK_MARGIN = timedelta(hours=2)  # more than any DST shift


class Schedule(Spec, frozen=True):
    """When the trigger runs without a call: `cron` in a `timezone`, or `every` interval."""

    cron: str | None = None
    timezone: str | None = None  # of `cron`; UTC when not given
    every: Duration | None = None
    catch_up: Literal["none", "one", "all"] = "one"

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every is None):
            raise ValueError("a schedule has exactly one of `cron` and `every`")
        if self.every is not None:
            if self.timezone is not None:
                raise ValueError("`timezone` belongs to `cron`; `every` counts from 1970-01-01 UTC")
            if not MIN_EVERY <= self.every <= MAX_EVERY:  # NaN and infinity too
                raise ValueError(f"`every` must be from {MIN_EVERY:g}s to {MAX_EVERY // 86400:g}d")
            if not float(self.every).is_integer():
                raise ValueError("`every` must be a whole number of seconds")
            return
        assert self.cron is not None
        zone = _zone(self.timezone)
        if len(self.cron.split()) != 5:
            raise ValueError(
                f"`cron` {self.cron!r} must have five fields: minute hour day-of-month month day-of-week"
            )
        try:
            CronSim(self.cron, datetime.now(zone))
        except CronSimError as exc:
            raise ValueError(f"`cron` {self.cron!r} is not valid: {exc}") from None
        if next_tick(self, datetime.now(UTC)) is None:
            raise ValueError(f"`cron` {self.cron!r} never fires")


def _zone(name: str | None) -> ZoneInfo:
    if name is None:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown `timezone` {name!r}: use an IANA name such as Europe/Stockholm") from None


def next_tick(schedule: Schedule, after: datetime) -> datetime | None:
    """The first tick strictly after `after`, in UTC; None for a cron that never fires again."""
    if schedule.every is not None:
        step = int(schedule.every)
        return datetime.fromtimestamp(math.floor(after.timestamp()) // step * step + step, UTC)
    assert schedule.cron is not None
    try:
        tick = next(CronSim(schedule.cron, after.astimezone(_zone(schedule.timezone))))
    except StopIteration:  # cronsim looks 50 years ahead
        return None
    return tick.astimezone(UTC)


def ticks_between(schedule: Schedule, since: datetime, until: datetime, limit: int) -> list[datetime]:
    """The ticks from `since` to `until` (both included), the latest `limit` of them, oldest first.

    Work is bounded by `limit`, not by how far behind `since` is.
    """
    if limit < 1 or until < since:
        return []
    if schedule.every is not None:
        step = int(schedule.every)
        first = math.ceil(since.timestamp() / step) * step
        last = math.floor(until.timestamp() / step) * step
        first = max(first, last - (limit - 1) * step)
        return [datetime.fromtimestamp(t, UTC) for t in range(first, last + 1, step)]
    assert schedule.cron is not None
    zone = _zone(schedule.timezone)
    start = since
    # Far behind: start near the latest `limit` ticks, found walking back from `until`; the
    # forward walk below still decides which times are ticks (as `next_tick` does).
    backwards = CronSim(schedule.cron, (until + timedelta(seconds=1)).astimezone(zone), reverse=True)
    for _, tick in zip(range(limit), backwards, strict=False):
        start = tick.astimezone(UTC) - _BACK_MARGIN
        if start <= since:  # the whole gap holds fewer than `limit` ticks
            break
    start = max(since, start)
    found: deque[datetime] = deque(maxlen=limit)
    for tick in CronSim(schedule.cron, (start - timedelta(microseconds=1)).astimezone(zone)):
        moment = tick.astimezone(UTC)
        if moment > until:
            break
        if moment >= since:
            found.append(moment)
    return list(found)


def due_ticks(schedule: Schedule, next_at: datetime, now: datetime) -> list[datetime]:
    """The ticks to publish now, oldest first, when every tick before `next_at` is done.

    `catch_up` decides for ticks missed (no dispatcher running, the trigger paused, its
    queue full): `all` runs each (the latest CATCH_UP_LIMIT), `one` runs the latest only,
    `none` runs a tick only while it is at most LATE_GRACE seconds late.
    """
    limit = CATCH_UP_LIMIT if schedule.catch_up == "all" else 1
    ticks = ticks_between(schedule, next_at, now, limit)
    if schedule.catch_up == "none" and ticks and (now - ticks[-1]).total_seconds() > LATE_GRACE:
        return []
    return ticks


def tick_text(tick: datetime) -> str:
    """A tick as the run sees it in `request.scheduled_at`: ISO 8601 in UTC, `...Z`."""
    return tick.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def tick_execution_id(workspace: str, trigger: str, tick: datetime) -> str:
    """The execution id of a trigger's tick: the same for every copy of it published, so a
    worker can tell a second copy (a leader that died between confirm and commit)."""
    return str(uuid.uuid5(_TICK_NAMESPACE, f"{workspace}/{trigger}/{tick_text(tick)}"))
