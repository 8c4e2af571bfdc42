"""A worker's run slots, shared fairly by the queues it consumes.

Each trigger queue has a channel of its own with a prefetch, so a flooded trigger can hold
no more than that many deliveries in a worker; `FairSlots` then decides which held
delivery runs next. A slot that frees goes to the queue waiting longest since it last got
one (round robin over queues, not first come first served over deliveries), so a trigger
with one waiting call runs it next even while another trigger has hundreds waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import AsyncIterator


class FairSlots:
    """At most `size` runs at once; a free slot goes to the queues in turn."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.busy = 0
        # queue -> its waiters, first come first served within a queue; the OrderedDict's
        # order is the turn: a queue served moves to the back.
        self._waiting: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()

    @contextlib.asynccontextmanager
    async def slot(self, queue: str) -> AsyncIterator[None]:
        """Hold a slot for the block (waits for one, in `queue`'s turn)."""
        await self.acquire(queue)
        try:
            yield
        finally:
            self.release()

    async def acquire(self, queue: str) -> None:
        """Take a slot (waits for one, in `queue`'s turn); `release()` gives it back.

        The worker's hot path pairs the two itself, without the context manager's cost.
        """
        if self.busy < self.size and not self._waiting:
            self.busy += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(queue, deque()).append(waiter)
        try:
            await waiter  # the slot was handed over: `busy` counts it already
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed over just as it was cancelled: pass it on
            else:
                self._forget(queue, waiter)
            raise

    def _forget(self, queue: str, waiter: asyncio.Future[None]) -> None:
        waiters = self._waiting.get(queue)
        if waiters is None:
            return
        with contextlib.suppress(ValueError):
            waiters.remove(waiter)
        if not waiters:
            del self._waiting[queue]

    def release(self) -> None:
        """Give a slot back: to the next queue's waiter in turn, else free."""
        while self._waiting:
            queue, waiters = next(iter(self._waiting.items()))
            waiter = waiters.popleft()
            if waiters:
                self._waiting.move_to_end(queue)  # its next waiter takes its next turn
            else:
                del self._waiting[queue]
            if not waiter.done():
                waiter.set_result(None)  # the slot passes straight on: `busy` is unchanged
                return
        self.busy -= 1

    @property
    def waiting(self) -> int:
        """Deliveries waiting for a slot."""
        return sum(len(w) for w in self._waiting.values())
