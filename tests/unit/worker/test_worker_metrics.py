"""README (Metrics): a worker counts "runs by status, run duration and end-to-end lag (received ->
finished) histograms, retries, dead letters": each series moves by what a recorded run was."""

from __future__ import annotations

import uuid

from prometheus_client import REGISTRY

from worker.metrics import observe


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_retried_run_counts_a_retry_and_no_end_to_end_lag() -> None:
    ours = {"workspace": f"ws-{uuid.uuid4().hex[:8]}", "trigger": "t"}
    observe(ours["workspace"], "t", "retrying", received=100.0, started=101.0, finished=101.5)
    assert _value("hookline_worker_executions_total", **ours, status="retrying") == 1
    assert _value("hookline_worker_retries_total", **ours) == 1
    assert _value("hookline_worker_dead_letters_total", **ours) == 0
    assert _value("hookline_worker_execution_seconds_sum", **ours) == 0.5
    assert _value("hookline_worker_end_to_end_seconds_count", **ours) == 0  # not finished yet


def test_a_dead_run_counts_a_dead_letter_and_its_lag_from_the_call() -> None:
    ours = {"workspace": f"ws-{uuid.uuid4().hex[:8]}", "trigger": "t"}
    observe(ours["workspace"], "t", "dead", received=100.0, started=104.0, finished=106.0)
    observe(ours["workspace"], "t", "succeeded", received=100.0, started=100.5, finished=101.0)
    assert _value("hookline_worker_executions_total", **ours, status="dead") == 1
    assert _value("hookline_worker_executions_total", **ours, status="succeeded") == 1
    assert _value("hookline_worker_dead_letters_total", **ours) == 1
    assert _value("hookline_worker_retries_total", **ours) == 0
    assert _value("hookline_worker_end_to_end_seconds_count", **ours) == 2
    assert _value("hookline_worker_end_to_end_seconds_sum", **ours) == 7.0  # 6 s and 1 s since received
    assert _value("hookline_worker_execution_seconds_sum", **ours) == 2.5
