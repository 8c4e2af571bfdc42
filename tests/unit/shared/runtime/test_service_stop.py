"""A service's stop that hangs says where: `run_service`'s report of the tasks it waits for."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import pytest

from shared.runtime import main


class Hanging:
    """A service whose shutdown waits on something that never comes."""

    def __init__(self) -> None:
        self._stop = asyncio.Event()
        self.never = asyncio.Event()

    async def run(self) -> None:
        await self._stop.wait()
        await self._close_the_thing()

    async def _close_the_thing(self) -> None:
        await asyncio.wait_for(self.never.wait(), timeout=5)

    def stop(self) -> None:
        self._stop.set()


async def test_a_stop_that_hangs_logs_the_await_it_hangs_in(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(main, "STUCK_AFTER_SECONDS", 0.05)
    service = Hanging()
    caplog.set_level(logging.WARNING, logger=main.__name__)
    serving = asyncio.create_task(main._serve("test", service), name="serving")
    await asyncio.sleep(0.05)
    os.kill(os.getpid(), signal.SIGTERM)  # through the handler `_serve` installed
    try:
        await asyncio.sleep(0.5)
        reports = [r.getMessage() for r in caplog.records if "still stopping" in r.getMessage()]
        assert len(reports) == main.STUCK_REPORTS  # then it stops reporting
        assert reports[0].startswith("still stopping after 0 s")
        # The chain of awaits down to the one that hangs, by function and line.
        assert "serving: _serve (main.py:" in reports[0]
        assert "> run (test_service_stop.py:" in reports[0]
        assert "> _close_the_thing (test_service_stop.py:" in reports[0]
    finally:
        service.never.set()
        assert await serving == 0
        asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
        asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)


async def test_a_stop_that_finishes_in_time_reports_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(main, "STUCK_AFTER_SECONDS", 0.2)
    service = Hanging()
    service.never.set()
    serving = asyncio.create_task(main._serve("test", service))
    await asyncio.sleep(0.05)
    os.kill(os.getpid(), signal.SIGTERM)
    assert await serving == 0
    await asyncio.sleep(0.3)  # past the report's time: it was cancelled with the stop
    asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
    asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)
    assert not [r for r in caplog.records if "still stopping" in r.getMessage()]
