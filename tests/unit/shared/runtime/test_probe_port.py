"""README (Metrics): a worker's or dispatcher's metrics port is "off unless
`HOOKLINE_METRICS_PORT` or `--metrics-port N` is given (0 picks a free port)"."""

from __future__ import annotations

import httpx

from shared.runtime.probes import start_probes


async def _ready() -> dict[str, bool]:
    return {"broker": True, "database": True}


async def test_no_port_means_no_probe_server() -> None:
    assert await start_probes("worker", "127.0.0.1", None, _ready) is None


async def test_port_0_picks_a_free_port_that_serves_the_probes_and_metrics() -> None:
    first = await start_probes("worker", "127.0.0.1", 0, _ready)
    second = await start_probes("worker", "127.0.0.1", 0, _ready)
    assert first is not None
    assert second is not None
    try:
        assert first.port > 0
        assert second.port > 0
        assert first.port != second.port  # two workers on one host, each its own
        async with httpx.AsyncClient() as client:
            for server in (first, second):
                health = await client.get(f"http://127.0.0.1:{server.port}/healthz")
                metrics = await client.get(f"http://127.0.0.1:{server.port}/metrics")
                assert (health.status_code, health.json()) == (200, {"status": "ok"})
                assert metrics.status_code == 200  # loopback: open without a token
                assert "# TYPE " in metrics.text
    finally:
        await first.stop()
        await second.stop()
