"""The bench harness's own arithmetic: wrk's result line, merged runs, the verdicts, the body;
and the parts of its control that need no server: the measured window, stopping, the watchdog."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import broker, report, run, scenarios
from bench.drain import lane_order
from bench.harness import Options, make_body
from bench.load import Load, _parse
from bench.processes import Fleet
from bench.scenarios import backlog_summary, merge


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
        requests=20000,
        seconds=10.0,
        rps=2000.0,
        p50_ms=1.5,
        p90_ms=3.0,
        p99_ms=9.0,
        max_ms=20.0,
        errors=15,
        status_errors=4,
        socket_errors=11,
    )


def _run(requests: int, seconds: float, p50: float, cpu: int, errors: int = 0) -> dict[str, Any]:
    return {
        "requests": requests,
        "seconds": seconds,
        "rps": requests / seconds,
        "p50_ms": p50,
        "p90_ms": p50 * 2,
        "p99_ms": p50 * 4,
        "max_ms": p50 * 8,
        "errors": errors,
        "status_errors": errors,
        "socket_errors": 0,
        "cpu_percent": {"ingress": cpu, "machine": 190},
    }


def test_two_runs_of_a_side_merge_into_totals_and_mean_percentiles() -> None:
    merged = merge([_run(3000, 10.0, 10.0, 100), _run(1000, 10.0, 20.0, 50)])
    assert (merged["requests"], merged["seconds"], merged["rps"]) == (4000, 20.0, 200.0)
    assert (merged["p50_ms"], merged["p99_ms"], merged["max_ms"]) == (15.0, 60.0, 160.0)
    assert merged["cpu_percent"] == {"ingress": 75, "machine": 190}
    assert merged["cpu_ms_per_request"]["ingress"] == 3.75
    assert (merged["errors"], merged["status_errors"], merged["socket_errors"]) == (0, 0, 0)


def test_the_errors_of_either_run_of_a_side_are_added_up() -> None:
    merged = merge([_run(3000, 10.0, 10.0, 100, errors=7), _run(1000, 10.0, 20.0, 50)])
    assert (merged["errors"], merged["status_errors"], merged["socket_errors"]) == (7, 7, 0)


def test_verdicts_compare_each_figure_with_its_ceiling() -> None:
    results = {
        "async_accept": {
            "hookline": {"rps": 900.0, "p99_ms": 30.0, "errors": 0},
            "ceiling": {"rps": 1000.0, "p99_ms": 10.0, "errors": 0},
        },
        "worker_drain": {
            "hookline": {"per_second": 600.0, "messages": 20000, "expected": 20000, "timed_out": []},
            "ceiling": {"per_second": 1000.0, "timed_out": []},
        },
        "memory": {"ingress-server": [56.0, 121.0]},
    }
    assert report.verdicts(results) == {
        "accept_rps": {"value": 0.9, "target": ">= 0.85", "met": True},
        "accept_p99_factor": {"value": 3.0, "target": "<= 2", "met": False},
        "accept_errors": {"value": 0, "target": "= 0", "met": True},
        "drain_ratio": {"value": 0.6, "target": ">= 0.5", "met": True},
        "drain_all_recorded": {"value": 20000, "target": "= 20,000", "met": True},
        "drain_complete": {"value": True, "met": True, "timed_out": []},
        "ingress_rss_mb": {"value": 121.0, "target": "< 120", "met": False},
    }


def _accept(hookline_errors: int = 0, ceiling_errors: int = 0, ceiling_p99: float = 10.0) -> dict[str, Any]:
    return {
        "async_accept": {
            "hookline": {"rps": 1000.0, "p99_ms": 10.0, "errors": hookline_errors},
            "ceiling": {"rps": 1000.0, "p99_ms": ceiling_p99, "errors": ceiling_errors},
        }
    }


def test_fast_error_answers_meet_no_target_of_their_scenario() -> None:
    verdict = report.verdicts(_accept(hookline_errors=5000))
    assert verdict == {
        "accept_rps": {"value": 1.0, "target": ">= 0.85", "met": False},
        "accept_p99_factor": {"value": 1.0, "target": "<= 2", "met": False},
        "accept_errors": {"value": 5000, "target": "= 0", "met": False},
    }
    assert not any(v["met"] for v in report.verdicts(_accept(ceiling_errors=1)).values())


def test_errors_of_a_sequential_load_or_of_a_fill_count_too() -> None:
    side = {"errors": 1, "sequential": {"errors": 2}, "fill": {"errors": 4}}
    assert report.errors(side) == 7


def test_a_lane_whose_fill_had_errors_misses_its_targets() -> None:
    hookline = {
        "per_second": 900.0,
        "messages": 100,
        "expected": 100,
        "order": {"runs": 100, "out_of_order": 0, "overlaps": 0, "min_gap_ms": 0.4},
        "fill": {"requests": 100, "errors": 3, "status_errors": 3, "socket_errors": 0},
        "timed_out": [],
    }
    ceiling = {"per_second": 1000.0, "fill": {"requests": 100, "errors": 0}, "timed_out": []}
    verdict = report.verdicts({"ordered_lane": {"hookline": hookline, "ceiling": ceiling}})
    assert verdict == {
        "lane_ratio": {"value": 0.9, "target": ">= 0.5", "met": False},
        "lane_in_order_one_at_a_time": {"value": True, "met": False},
        "lane_all_recorded": {"value": 100, "target": "= 100", "met": False},
        "lane_errors": {"value": 3, "target": "= 0", "met": False},
        "lane_complete": {"value": True, "met": True, "timed_out": []},
    }
    table = report.markdown({"ordered_lane": {"hookline": hookline, "ceiling": ceiling}}, verdict)
    assert "|  | errors (answers >= 400, socket errors) | 3 (3 >= 400) | 0 |  | = 0 | **no** |" in table
    assert "|  | in order, one at a time | yes (min gap 0.400 ms) | - |  |  | **no** |" in table


def test_a_wait_that_timed_out_fails_its_scenario_loudly() -> None:
    hookline = {"per_second": 900.0, "messages": 15000, "expected": 20000, "timed_out": ["5,000 still ready"]}
    results = {"worker_drain": {"hookline": hookline, "ceiling": {"per_second": 1000.0, "timed_out": []}}}
    verdict = report.verdicts(results)
    assert verdict == {
        "drain_ratio": {"value": 0.9, "target": ">= 0.5", "met": False},
        "drain_all_recorded": {"value": 15000, "target": "= 20,000", "met": False},
        "drain_complete": {"value": False, "met": False, "timed_out": ["5,000 still ready"]},
    }
    table = report.markdown(results, verdict)
    assert "|  | complete (no wait timed out) | no: 5,000 still ready | yes |  |  | **no** |" in table


def test_more_records_than_messages_is_not_every_record_committed_once() -> None:
    hookline = {"per_second": 900.0, "messages": 20001, "expected": 20000, "timed_out": []}
    results = {"worker_drain": {"hookline": hookline, "ceiling": {"per_second": 1000.0, "timed_out": []}}}
    assert report.verdicts(results)["drain_all_recorded"] == {
        "value": 20001,
        "target": "= 20,000",
        "met": False,
    }


def test_a_ceiling_that_measured_nothing_meets_no_target() -> None:
    verdict = report.verdicts(_accept(ceiling_p99=0.0))
    assert verdict["accept_p99_factor"] == {"value": None, "target": "<= 2", "met": False}
    missing = {
        "worker_drain": {"hookline": {"per_second": 10.0, "messages": 1, "expected": 1}, "ceiling": {}}
    }
    assert report.verdicts(missing)["drain_ratio"] == {"value": None, "target": ">= 0.5", "met": False}


def test_the_cpu_ratio_is_hookline_over_ceiling_and_a_drain_counts_per_execution() -> None:
    side = {"per_second": 1.0, "messages": 100, "expected": 100, "cpu_messages": 100, "cpu_seconds": 1.0}
    hookline = {**side, "cpu_percent": {"worker": 30}}
    ceiling = {**side, "cpu_percent": {"ceiling-consumer": 10}}
    results = {"worker_drain": {"hookline": hookline, "ceiling": ceiling}}
    table = report.markdown(results, report.verdicts(results))
    assert "|  | CPU ms per execution (all processes) | 3.00 | 1.00 | 3.00x |  |  |" in table


def test_the_watchdog_leaves_a_row_that_fails() -> None:
    results = {"watchdog": "stopped after 540 s, during worker_drain"}
    verdict = report.verdicts(results)
    assert verdict == {
        "run_complete": {
            "value": False,
            "met": False,
            "timed_out": ["stopped after 540 s, during worker_drain"],
        }
    }
    assert report.markdown(results, verdict).splitlines()[-1] == (
        "| run | complete | no: stopped after 540 s, during worker_drain |  |  |  | **no** |"
    )


# -- the measured window (scenario 2) ------------------------------------------------------


def test_backlog_growth_is_measured_from_the_measured_start_not_the_warm_up() -> None:
    began = 1000.0
    warm_up = [(998.0, 0), (999.0, 0)]
    measured = [(began + t, 100 * int(t)) for t in range(11)]  # grows 100 messages/s
    summary = backlog_summary(warm_up + measured, began, 1000, 2000.0)
    assert summary["samples"][0] == (0.0, 0)
    assert len(summary["samples"]) == 11
    assert summary["growth_per_s"] == 100.0
    assert summary["steady"] is False


class _FakeBench:
    """What scenarios.load() asks of a Bench."""

    def __init__(self, tmp_path: Path) -> None:
        self.options = Options(seconds=0.2, warmup=0.2)
        self.body_file = tmp_path / "body.json"

    def cpu_meter(self) -> Any:
        class Meter:
            def start(self) -> None: ...

            def stop(self) -> dict[str, float]:
                return {"ingress": 50.0}

        return Meter()

    def profiler(self, label: str) -> None:
        return None


async def test_a_load_starts_its_measured_window_after_the_warm_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[float, float]] = []

    async def fake_wrk(url: str, body_file: Path, **options: Any) -> Load:
        start = time.time()
        await asyncio.sleep(options["seconds"])
        calls.append((start, time.time()))
        return Load(
            requests=10,
            seconds=options["seconds"],
            rps=50.0,
            p50_ms=1,
            p90_ms=1,
            p99_ms=1,
            max_ms=1,
            errors=0,
        )

    monkeypatch.setattr(scenarios, "run_wrk", fake_wrk)
    measured = await scenarios.load(_FakeBench(tmp_path), "x", "http://127.0.0.1:1/", {})  # type: ignore[arg-type]
    (_, warm_up_end), (load_start, load_end) = calls
    assert warm_up_end <= measured.began <= load_start
    assert load_end <= measured.ended
    assert measured.cpu == {"ingress": 50.0}


# -- the lane's order ----------------------------------------------------------------------


def _row(received: float, started: float, finished: float, id_: str) -> dict[str, Any]:
    return {"r": received, "s": started, "f": finished, "id": id_}


def test_runs_in_arrival_order_one_after_the_other_pass() -> None:
    rows = [_row(1.0, 10.0, 10.5, "a"), _row(2.0, 10.5, 11.0, "b"), _row(3.0, 11.2, 11.3, "c")]
    assert lane_order(rows) == {"runs": 3, "out_of_order": 0, "overlaps": 0, "min_gap_ms": 0.0}


def test_a_run_started_before_an_earlier_call_is_out_of_order() -> None:
    rows = [_row(1.0, 10.0, 10.1, "a"), _row(3.0, 10.2, 10.3, "c"), _row(2.0, 10.4, 10.5, "b")]
    assert lane_order(rows)["out_of_order"] == 1


def test_a_run_starting_before_the_previous_one_finished_is_an_overlap() -> None:
    rows = [_row(1.0, 10.0, 10.5, "a"), _row(2.0, 10.25, 10.75, "b")]
    assert lane_order(rows) == {"runs": 2, "out_of_order": 0, "overlaps": 1, "min_gap_ms": -250.0}


def test_calls_received_in_the_same_microsecond_arrive_in_id_order() -> None:
    first, second = "0190a000-0000-7000-8000-000000000001", "0190a000-0000-7000-8000-000000000002"
    rows = [_row(1.0, 10.0, 10.1, first), _row(1.0, 10.2, 10.3, second)]
    assert lane_order(rows)["out_of_order"] == 0
    rows = [_row(1.0, 10.0, 10.1, second), _row(1.0, 10.2, 10.3, first)]
    assert lane_order(rows)["out_of_order"] == 1


# -- the broker's unacknowledged messages --------------------------------------------------


def test_unacknowledged_messages_are_added_up_over_every_channel() -> None:
    text = "127.0.0.1:34486 -> 127.0.0.1:56967 (1)\t0\n127.0.0.1:34486 -> 127.0.0.1:56967 (2)\t4\n\n"
    assert broker.unacknowledged(text) == 4
    assert broker.unacknowledged("") == 0


# -- stopping ------------------------------------------------------------------------------


def test_a_process_that_ignores_sigterm_is_killed_with_its_whole_group(tmp_path: Path) -> None:
    child_pid = tmp_path / "child.pid"
    script = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c',"
        " 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'])\n"
        f"open({str(child_pid)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    fleet = Fleet(tmp_path, dict(os.environ))
    fleet.start("stubborn", ["-c", script])
    deadline = time.monotonic() + 10
    while not child_pid.exists() or not child_pid.read_text():
        assert time.monotonic() < deadline, "the child did not start"
        time.sleep(0.05)
    pid = int(child_pid.read_text())
    fleet.stop("stubborn", timeout=0.5)
    deadline = time.monotonic() + 5
    while _alive(pid):
        assert time.monotonic() < deadline, "the supervisor's child outlived it"
        time.sleep(0.05)
    assert fleet.running == {}


def _alive(pid: int) -> bool:
    """Running, not a zombie (an orphan is reaped by init, or lingers as a zombie here)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


# -- SIGTERM and the watchdog --------------------------------------------------------------


class _IdleBench:
    """A Bench whose preparation never ends, so only a signal or the watchdog stops it."""

    folder = Path("/nonexistent")
    connected = False

    def __init__(self) -> None:
        self.processes = Fleet(Path("/nonexistent"), {})

    def start_servers(self) -> None: ...

    async def prepare(self) -> None:
        await asyncio.sleep(60)


@pytest.fixture
def sigterm_restored() -> Iterator[None]:
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.mark.usefixtures("sigterm_restored")
def test_sigterm_cancels_the_session_at_an_await_and_ends_it_as_interrupted() -> None:
    async def session() -> None:
        asyncio.get_running_loop().call_later(0.1, os.kill, os.getpid(), signal.SIGTERM)
        await run.session(_IdleBench(), run.SCENARIOS, {})  # type: ignore[arg-type]

    with pytest.raises(run.Interrupted, match="SIGTERM"):
        asyncio.run(session())


@pytest.mark.usefixtures("sigterm_restored")
def test_the_watchdog_stops_a_session_and_says_where(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run, "WATCHDOG_SECONDS", 0.2)
    results: dict[str, Any] = {}
    began = time.monotonic()
    asyncio.run(run.session(_IdleBench(), run.SCENARIOS, results))  # type: ignore[arg-type]
    assert time.monotonic() - began < 5
    assert results == {"watchdog": "stopped after 0.2 s, during start-up", "memory": {}}


def _neighbour(beside_p99: float, quiet_refused: int = 0, noisy_refused: int = 900) -> dict[str, Any]:
    def quiet(p99: float, refused: int) -> dict[str, Any]:
        return {"calls": 200, "refused": refused, "lag": {"runs": 200, "p50_ms": 4.0, "p99_ms": p99}}

    return {
        "quiet_alone": quiet(10.0, 0),
        "quiet_beside": quiet(beside_p99, quiet_refused),
        "noisy": {
            "offered_per_second": 1200.0,
            "refused": noisy_refused,
            "socket_errors": 0,
            "executed_per_second": 120.0,
            "bound": 2000,
            "probe_status": 503 if noisy_refused else 202,
            "probe_retry_after": "5" if noisy_refused else None,
        },
    }


def test_the_noisy_neighbour_is_met_when_the_quiet_trigger_is_unrefused_and_its_lag_within_2x() -> None:
    verdict = report.verdicts({"noisy_neighbour": _neighbour(beside_p99=18.0)})
    assert verdict["neighbour_quiet_refused"]["met"]
    assert verdict["neighbour_lag_factor"] == {"value": 1.8, "target": "<= 2", "met": True}
    assert verdict["neighbour_flooded"]["met"]
    assert verdict["neighbour_flooded"]["value"] == 10.0
    table = report.markdown({"noisy_neighbour": _neighbour(beside_p99=18.0)}, verdict)
    assert (
        "| 7. noisy neighbour (quiet beside flooded) | quiet: refused calls (alone + beside) | 0 |" in table
    )
    assert "| quiet: lag p99 ms beside / alone | 18.0 | 10.0 | 1.80x | <= 2 | yes |" in table


def test_a_refused_quiet_call_a_slow_quiet_trigger_or_no_flood_misses_the_targets() -> None:
    assert not report.verdicts({"noisy_neighbour": _neighbour(18.0, quiet_refused=1)})[
        "neighbour_quiet_refused"
    ]["met"]
    assert not report.verdicts({"noisy_neighbour": _neighbour(25.0)})["neighbour_lag_factor"]["met"]
    assert not report.verdicts({"noisy_neighbour": _neighbour(18.0, noisy_refused=0)})["neighbour_flooded"][
        "met"
    ]


def test_the_noisy_neighbour_scenario_can_be_chosen_alone() -> None:
    assert "noisy_neighbour" in run.SCENARIOS


def test_the_worker_path_harness_runs_every_delivery_through_to_its_ack(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # bench/worker_path.py reaches into the worker's private parts: it must keep up with them.
    from bench import worker_path

    assert worker_path.main(["--executions", "300", "--no-freeze"]) == 0
    line = capsys.readouterr().out
    assert re.fullmatch(
        r"\d+\.\d us CPU per execution, of which the collector \d+\.\d us \(\d+ collections; .*\)\n", line
    )
