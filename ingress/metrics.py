"""Prometheus metrics of the ingress (one registry per process, or multiprocess mode).

With several server processes, set PROMETHEUS_MULTIPROC_DIR so `/metrics` sums them all.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

CALLS = Counter(
    "hookline_ingress_calls_total", "Webhook calls answered, by outcome", ["workspace", "trigger", "outcome"]
)
REJECTED = Counter("hookline_ingress_rejected_total", "Webhook calls refused, by reason", ["reason"])
PUBLISH_SECONDS = Histogram(
    "hookline_ingress_publish_seconds",
    "Time from publish to broker confirm",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


def render() -> bytes:
    """The text exposition of this process (or of all processes, in multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest()
