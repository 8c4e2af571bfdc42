"""The bench harness's own arithmetic: wrk's result line, merged runs, the verdicts, the body."""

from __future__ import annotations

import json

from bench import report
from bench.harness import make_body
from bench.load import Load, _parse
from bench.scenarios import merge


def test_the_body_is_json_of_exactly_the_asked_size() -> None:
    body = make_body(1024)
    assert len(body) == 1024
    assert json.loads(body)["id"] == 12345


def test_wrk_result_line_becomes_a_load_with_every_error_counted() -> None:
    text = (
        "Running 10s test @ http://127.0.0.1:1/x\n"
        'BENCH_JSON {"requests": 20000, "duration_us": 10000000, "p50_us": 1500, "p90_us": 3000, '
        '"p99_us": 9000, "max_us": 20000, "mean_us": 1800.0, "connect_errors": 1, "read_errors": 2, '
        '"write_errors": 3, "status_errors": 4, "timeouts": 5}\n'
    )
    assert _parse(text) == Load(
        requests=20000, seconds=10.0, rps=2000.0, p50_ms=1.5, p90_ms=3.0, p99_ms=9.0, max_ms=20.0, errors=15
    )


def _run(requests: int, seconds: float, p50: float, cpu: int) -> dict[str, object]:
    return {
        "requests": requests,
        "seconds": seconds,
        "rps": requests / seconds,
        "p50_ms": p50,
        "p90_ms": p50 * 2,
        "p99_ms": p50 * 4,
        "max_ms": p50 * 8,
        "errors": 0,
        "cpu_percent": {"ingress": cpu, "machine": 190},
    }


def test_two_runs_of_a_side_merge_into_totals_and_mean_percentiles() -> None:
    merged = merge([_run(3000, 10.0, 10.0, 100), _run(1000, 10.0, 20.0, 50)])
    assert (merged["requests"], merged["seconds"], merged["rps"]) == (4000, 20.0, 200.0)
    assert (merged["p50_ms"], merged["p99_ms"], merged["max_ms"]) == (15.0, 60.0, 160.0)
    assert merged["cpu_percent"] == {"ingress": 75, "machine": 190}
    assert merged["cpu_ms_per_request"]["ingress"] == 3.75


def test_verdicts_compare_each_figure_with_its_ceiling() -> None:
    results = {
        "async_accept": {
            "hookline": {"rps": 900.0, "p99_ms": 30.0},
            "ceiling": {"rps": 1000.0, "p99_ms": 10.0},
        },
        "worker_drain": {
            "hookline": {"per_second": 600.0, "messages": 20000, "expected": 20000},
            "ceiling": {"per_second": 1000.0},
        },
        "memory": {"ingress-server": [56.0, 121.0]},
    }
    assert report.verdicts(results) == {
        "accept_rps": {"value": 0.9, "target": ">= 0.85", "met": True},
        "accept_p99_factor": {"value": 3.0, "target": "<= 2", "met": False},
        "drain_ratio": {"value": 0.6, "target": ">= 0.5", "met": True},
        "drain_all_recorded": {"value": 20000, "met": True},
        "ingress_rss_mb": {"value": 121.0, "target": "< 120", "met": False},
    }
