"""`/api/queues`: messages waiting and consumers, per queue, for the triggers a token sees."""

from __future__ import annotations

from typing import Any

from litestar import get

from ingress.api.access import Scope, database
from ingress.api.resources import Resources
from shared.ops.queues import QueueDepth, queue_depths


def routes(res: Resources) -> list[Any]:
    """The queue handler."""

    @get("/queues", summary="Queue depths and consumers (shared queues for admin tokens only)")
    async def list_all(access: Scope, workspace: str | None = None) -> list[QueueDepth]:
        workspace = access.narrow(workspace)
        broker = res.publisher.connection
        async with database(res) as connection:
            return await queue_depths(broker, connection, res.settings.amqp_prefix, workspace)

    return [list_all]
