"""`create_app(settings)`: the Litestar application of one ingress process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import HttpMethod, Litestar, Request, Response, route

from ingress.api import Resources, api_router, health_routes, openapi_config, status_route
from ingress.api.health import readiness
from ingress.console import console_router, console_templates
from ingress.hooks import Hooks
from ingress.idempotency import IdempotencyStore
from ingress.limits import HttpLimits, use_limits
from ingress.problems import make_handlers
from ingress.publishing import InvocationPublisher
from ingress.ratelimit import RateLimiter
from ingress.registry import TriggerRegistry
from ingress.rejections import RejectionLog
from ingress.replies import ReplyWaiter
from ingress.samples import Samples
from shared.db.notify import follow
from shared.db.pool import DB_ERRORS, open_pool
from shared.db.secrets import cipher_from
from shared.logs import setup_logging
from shared.runtime.heartbeats import Heartbeat
from shared.settings import Settings, load_settings

log = logging.getLogger(__name__)
HOOK_METHODS: list[HttpMethod] = [
    HttpMethod.GET,
    HttpMethod.POST,
    HttpMethod.PUT,
    HttpMethod.PATCH,
    HttpMethod.DELETE,
]


def create_app(settings: Settings) -> Litestar:
    """Wire the registry, the publisher and the routes; resources open in the lifespan."""
    res = Resources()
    res.settings = settings
    res.cipher = cipher_from(settings.secrets_key)  # a malformed key stops the start, not a call

    @asynccontextmanager
    async def resources(_: Litestar) -> AsyncIterator[None]:
        # Opened in this order, closed in the reverse order, also when one fails to open.
        async with contextlib.AsyncExitStack() as opened:
            res.pool = await opened.enter_async_context(
                open_pool(settings.database_url, min_size=1, max_size=5)
            )
            res.registry = TriggerRegistry(res.pool, allowed_env=settings.allowed_env, cipher=res.cipher)
            waiter = ReplyWaiter()
            res.publisher = InvocationPublisher(settings, waiter)
            await res.registry.reload()
            opened.push_async_callback(
                _cancelled, asyncio.create_task(_follow(settings, res), name="registry")
            )
            opened.push_async_callback(res.publisher.close)
            await res.publisher.start()
            rejections = RejectionLog(res.pool)
            rejections.start()
            opened.push_async_callback(rejections.close)
            samples = Samples(res.pool)
            samples.start()
            opened.push_async_callback(samples.close)
            idempotency = IdempotencyStore(res.pool, settle_within=2 * settings.publish_timeout + 1)
            res.hooks = Hooks(
                res.registry,
                res.publisher,
                waiter,
                idempotency,
                RateLimiter(res.pool),
                rejections,
                samples,
                max_body_bytes=settings.max_body_bytes,
                max_json_depth=settings.max_json_depth,
            )
            opened.push_async_callback(
                _cancelled, asyncio.create_task(_purge_expired_keys(idempotency), name="idempotency-purge")
            )
            heartbeat = Heartbeat(res.pool, "ingress", lambda: readiness(res), lambda: settings.port)
            heartbeat.start()
            opened.push_async_callback(heartbeat.stop)
            yield

    @route(
        "/hooks/{workspace:str}/{trigger:str}",
        http_method=HOOK_METHODS,
        request_max_body_size=None,
        include_in_schema=False,
    )
    async def hook(request: Request[Any, Any, Any], workspace: str, trigger: str) -> Response[bytes]:
        return await res.hooks.handle(request, workspace, trigger)

    app = Litestar(
        route_handlers=[hook, status_route(res), api_router(res), console_router(res), *health_routes(res)],
        lifespan=[resources],
        exception_handlers=make_handlers(settings.retry_after),
        openapi_config=openapi_config(),
        template_config=console_templates(),
        debug=False,
    )
    return app


async def _follow(settings: Settings, res: Resources) -> None:
    await follow(settings.database_url, res.registry.reload)


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _purge_expired_keys(store: IdempotencyStore, every: float = 300.0) -> None:
    """Expired idempotency claims are deleted now and then (any process may do it)."""
    while True:
        await asyncio.sleep(every)
        try:
            await store.purge_expired()
        except DB_ERRORS:
            log.warning("could not purge expired idempotency keys")


def app_from_env() -> Litestar:
    """Factory for uvicorn: each server process reads its settings once here."""
    settings = load_settings()
    setup_logging("ingress", settings.log_level, settings.log_json)
    use_limits(HttpLimits.of(settings))  # this process's connections (ingress/limits.py)
    return create_app(settings)
