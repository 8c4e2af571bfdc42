"""`HOOKLINE_METRICS_TOKEN`: when set, `/metrics` answers only a scraper that sends it."""

from __future__ import annotations

from litestar import Litestar
from litestar.testing import TestClient

from ingress.api.health import health_routes
from ingress.api.resources import Resources
from shared.runtime.probes import loopback_only, probe_app
from shared.settings import Settings


async def _ready() -> dict[str, bool]:
    return {"broker": True, "database": True}


def _ingress(token: str | None, host: str = "127.0.0.1") -> Litestar:
    res = Resources()
    res.settings = Settings(
        database_url="postgresql://x/y", amqp_url="amqp://x", metrics_token=token, host=host
    )
    return Litestar(route_handlers=health_routes(res))


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
