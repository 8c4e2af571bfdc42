"""A stop's cancel must end a loop that skips failures, even when the cancel came as one.

The background loops (moving dead letters, sampling queues, retention sweeps, heartbeats,
lease renewals) skip an outage and try again. A `task.cancel()` that lands while such a
loop is inside a library call may not arrive as `CancelledError`: a `finally` that closes
a channel on a link going away raises an outage error in its place, or the library eats
the cancel. The loop then skips it like any outage and sleeps on, and the stop that
cancelled it waits for it forever (seen in CI: a dispatcher's stop timed out waiting in
its dead-letter loop). The task still counts the cancel (`Task.cancelling()`); checking
it before the loop goes round again ends the loop as the stop asked.
"""

from __future__ import annotations

import asyncio


def stop_if_cancelled() -> None:
    """Raise CancelledError if this task was asked to stop (even if the cancel was lost)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
