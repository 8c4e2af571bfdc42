"""Coalesced acks: which frames go out (a recording stand-in for aiormq's channel)."""

from __future__ import annotations

import asyncio
from typing import Any

from worker.deliveries import Acks


class Frames:
    """Records the settlement frames a channel was asked to send."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []

    async def basic_ack(self, tag: int, multiple: bool = False, wait: bool = True) -> None:
        self.sent.append(("ack", tag, multiple))

    async def basic_reject(self, tag: int, requeue: bool = False, wait: bool = True) -> None:
        self.sent.append(("reject", tag, requeue))

    async def basic_nack(self, tag: int, requeue: bool = True, wait: bool = True) -> None:
        self.sent.append(("nack", tag, requeue))


def _acks(tags: range) -> tuple[Acks, Frames]:
    frames = Frames()
    acks = Acks(frames)  # type: ignore[arg-type]
    for tag in tags:
        acks.delivered(tag)
    return acks, frames


async def test_acks_of_one_turn_below_the_first_unsettled_go_as_one_multiple_ack() -> None:
    acks, frames = _acks(range(1, 11))
    await asyncio.gather(*(acks.ack(tag) for tag in (3, 1, 2, 5, 6, 9)))
    await asyncio.sleep(0)  # the end of the turn
    await asyncio.sleep(0)
    # 4 is still running: 1-3 in one frame; 5, 6, 9 above it one by one.
    assert frames.sent == [("ack", 3, True), ("ack", 5, False), ("ack", 6, False), ("ack", 9, False)]
    await acks.ack(4)
    await acks.flush()
    assert frames.sent[-1] == ("ack", 4, False)  # 5 and 6 are acked already: no multiple


async def test_a_lone_delivery_is_acked_at_once_and_rejects_never_wait() -> None:
    acks, frames = _acks(range(1, 2))
    await acks.ack(1)
    assert frames.sent == [("ack", 1, False)]  # an ordered lane's only delivery: no batching

    acks, frames = _acks(range(1, 5))
    await acks.settle_now(2, requeue=False, reject=True)
    assert frames.sent == [("reject", 2, False)]
    await asyncio.gather(acks.ack(1), acks.ack(3), acks.ack(4))
    await acks.flush()
    # 2 is settled (rejected), so one multiple ack up to 4 covers 1, 3 and 4.
    assert frames.sent[1:] == [("ack", 4, True)]
