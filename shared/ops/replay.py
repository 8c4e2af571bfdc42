"""Replay an execution: the same request as a new execution, linked by `replay_of`.

The replay runs the trigger's *current* version (the usual reason to replay is a fixed
workflow or a target that is back), asynchronously: no caller waits for it. It is routed
like a new call, ordering key included, and published with a confirm. It keeps the first
call's `caller`, so another key of the trigger cannot read it (status URLs are per caller).
"""

from __future__ import annotations

import base64
import time

import aio_pika
import msgspec
from aio_pika.abc import AbstractConnection, DeliveryMode

from shared.broker.publishers import publish_confirmed
from shared.db.executions import get_execution_and_caller
from shared.db.pool import Connection
from shared.db.registry import spec_from_json
from shared.errors import NotFound
from shared.ids import uuid7
from shared.spec.model import OrderingKey
from shared.wire import topology
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
    request = msgspec.convert(old.request, RequestData)
    if request.body_kind == "bytes" and isinstance(request.body, str):
        # Bytes are stored as base64 in the record's JSON.
        request = msgspec.structs.replace(request, body=base64.b64decode(request.body))
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
    key = (
        ordering_key_value(compile_key(spec.ordered.key), request)
        if isinstance(spec.ordered, OrderingKey)
        else None
    )
    return invocation, key


async def publish_invocation(
    connection: AbstractConnection,
    prefix: str,
    invocation: Invocation,
    ordering_key: str | None,
    deadline: float,
) -> None:
    """Publish to the invocations exchange and return once the broker confirmed it."""
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    try:
        exchange = await channel.get_exchange(topology.invocations_exchange(prefix), ensure=False)
        message = aio_pika.Message(
            invocation_encoder.encode(invocation),
            delivery_mode=DeliveryMode.PERSISTENT,
            message_id=invocation.id,
            content_type="application/msgpack",
            type="hookline.invocation",
            headers={topology.ORDERING_KEY_HEADER: ordering_key} if ordering_key is not None else None,
        )
        routing_key = topology.routing_key(invocation.workspace, invocation.trigger)
        await publish_confirmed(exchange, message, routing_key, deadline)
    finally:
        await channel.close()
