"""What `hookline status` makes of a service's last heartbeat."""

from __future__ import annotations

import datetime

import pytest

from shared.runtime.heartbeats import SILENT_AFTER_SECONDS, ServiceBeat

NOW = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("ready", "silent", "state"),
    [
        (True, 1.0, "up"),
        (False, 1.0, "not ready"),
        (True, SILENT_AFTER_SECONDS + 0.1, "silent"),  # killed, or stuck: no beat for three periods
        (False, SILENT_AFTER_SECONDS + 0.1, "silent"),
        (True, SILENT_AFTER_SECONDS, "up"),
    ],
)
def test_a_beat_is_up_not_ready_or_silent(ready: bool, silent: float, state: str) -> None:
    beat = ServiceBeat("host:1", "worker", NOW, NOW, ready, None, silent)
    assert beat.state == state
