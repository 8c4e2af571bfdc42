"""Queue depths per trigger, read with passive declares (no management plugin needed).

A passive `queue.declare` answers with the number of messages ready (not those a consumer
holds unacknowledged) and the number of consumers (a single-active-consumer queue counts
only its active one). The queues to ask about come from the registry: the shared ones, each
unordered trigger's own queue, each ordered trigger's lanes (lane layouts) and each paused
trigger's hold queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from aio_pika.abc import AbstractConnection

from shared.broker.inspection import queue_state
from shared.db.flow import unordered_triggers
from shared.db.lanes import load_layouts
from shared.db.pauses import pause_states
from shared.db.pool import Connection
from shared.wire import topology

Kind = Literal["work", "trigger", "dead", "retry", "ordered", "held"]


@dataclass(frozen=True)
class QueueDepth:
    """One queue: what waits in it and who consumes it (`exists` False: not declared yet)."""

    name: str
    kind: Kind
    workspace: str | None
    trigger: str | None
    messages: int
    consumers: int
    exists: bool = True


async def queue_depths(
    broker: AbstractConnection, db: Connection, prefix: str, workspace: str | None = None
) -> list[QueueDepth]:
    """Every queue an operator may see: the shared ones only when `workspace` is None (admin)."""
    wanted: list[tuple[str, Kind, str | None, str | None]] = []
    if workspace is None:
        wanted.append((topology.work_queue_name(prefix), "work", None, None))
        wanted.append((topology.dead_letter_queue_name(prefix), "dead", None, None))
        wanted += [(topology.retry_queue_name(prefix, t), "retry", None, None) for t in topology.RETRY_TIERS]
    for owner, name, _, _ in sorted(await unordered_triggers(db)):
        if workspace is None or owner == workspace:
            wanted.append((topology.trigger_queue_name(prefix, owner, name), "trigger", owner, name))
    for layout in await load_layouts(db):
        if workspace is None or layout.workspace == workspace:
            wanted += [(q, "ordered", layout.workspace, layout.trigger) for q in layout.queues(prefix)]
    for pause in await pause_states(db):
        if workspace is None or pause.workspace == workspace:
            name = topology.hold_queue_name(prefix, pause.workspace, pause.trigger)
            wanted.append((name, "held", pause.workspace, pause.trigger))
    depths = []
    for name, kind, ws, trigger in wanted:
        state = await queue_state(broker, name)
        if state is None:
            if kind != "held":  # an ordered trigger's hold queue never exists
                depths.append(QueueDepth(name, kind, ws, trigger, 0, 0, exists=False))
            continue
        depths.append(QueueDepth(name, kind, ws, trigger, state.ready, state.consumers))
    return depths
