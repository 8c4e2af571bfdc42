"""`/api/queues`: messages waiting and consumers, per queue, for the triggers a token sees."""

from __future__ import annotations

from litestar import Controller, get

from ingress.api.access import AccessDep, database
from ingress.dependencies import PoolDep, PublisherDep, SettingsDep
from shared.ops.queues import QueueDepth, queue_depths


class QueueController(Controller):
    """The queue handler."""

    path = "/queues"

    @get(summary="Queue depths and consumers (shared queues for admin tokens only)")
    async def list_all(
        self,
        pool: PoolDep,
        publisher: PublisherDep,
        settings: SettingsDep,
        access: AccessDep,
        workspace: str | None = None,
    ) -> list[QueueDepth]:
        workspace = access.narrow(workspace)
        broker = publisher.connection
        async with database(pool) as connection:
            return await queue_depths(broker, connection, settings.amqp_prefix, workspace)
