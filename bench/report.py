"""The run's results as a Markdown table (stdout) and a JSON file (bench/results/)."""

from __future__ import annotations

import contextlib
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

# Each target: (scenario, what is compared, how). Ratios are hookline / ceiling.
TARGETS = {
    "accept_rps": 0.85,
    "accept_p99_factor": 2.0,
    "end_to_end_rps": 0.85,
    "rpc_rps": 0.80,
    "sequential_p50_extra_ms": 1.0,
    "lane_ratio": 0.50,
    "drain_ratio": 0.50,
    "ingress_rss_mb": 120.0,
}


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    packages = {}
    for name in ("litestar", "uvicorn", "uvloop", "httptools", "aio-pika", "aiormq", "msgspec", "asyncpg"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = "-"
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": packages,
    }


def _ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else 0.0


def _n(x: float) -> str:
    return f"{x:,.0f}"


def _ms(x: float) -> str:
    return f"{x:.1f}"


def cpu_ms(result: dict[str, Any]) -> float:
    """CPU of all our processes (services, ceiling, servers; not wrk) per call or per message, in ms.

    Steadier than a rate on a shared machine: other work slows a run down, but does not make
    a call cost more CPU (much).
    """
    percent = sum(v for k, v in result.get("cpu_percent", {}).items() if k != "machine")
    if "cpu_messages" in result:  # a drain: the window from the consumers' start
        count, seconds = result["cpu_messages"], result["cpu_seconds"]
    else:
        count, seconds = result.get("requests", 0), result.get("seconds", 0.0)
    return round(10 * percent * seconds / count, 3) if count else 0.0


def _ok(flag: bool) -> str:
    return "yes" if flag else "**no**"


def verdicts(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target with its measured value and whether it was met."""
    out: dict[str, dict[str, Any]] = {}
    if (s := results.get("async_accept")) is not None:
        h, c = s["hookline"], s["ceiling"]
        out["accept_rps"] = _verdict(_ratio(h["rps"], c["rps"]), ">=", TARGETS["accept_rps"])
        out["accept_p99_factor"] = _verdict(
            _ratio(h["p99_ms"], c["p99_ms"]), "<=", TARGETS["accept_p99_factor"]
        )
    if (s := results.get("async_end_to_end")) is not None:
        h, c = s["hookline"], s["ceiling"]
        out["end_to_end_rps"] = _verdict(_ratio(h["rps"], c["rps"]), ">=", TARGETS["end_to_end_rps"])
        out["end_to_end_backlog_steady"] = {"value": h["backlog"]["steady"], "met": h["backlog"]["steady"]}
    if (s := results.get("request_response")) is not None:
        h, c = s["hookline"], s["ceiling"]
        out["rpc_rps"] = _verdict(_ratio(h["rps"], c["rps"]), ">=", TARGETS["rpc_rps"])
        extra = round(h["sequential"]["p50_ms"] - c["sequential"]["p50_ms"], 2)
        out["sequential_p50_extra_ms"] = _verdict(extra, "<=", TARGETS["sequential_p50_extra_ms"])
    if (s := results.get("ordered_lane")) is not None:
        ratio = _ratio(s["hookline"]["per_second"], s["ceiling"]["per_second"])
        out["lane_ratio"] = _verdict(ratio, ">=", TARGETS["lane_ratio"])
    if (s := results.get("worker_drain")) is not None:
        h = s["hookline"]
        ratio = _ratio(h["per_second"], s["ceiling"]["per_second"])
        out["drain_ratio"] = _verdict(ratio, ">=", TARGETS["drain_ratio"])
        out["drain_all_recorded"] = {"value": h["messages"], "met": h["messages"] >= h["expected"]}
    if (m := results.get("memory")) is not None:
        servers = m.get("ingress-server") or m.get("ingress") or [0]
        out["ingress_rss_mb"] = _verdict(max(servers), "<", TARGETS["ingress_rss_mb"])
    return out


def _verdict(value: float, how: str, target: float) -> dict[str, Any]:
    met = value >= target if how == ">=" else value <= target if how == "<=" else value < target
    return {"value": value, "target": f"{how} {target:g}", "met": met}


def markdown(results: dict[str, Any], verdict: dict[str, dict[str, Any]]) -> str:
    """The table: every hookline figure beside its ceiling, the ratio, and its target."""
    rows = [
        "| scenario | measure | hookline | ceiling | ratio | target | met |",
        "|---|---|--:|--:|--:|---|---|",
    ]

    def row(scenario: str, measure: str, h: str, c: str, ratio: str = "", key: str = "") -> None:
        v = verdict.get(key)
        target = v.get("target", "") if v else ""
        met = _ok(v["met"]) if v else ""
        rows.append(f"| {scenario} | {measure} | {h} | {c} | {ratio} | {target} | {met} |")

    def rate(scenario: str, measure: str, h: float, c: float, key: str) -> None:
        row(scenario, measure, _n(h), _n(c), f"{_ratio(h, c):.2f}", key)

    def cpu(hr: dict[str, Any], cr: dict[str, Any]) -> None:
        hc, cc = cpu_ms(hr), cpu_ms(cr)
        row("", "CPU ms per call (all processes)", f"{hc:.2f}", f"{cc:.2f}", f"({_ratio(cc, hc):.2f})")

    if (s := results.get("async_accept")) is not None:
        h, c = s["hookline"], s["ceiling"]
        rate("1. async accept (workers stopped)", "req/s", h["rps"], c["rps"], "accept_rps")
        row("", "p50 ms", _ms(h["p50_ms"]), _ms(c["p50_ms"]), f"{_ratio(h['p50_ms'], c['p50_ms']):.2f}x")
        p99 = f"{_ratio(h['p99_ms'], c['p99_ms']):.2f}x"
        row("", "p99 ms", _ms(h["p99_ms"]), _ms(c["p99_ms"]), p99, "accept_p99_factor")
        cpu(h, c)
    if (s := results.get("async_end_to_end")) is not None:
        h, c = s["hookline"], s["ceiling"]
        rate("2. async end to end (2 workers)", "accepted req/s", h["rps"], c["rps"], "end_to_end_rps")
        cpu(h, c)
        hb, cb = h["backlog"], c["backlog"]
        hback, cback = (f"{b['end']:,} ({b['growth_per_s']:+,.0f}/s)" for b in (hb, cb))
        row("", "backlog at end (growth/s)", hback, cback, "", "end_to_end_backlog_steady")
        lag = h["lag"]
        row("", "executed/s while accepting", _n(lag["executed_per_second"]), "-")
        lags = f"{_ms(lag['p50_ms'])} / {_ms(lag['p99_ms'])}"
        row("", "lag accepted->executed p50 / p99 ms", lags, "-", f"{lag['executions']:,} runs")
    if (s := results.get("request_response")) is not None:
        h, c = s["hookline"], s["ceiling"]
        rate("3. request-response (2 workers)", "req/s", h["rps"], c["rps"], "rpc_rps")
        cpu(h, c)
        hlat, clat = (f"{_ms(x['p50_ms'])} / {_ms(x['p99_ms'])}" for x in (h, c))
        row("", "p50 / p99 ms", hlat, clat)
        hs, cs = h["sequential"], c["sequential"]
        row("", "1 client: req/s", _n(hs["rps"]), _n(cs["rps"]), f"{_ratio(hs['rps'], cs['rps']):.2f}")
        extra = f"{hs['p50_ms'] - cs['p50_ms']:+.2f} ms"
        hp50, cp50 = (f"{x['p50_ms']:.2f}" for x in (hs, cs))
        row("", "1 client: p50 ms", hp50, cp50, extra, "sequential_p50_extra_ms")
    if (s := results.get("ordered_lane")) is not None:
        h, c = s["hookline"], s["ceiling"]
        measure = f"executions/s ({h['messages']:,} calls)"
        rate("4. ordered lane", measure, h["per_second"], c["per_second"], "lane_ratio")
        cpu(h, c)
        gaps = f"{h.get('run_ms_p50', 0):.2f} / {h.get('gap_ms_p50', 0):.2f}"
        row("", "run / run-to-run gap p50 ms", gaps, "-")
    if (s := results.get("worker_drain")) is not None:
        h, c = s["hookline"], s["ceiling"]
        measure = f"executions/s ({h['expected']:,} queued)"
        rate("5. worker drain (2 workers)", measure, h["per_second"], c["per_second"], "drain_ratio")
        cpu(h, c)
        row("", "records committed", f"{h['messages']:,}", "-", "", "drain_all_recorded")
    if (m := results.get("memory")) is not None:

        def mb(role: str) -> str:
            values = m.get(role) or []
            return f"{max(values):.0f} (max of {len(values)})" if values else "-"

        servers = mb("ingress-server"), mb("ceiling-app-server")
        row("6. memory", "peak RSS MB, ingress servers", servers[0], servers[1], "", "ingress_rss_mb")
        row("", "peak RSS MB, workers", mb("worker"), mb("ceiling-consumer"))
        row("", "peak RSS MB, dispatcher", mb("dispatcher"), "-")
    return "\n".join(rows)


def cpu_table(results: dict[str, Any]) -> str:
    """CPU per role (% of one core) during each measured load: what bounded it."""
    roles = ["ingress", "worker", "ceiling-app", "ceiling-consumer", "rabbitmq", "postgres", "machine"]
    lines = ["| load | " + " | ".join(roles) + " |", "|---|" + "--:|" * len(roles)]
    for name, scenario in results.items():
        if not isinstance(scenario, dict) or "hookline" not in scenario:
            continue
        for side in ("ceiling", "hookline"):
            cpu = scenario[side].get("cpu_percent")
            if cpu:
                cells = [str(cpu.get(role, "")) for role in roles]
                lines.append(f"| {name} ({side}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)
