"""Prometheus metrics of a worker: runs by status, their duration, end-to-end lag, retries, dead letters."""

from __future__ import annotations

import functools

from prometheus_client import Counter, Histogram

from shared.db.executions import Status

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

EXECUTIONS = Counter(
    "hookline_worker_executions_total", "Runs recorded, by their status", ["workspace", "trigger", "status"]
)
DURATION = Histogram(
    "hookline_worker_execution_seconds",
    "Time one run took (started -> finished)",
    ["workspace", "trigger"],
    buckets=_SECONDS,
)
LAG = Histogram(
    "hookline_worker_end_to_end_seconds",
    "Time from the call's arrival at the ingress to its run's end (queueing and retries included)",
    ["workspace", "trigger"],
    buckets=_SECONDS,
)
RETRIES = Counter(
    "hookline_worker_retries_total", "Failed runs that will be tried again", ["workspace", "trigger"]
)
DEAD = Counter(
    "hookline_worker_dead_letters_total", "Runs given up (dead-lettered)", ["workspace", "trigger"]
)


def observe(
    workspace: str, trigger: str, status: Status, received: float, started: float, finished: float
) -> None:
    """Count one recorded run."""
    executions, duration, lag = _series(workspace, trigger, status)
    executions.inc()
    duration.observe(max(finished - started, 0.0))
    if status == "retrying":
        RETRIES.labels(workspace, trigger).inc()
        return
    if status == "dead":
        DEAD.labels(workspace, trigger).inc()
    lag.observe(max(finished - received, 0.0))


@functools.lru_cache(maxsize=4096)
def _series(workspace: str, trigger: str, status: Status) -> tuple[Counter, Histogram, Histogram]:
    """The labelled series of a run, looked up once: `labels()` costs ~1.4 us a call."""
    return (
        EXECUTIONS.labels(workspace, trigger, status),
        DURATION.labels(workspace, trigger),
        LAG.labels(workspace, trigger),
    )
