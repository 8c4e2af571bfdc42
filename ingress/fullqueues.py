"""Trigger queues found full, refused here for a moment without asking the broker again.

A trigger flooded far past its bound makes every one of its calls a publish the broker
refuses. Each refusal still costs the ingress a publish and its nack, and the broker a
write in the quorum queues' shared log on its node, which every other trigger's calls wait
behind: the flood's refusals were what slowed a quiet trigger beside it (`make bench`,
noisy_neighbour). So a nack for a trigger's queue marks it full for `HOLD_SECONDS`, and its
calls meanwhile get the same 503 `queue-full` with Retry-After at once. Workers keep
draining its backlog; the next call after the hold asks the broker again.
"""

from __future__ import annotations

import time

from shared.broker.publishers import QueueFull

HOLD_SECONDS = 0.25


class FullQueues:
    """Routing key -> until when its queue counts as full (this process's view)."""

    def __init__(self, hold: float = HOLD_SECONDS) -> None:
        self._hold = hold
        self._until: dict[str, float] = {}

    def check(self, routing_key: str) -> None:
        """Raise QueueFull while the key's queue was found full less than `hold` ago."""
        until = self._until.get(routing_key)
        if until is None:
            return
        if time.monotonic() < until:
            raise QueueFull("the trigger's queue is full")
        del self._until[routing_key]

    def found_full(self, routing_key: str) -> None:
        """The broker refused a publish for this key: its queue is at its bound."""
        self._until[routing_key] = time.monotonic() + self._hold
