"""`create_app(settings)`: the Litestar application of one ingress process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import HttpMethod, Litestar, Request, Response, route
from litestar.datastructures import State

from ingress.api import HEALTH_ROUTES, api_router, execution_status, openapi_config
from ingress.api.health import readiness
from ingress.console import console_router, console_templates
from ingress.dependencies import cipher_of, hooks_of, resource_dependencies, settings_of
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
from shared.runtime import tracing
from shared.runtime.heap import freeze_startup_objects
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
    """The routes and their dependencies; the resources open in the lifespan (`opened`)."""
    state = State(
        # A malformed secrets key stops the start, not a call.
        {"settings": settings, "cipher": cipher_from(settings.secrets_key)}
    )
    return Litestar(
        route_handlers=[hook, execution_status, api_router(), console_router(), *HEALTH_ROUTES],
        dependencies=resource_dependencies(),
        lifespan=[opened],
        state=state,
        exception_handlers=make_handlers(settings.retry_after),
        openapi_config=openapi_config(),
        template_config=console_templates(),
        # Logging is hookline's (shared.logs.setup_logging, one JSON or text format for every
        # service); Litestar's default config would replace the root handlers with its own.
        logging_config=None,
        debug=False,
    )


@route(
    "/hooks/{workspace:str}/{trigger:str}",
    http_method=HOOK_METHODS,
    request_max_body_size=None,
    include_in_schema=False,
)
async def hook(request: Request[Any, Any, Any], workspace: str, trigger: str) -> Response[bytes]:
    # The hot path reads the state itself: no dependency to resolve per call.
    return await hooks_of(request.app.state).handle(request, workspace, trigger)


@asynccontextmanager
async def opened(app: Litestar) -> AsyncIterator[None]:
    """Open the pool, the registry, the publisher and the hot path, and put them in `app.state`."""
    state = app.state
    settings = settings_of(state)
    # Opened in this order, closed in the reverse order, also when one fails to open.
    async with contextlib.AsyncExitStack() as stack:
        pool = await stack.enter_async_context(open_pool(settings.database_url, min_size=1, max_size=5))
        registry = TriggerRegistry(pool, allowed_env=settings.allowed_env, cipher=cipher_of(state))
        waiter = ReplyWaiter()
        publisher = InvocationPublisher(settings, waiter)
        await registry.reload()
        stack.push_async_callback(
            _cancelled, asyncio.create_task(follow(settings.database_url, registry.reload), name="registry")
        )
        stack.push_async_callback(publisher.close)
        await publisher.start()
        rejections = RejectionLog(pool)
        rejections.start()
        stack.push_async_callback(rejections.close)
        samples = Samples(pool)
        samples.start()
        stack.push_async_callback(samples.close)
        idempotency = IdempotencyStore(pool, settle_within=2 * settings.publish_timeout + 1)
        hooks = Hooks(
            registry,
            publisher,
            waiter,
            idempotency,
            RateLimiter(pool),
            rejections,
            samples,
            max_body_bytes=settings.max_body_bytes,
            max_json_depth=settings.max_json_depth,
        )
        stack.push_async_callback(
            _cancelled, asyncio.create_task(_purge_expired_keys(idempotency), name="idempotency-purge")
        )
        heartbeat = Heartbeat(
            pool, "ingress", lambda: readiness(pool, publisher, registry), lambda: settings.port
        )
        heartbeat.start()
        stack.push_async_callback(heartbeat.stop)
        # What the handlers are given (ingress/dependencies.py).
        state.update(pool=pool, registry=registry, publisher=publisher, hooks=hooks)
        freeze_startup_objects()  # the app and what it opened: kept out of every later collection
        yield


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
    app = create_app(settings)
    # Each server process its own exporter thread (started after uvicorn's fork or spawn).
    if tracing.start("ingress"):
        app.on_shutdown.append(lambda: tracing.stop())  # called without arguments (no `app`)
    return app
