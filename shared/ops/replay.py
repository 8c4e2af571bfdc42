"""Replay an execution: the same request as a new execution, linked by `replay_of`; or
resume a failed one: the same execution again, after its last checkpointed step.

The replay runs the trigger's *current* version (the usual reason to replay is a fixed
workflow or a target that is back), asynchronously: no caller waits for it. It is routed
like a new call, ordering key included, and published with a confirm. It keeps the first
call's `caller`, so another key of the trigger cannot read it (status URLs are per caller).
"""

from __future__ import annotations

import base64
import time

import msgspec
from aio_pika.abc import AbstractConnection

from shared.broker.publishers import ConfirmedPublisher
from shared.db.executions import get_execution_and_caller
from shared.db.pool import Connection
from shared.db.registry import spec_from_json, trigger_version
from shared.errors import HooklineError, NotFound
from shared.ids import uuid7
from shared.spec.model import OrderingKey
from shared.wire import topology
from shared.wire.amqp import invocation_properties
from shared.wire.messages import Invocation, RequestData, invocation_encoder
from shared.wire.ordering import compile_key, ordering_key_value


async def replay_invocation(connection: Connection, execution_id: str) -> tuple[Invocation, str | None]:
    """The new invocation for a replay of `execution_id`, and its ordering key (if keyed)."""
    old, caller = await get_execution_and_caller(connection, execution_id)
    row = await connection.fetchrow(
        "select version, spec from triggers where workspace = $1 and name = $2 and deleted_at is null",
        old.workspace,
        old.trigger,
    )
    if row is None:
        raise NotFound(
            f"trigger {old.workspace}/{old.trigger} no longer exists; its executions cannot be replayed"
        )
    spec = spec_from_json(row["spec"])
    request = _request_of(old.request)
    invocation = Invocation(
        id=str(uuid7()),
        workspace=old.workspace,
        trigger=old.trigger,
        version=row["version"],
        mode="async",
        received_at=time.time(),
        request=request,
        replay_of=old.id,
        # Still the first call's: its status URL shows the replay to that caller's key only.
        caller=caller,
    )
    return invocation, _ordering_key(spec.ordered, request)


def _request_of(recorded: object) -> RequestData:
    request = msgspec.convert(recorded, RequestData)
    if request.body_kind == "bytes" and isinstance(request.body, str):
        # Bytes are stored as base64 in the record's JSON.
        request = msgspec.structs.replace(request, body=base64.b64decode(request.body))
    return request


def _ordering_key(ordered: bool | OrderingKey, request: RequestData) -> str | None:
    return ordering_key_value(compile_key(ordered.key), request) if isinstance(ordered, OrderingKey) else None


class NotResumable(HooklineError, ValueError):
    """Raised when an execution asked to resume has not failed (it runs, or it succeeded)."""

    problem_type = "not-resumable"


async def resume_invocation(connection: Connection, execution_id: str) -> tuple[Invocation, str | None]:
    """The invocation that continues a failed or dead execution, and its ordering key.

    The same id and trigger version: its run is the execution's next attempt, and the effect
    steps it checkpointed (worker/engine.py) are not run again. No caller waits for it.
    """
    old, caller = await get_execution_and_caller(connection, execution_id)
    if old.status not in ("failed", "dead"):
        raise NotResumable(f"execution {old.id} is {old.status}; only a failed or dead one can resume")
    spec, _ = await trigger_version(connection, old.workspace, old.trigger, old.trigger_version)
    request = _request_of(old.request)
    invocation = Invocation(
        id=old.id,
        workspace=old.workspace,
        trigger=old.trigger,
        version=old.trigger_version,
        mode="async",
        received_at=old.received_at.timestamp(),
        request=request,
        replay_of=old.replay_of,
        caller=caller,
    )
    return invocation, _ordering_key(spec.ordered, request)


async def publish_invocation(
    connection: AbstractConnection,
    prefix: str,
    invocation: Invocation,
    ordering_key: str | None,
    deadline: float,
    *,
    resumed: bool = False,
) -> None:
    """Publish to the invocations exchange and return once the broker confirmed it.

    `resumed`: marked as put back by an operator, so a worker counts its runs on from the
    record and resumes it rather than settling it as already run."""
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    try:
        publisher = ConfirmedPublisher(channel, topology.invocations_exchange(prefix), deadline)
        await publisher.publish(
            invocation_encoder.encode(invocation),
            invocation_properties(invocation.id, ordering_key=ordering_key, replayed=resumed),
            topology.routing_key(invocation.workspace, invocation.trigger),
        )
    finally:
        await channel.close()
