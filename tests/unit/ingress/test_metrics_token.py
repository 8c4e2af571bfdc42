"""`HOOKLINE_METRICS_TOKEN`: when set, `/metrics` answers only a scraper that sends it."""

from __future__ import annotations

from typing import Any

import asyncpg
from litestar import Litestar
from litestar.datastructures import State
from litestar.testing import TestClient

from ingress.api import HEALTH_ROUTES
from ingress.dependencies import resource_dependencies
from ingress.publishing import InvocationPublisher
from ingress.registry import TriggerRegistry
from shared.runtime.probes import loopback_only, probe_app
from shared.settings import Settings


async def _ready() -> dict[str, bool]:
    return {"broker": True, "database": True}


def _ingress(token: str | None, host: str = "127.0.0.1") -> Litestar:
    settings = Settings(database_url="postgresql://x/y", amqp_url="amqp://x", metrics_token=token, host=host)
    return Litestar(
        route_handlers=HEALTH_ROUTES,
        dependencies=resource_dependencies(),
        state=State({"settings": settings}),
    )


def test_metrics_need_the_token_when_one_is_set() -> None:
    for app in (probe_app(_ready, "s3cret-scrape"), _ingress("s3cret-scrape")):
        with TestClient(app) as client:
            missing = client.get("/metrics")
            wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
            right = client.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape"})
            lower = client.get("/metrics", headers={"Authorization": "bearer s3cret-scrape"})
            other_scheme = client.get("/metrics", headers={"Authorization": "Basic s3cret-scrape"})
            health = client.get("/healthz")
        assert (missing.status_code, wrong.status_code) == (401, 401)
        assert missing.headers["content-type"] == "application/problem+json"
        assert missing.json()["detail"] == "metrics need the metrics token (Authorization: Bearer ...)"
        assert (right.status_code, lower.status_code, other_scheme.status_code) == (200, 200, 401)
        assert "# TYPE" in right.text
        assert health.status_code == 200  # probes stay open: orchestrators call them


def test_metrics_are_open_without_a_token() -> None:
    for app in (probe_app(_ready), _ingress(None)):
        with TestClient(app) as client:
            assert client.get("/metrics").status_code == 200


def test_metrics_without_a_token_on_a_non_loopback_listen_answer_401() -> None:
    # The labels name every tenant's workspaces and triggers: off this machine, only with a token.
    for app in (
        probe_app(_ready, None, loopback=False),
        _ingress(None, "0.0.0.0"),
        _ingress(None, "10.1.2.3"),
    ):
        with TestClient(app) as client:
            refused = client.get("/metrics")
            health = client.get("/healthz")
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
        assert "HOOKLINE_METRICS_TOKEN" in refused.json()["detail"]
        assert "hookline_ingress" not in refused.text
        assert health.status_code == 200
    with TestClient(_ingress("s3cret-scrape", "0.0.0.0")) as client:
        assert client.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape"}).status_code == 200


def test_only_loopback_addresses_count_as_loopback() -> None:
    assert [loopback_only(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost")] == [True] * 5
    assert [loopback_only(h) for h in ("0.0.0.0", "::", "10.0.0.1", "example.org", "")] == [False] * 5


class _Connection:
    def __init__(self, up: bool) -> None:
        self._up = up

    async def execute(self, query: str) -> str:
        if not self._up:
            raise OSError("connection refused")
        return "SELECT 1"


class _Pool(asyncpg.Pool):
    """What readiness asks of the pool: a connection that answers `select 1`, or not."""

    def __init__(self, up: bool) -> None:  # no connections: nothing to open or close
        self._up = up

    def acquire(self, *, timeout: float | None = None) -> Any:
        return self

    async def __aenter__(self) -> _Connection:
        return _Connection(self._up)

    async def __aexit__(self, *exc: object) -> None:
        return None


def _registry(loaded: bool) -> TriggerRegistry:
    registry = object.__new__(TriggerRegistry)
    registry.loaded = loaded
    return registry


def _ingress_with(broker: bool, database: bool, registry: bool) -> Litestar:
    settings = Settings(database_url="postgresql://x/y", amqp_url="amqp://x", metrics_token="s3cret-scrape")
    state = {
        "settings": settings,
        "pool": _Pool(database),
        "publisher": object.__new__(type("Publisher", (InvocationPublisher,), {"ready": broker})),
        "registry": _registry(registry),
    }
    return Litestar(route_handlers=HEALTH_ROUTES, dependencies=resource_dependencies(), state=State(state))


def test_readyz_is_open_and_says_ready_only_when_broker_database_and_registry_are() -> None:
    # README: "/healthz and /readyz stay open" (no metrics token), "/readyz (broker and database reachable)".
    cases = [
        ((True, True, True), 200),
        ((False, True, True), 503),
        ((True, False, True), 503),
        ((True, True, False), 503),
    ]
    for (broker, database, registry), status in cases:
        with TestClient(_ingress_with(broker, database, registry)) as client:
            answer = client.get("/readyz")
        assert answer.status_code == status
        assert answer.json() == {
            "ready": status == 200,
            "checks": {"broker": broker, "registry": registry, "database": database},
        }


async def _broker_down() -> dict[str, bool]:
    return {"broker": False, "database": True}


def test_a_services_probe_readyz_answers_503_when_a_check_fails() -> None:
    with TestClient(probe_app(_broker_down, "s3cret-scrape")) as client:
        answer = client.get("/readyz")
        health = client.get("/healthz")
    assert answer.status_code == 503
    assert answer.json() == {"ready": False, "checks": {"broker": False, "database": True}}
    assert health.status_code == 200
