"""A stop's cancel ends a loop that skips failures, even when a library turned it into one."""

from __future__ import annotations

import asyncio

import pytest

from shared.runtime.cancelling import stop_if_cancelled


async def _look_up() -> None:
    """A library call whose clean-up fails once it is cancelled (a channel closed on a link
    going away): the cancel comes out of it as that failure."""
    try:
        await asyncio.sleep(3600)
    finally:
        raise RuntimeError("the channel is closed")


async def _skip_failures(guarded: bool, looks: list[int], running: asyncio.Event) -> None:
    """The shape of hookline's background loops: an outage is logged and skipped."""
    while running.is_set():
        try:
            await _look_up()
        except RuntimeError:
            looks.append(1)
        if guarded:
            stop_if_cancelled()
        await asyncio.sleep(0.01)


async def _cancelled_in_a_look(guarded: bool) -> tuple[asyncio.Task[None], list[int], asyncio.Event]:
    """The loop started, then cancelled while it is inside a look."""
    looks: list[int] = []
    running = asyncio.Event()
    running.set()
    task = asyncio.create_task(_skip_failures(guarded, looks, running))
    await asyncio.sleep(0.01)
    task.cancel()
    return task, looks, running


async def test_a_cancel_that_came_out_as_a_failure_still_ends_the_loop() -> None:
    task, looks, _ = await _cancelled_in_a_look(guarded=True)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)
    assert looks == [1]  # the cancel was taken for an outage once, then the loop stopped


async def test_without_the_check_the_same_loop_outlives_its_cancel() -> None:
    # What the check is for: a stop that cancels this loop and waits for it never returns.
    task, looks, running = await _cancelled_in_a_look(guarded=False)
    await asyncio.sleep(0.1)
    assert not task.done()
    assert looks == [1]
    running.clear()  # ended the only way left to it
    task.cancel()
    await asyncio.wait_for(task, 2)


async def test_a_task_never_cancelled_goes_on() -> None:
    stop_if_cancelled()  # nothing asked this task to stop: no error
