"""A shutdown step on the broker is bounded: a broker that does not answer cannot hold a stop."""

from __future__ import annotations

import asyncio
import logging
import time

import aiormq
import pytest

from shared.broker.link import quietly


async def test_a_step_that_never_answers_is_given_up_after_its_bound(
    caplog: pytest.LogCaptureFixture,
) -> None:
    never = asyncio.Event()
    started = time.monotonic()
    await quietly(never.wait(), "closing a channel", seconds=0.1)
    assert time.monotonic() - started < 2
    assert "closing a channel took over 0 s; going on without it" in caplog.text


async def test_a_broker_gone_meanwhile_is_no_error(caplog: pytest.LogCaptureFixture) -> None:
    async def lost() -> None:
        raise aiormq.exceptions.ConnectionClosed(320, "CONNECTION_FORCED")

    caplog.set_level(logging.WARNING)
    await quietly(lost(), "closing the broker connection")
    assert caplog.text == ""


async def test_a_step_that_answers_in_time_is_awaited_to_its_end() -> None:
    done = []

    async def step() -> None:
        await asyncio.sleep(0.01)
        done.append(True)

    await quietly(step(), "sending acks", seconds=5)
    assert done == [True]


async def test_any_other_failure_is_not_hidden() -> None:
    async def broken() -> None:
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        await quietly(broken(), "closing a channel")
