"""A worker's run slots go to its queues in turn: a flooded queue cannot take them all."""

from __future__ import annotations

import asyncio

from worker.fairness import FairSlots
from worker.flow import flow_from_spec


async def test_a_freed_slot_goes_to_the_queue_waiting_longest_not_to_the_first_delivery() -> None:
    slots = FairSlots(1)
    order: list[str] = []
    gate = asyncio.Event()

    async def run(queue: str, label: str) -> None:
        async with slots.slot(queue):
            order.append(label)
            await gate.wait()

    first = asyncio.create_task(run("a", "a0"))
    await asyncio.sleep(0)
    flood = [asyncio.create_task(run("a", f"a{i}")) for i in range(1, 6)]
    await asyncio.sleep(0)
    quiet = asyncio.create_task(run("b", "b0"))  # arrives after five of a's
    await asyncio.sleep(0)
    assert slots.waiting == 6
    gate.set()
    await asyncio.gather(first, *flood, quiet)
    assert order[:3] == ["a0", "a1", "b0"]  # b waits behind one of a's, not five
    assert slots.busy == 0
    assert slots.waiting == 0


async def test_never_more_runs_than_slots_and_a_cancelled_waiter_gives_its_turn_away() -> None:
    slots = FairSlots(2)
    running = 0
    most = 0

    async def run(queue: str) -> None:
        nonlocal running, most
        async with slots.slot(queue):
            running += 1
            most = max(most, running)
            await asyncio.sleep(0.001)
            running -= 1

    tasks = [asyncio.create_task(run(f"q{i % 3}")) for i in range(30)]
    tasks[10].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert most == 2
    assert slots.busy == 0
    assert slots.waiting == 0


def test_flow_limits_from_a_stored_spec() -> None:
    assert flow_from_spec("w", "t", None, None) is None
    plain = flow_from_spec("w", "t", 2, None)
    assert plain is not None
    assert (plain.limit, plain.key, plain.throttled) == (2, None, False)
    keyed = flow_from_spec("w", "t", {"key": "request.body.customer", "limit": 1}, None)
    assert keyed is not None
    assert keyed.limit == 1
    assert keyed.key is not None
    throttled = flow_from_spec("w", "t", None, {"rate": 20, "per": 2.0, "burst": 5})
    assert throttled is not None
    assert (throttled.rate, throttled.burst, throttled.limit) == (10.0, 5, None)


def test_a_worker_holds_no_more_of_a_limited_trigger_than_can_start_at_once() -> None:
    def held(concurrency: object, throttle: object) -> int:
        found = flow_from_spec("w", "t", concurrency, throttle)
        assert found is not None
        return found.prefetch(24)

    assert held(2, None) == 2
    assert held({"key": "request.body.c", "limit": 1}, None) == 24  # keys run in parallel
    assert held(None, {"rate": 20, "per": 1.0, "burst": 5}) == 5
    assert held(None, {"rate": 20}) == 1
    assert held(100, None) == 24


def test_a_queue_found_full_is_refused_at_the_ingress_for_a_moment_then_asked_again() -> None:
    import time

    import pytest

    from ingress.fullqueues import FullQueues
    from shared.broker.publishers import QueueFull

    full = FullQueues(hold=0.05)
    full.check("w.noisy")  # nothing known: published
    full.found_full("w.noisy")
    with pytest.raises(QueueFull):
        full.check("w.noisy")
    full.check("w.quiet")  # another trigger's queue is not touched
    time.sleep(0.06)
    full.check("w.noisy")  # the hold is over: the broker is asked again
