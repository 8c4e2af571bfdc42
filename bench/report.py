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
    "neighbour_quiet_refused": 0,
    "neighbour_lag_factor": 2.0,
    "neighbour_flood_factor": 3.0,
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


def nodes_text(nodes: int) -> str:
    """ "RabbitMQ: 3 nodes" (or "1 node")."""
    return f"RabbitMQ: {nodes} node{'' if nodes == 1 else 's'}"


def header(document: dict[str, Any]) -> str:
    """The line above the table: how many broker nodes the run used, and the replication."""
    nodes = document.get("rabbitmq_nodes", 1)
    if nodes == 1:
        return f"{nodes_text(nodes)} (quorum queues of one replica)"
    return (
        f"{nodes_text(nodes)} (one local cluster; quorum queues of both sides with"
        f" {min(3, nodes)} replicas, leaders balanced over the nodes)"
    )


def machine_line(document: dict[str, Any]) -> str:
    """The machine, versions, broker nodes, load and duration the table was measured with."""
    m = document["machine"]
    nodes = document.get("rabbitmq_nodes", m.get("rabbitmq_nodes", 1))
    return (
        f"{m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}, Python {m['python']}, "
        f"RabbitMQ {m.get('rabbitmq', '?')} ({nodes_text(nodes)}), PostgreSQL {m.get('postgresql', '?')}; "
        f"load average {document['load_average_before'][0]} before, {document['load_average_after'][0]} after; "
        f"{document['seconds']:.0f} s in all."
    )


def _ratio(a: float, b: float | None) -> float | None:
    """a / b; None when the ceiling `b` measured nothing (a target on it cannot be met)."""
    return round(a / b, 2) if b else None


def _x(ratio: float | None, suffix: str = "") -> str:
    return "-" if ratio is None else f"{ratio:.2f}{suffix}"


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
    """Each target with its measured value and whether it was met.

    A scenario in which either side had errors (wrk's answers >= 400, socket errors,
    timeouts) or in which a wait timed out meets none of its targets, and says so in a row
    of its own (`<scenario>_errors`, `<scenario>_complete`).
    """
    out: dict[str, dict[str, Any]] = {}
    if (s := results.get("async_accept")) is not None:
        h, c = s["hookline"], s["ceiling"]
        targets = {
            "accept_rps": _verdict(_ratio(h["rps"], c.get("rps")), ">=", TARGETS["accept_rps"]),
            "accept_p99_factor": _verdict(
                _ratio(h["p99_ms"], c.get("p99_ms")), "<=", TARGETS["accept_p99_factor"]
            ),
        }
        out |= _scenario("accept", s, targets)
    if (s := results.get("async_end_to_end")) is not None:
        h, c = s["hookline"], s["ceiling"]
        steady = h["backlog"]["steady"]
        targets = {
            "end_to_end_rps": _verdict(_ratio(h["rps"], c.get("rps")), ">=", TARGETS["end_to_end_rps"]),
            "end_to_end_backlog_steady": {"value": steady, "met": steady},
        }
        out |= _scenario("end_to_end", s, targets)
    if (s := results.get("request_response")) is not None:
        h, c = s["hookline"], s["ceiling"]
        ceiling_p50 = c["sequential"].get("p50_ms") if c["sequential"].get("requests") else None
        extra = round(h["sequential"]["p50_ms"] - ceiling_p50, 2) if ceiling_p50 else None
        targets = {
            "rpc_rps": _verdict(_ratio(h["rps"], c.get("rps")), ">=", TARGETS["rpc_rps"]),
            "sequential_p50_extra_ms": _verdict(extra, "<=", TARGETS["sequential_p50_extra_ms"]),
        }
        out |= _scenario("rpc", s, targets)
    if (s := results.get("ordered_lane")) is not None:
        h, c = s["hookline"], s["ceiling"]
        order = h.get("order", {})
        one_by_one = bool(order) and order["out_of_order"] == 0 and order["min_gap_ms"] >= 0
        targets = {
            "lane_ratio": _verdict(_ratio(h["per_second"], c.get("per_second")), ">=", TARGETS["lane_ratio"]),
            "lane_in_order_one_at_a_time": {"value": one_by_one, "met": one_by_one},
            "lane_all_recorded": _recorded(h),
        }
        out |= _scenario("lane", s, targets)
    if (s := results.get("worker_drain")) is not None:
        h, c = s["hookline"], s["ceiling"]
        targets = {
            "drain_ratio": _verdict(
                _ratio(h["per_second"], c.get("per_second")), ">=", TARGETS["drain_ratio"]
            ),
            "drain_all_recorded": _recorded(h),
        }
        out |= _scenario("drain", s, targets)
    if (s := results.get("noisy_neighbour")) is not None:
        out |= _neighbour_verdicts(s)
    if (m := results.get("memory")) is not None:
        servers = m.get("ingress-server") or m.get("ingress") or [0]
        out["ingress_rss_mb"] = _verdict(max(servers), "<", TARGETS["ingress_rss_mb"])
    if (w := results.get("watchdog")) is not None:
        out["run_complete"] = {"value": False, "met": False, "timed_out": [w]}
    return out


def _neighbour_verdicts(s: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The quiet trigger is never refused and its lag stays within 2x of alone, while the noisy
    one is offered several times what it runs and refused (503 with Retry-After)."""
    alone, beside, noisy = s["quiet_alone"], s["quiet_beside"], s["noisy"]
    refused = alone["refused"] + beside["refused"]
    flooded = noisy["refused"] > 0 and noisy["probe_status"] == 503 and bool(noisy["probe_retry_after"])
    factor = _ratio(noisy["offered_per_second"], noisy["executed_per_second"])
    return {
        "neighbour_quiet_refused": _verdict(refused, "<=", TARGETS["neighbour_quiet_refused"]),
        "neighbour_lag_factor": _verdict(
            _ratio(beside["lag"]["p99_ms"], alone["lag"]["p99_ms"]), "<=", TARGETS["neighbour_lag_factor"]
        ),
        "neighbour_flooded": {
            **_verdict(factor, ">=", TARGETS["neighbour_flood_factor"]),
            "met": flooded and factor is not None and factor >= TARGETS["neighbour_flood_factor"],
        },
    }


def _recorded(h: dict[str, Any]) -> dict[str, Any]:
    """Records committed once the broker held nothing more: exactly the messages queued."""
    return {"value": h["messages"], "target": f"= {h['expected']:,}", "met": h["messages"] == h["expected"]}


def errors(side: dict[str, Any]) -> int:
    """A side's wrk errors: its measured loads (sequential ones too) and its fill."""
    return sum(part.get("errors", 0) for part in (side, side.get("sequential", {}), side.get("fill", {})))


def _scenario(
    prefix: str, s: dict[str, Any], targets: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    sides = [s["hookline"], s["ceiling"]]
    out = dict(targets)
    clean = True
    if any("errors" in side or "fill" in side for side in sides):
        count = sum(errors(side) for side in sides)
        out[f"{prefix}_errors"] = {"value": count, "target": "= 0", "met": count == 0}
        clean = count == 0
    if any("timed_out" in side for side in sides):
        timed_out = [what for side in sides for what in side.get("timed_out", [])]
        out[f"{prefix}_complete"] = {"value": not timed_out, "met": not timed_out, "timed_out": timed_out}
        clean = clean and not timed_out
    if not clean:
        for key in targets:
            out[key] = {**targets[key], "met": False}
    return out


def _verdict(value: float | None, how: str, target: float) -> dict[str, Any]:
    if value is None:
        met = False
    else:
        met = value >= target if how == ">=" else value <= target if how == "<=" else value < target
    return {"value": value, "target": f"{how} {target:g}", "met": met}


class _Table:
    """The Markdown rows, each with its verdict's target and whether it was met."""

    def __init__(self, verdict: dict[str, dict[str, Any]]) -> None:
        self.verdict = verdict
        self.rows = [
            "| scenario | measure | hookline | ceiling | ratio | target | met |",
            "|---|---|--:|--:|--:|---|---|",
        ]

    def row(self, scenario: str, measure: str, h: str, c: str, ratio: str = "", key: str = "") -> None:
        v = self.verdict.get(key)
        target = v.get("target", "") if v else ""
        met = _ok(v["met"]) if v else ""
        self.rows.append(f"| {scenario} | {measure} | {h} | {c} | {ratio} | {target} | {met} |")

    def rate(self, scenario: str, measure: str, h: float, c: float, key: str) -> None:
        self.row(scenario, measure, _n(h), _n(c), _x(_ratio(h, c)), key)

    def cpu(self, hr: dict[str, Any], cr: dict[str, Any], unit: str = "call") -> None:
        hc, cc = cpu_ms(hr), cpu_ms(cr)
        self.row("", f"CPU ms per {unit} (all processes)", f"{hc:.2f}", f"{cc:.2f}", _x(_ratio(hc, cc), "x"))

    def faults(self, prefix: str, h: dict[str, Any], c: dict[str, Any]) -> None:
        """The scenario's errors and complete rows, where it has them."""
        if f"{prefix}_errors" in self.verdict:
            self.row(
                "", "errors (answers >= 400, socket errors)", _errors(h), _errors(c), "", f"{prefix}_errors"
            )
        if f"{prefix}_complete" in self.verdict:
            self.row("", "complete (no wait timed out)", _complete(h), _complete(c), "", f"{prefix}_complete")


def markdown(results: dict[str, Any], verdict: dict[str, dict[str, Any]]) -> str:
    """The table: every hookline figure beside its ceiling, the ratio (hookline / ceiling), its target."""
    table = _Table(verdict)
    for name, write in (
        ("async_accept", _accept),
        ("async_end_to_end", _end_to_end),
        ("request_response", _request_response),
        ("ordered_lane", _lane),
        ("worker_drain", _drain),
        ("noisy_neighbour", _neighbour),
        ("memory", _memory),
    ):
        if (s := results.get(name)) is not None:
            write(table, s)
    if (w := results.get("watchdog")) is not None:
        table.row("run", "complete", f"no: {w}", "", "", "run_complete")
    return "\n".join(table.rows)


def _accept(t: _Table, s: dict[str, Any]) -> None:
    h, c = s["hookline"], s["ceiling"]
    t.rate("1. async accept (workers stopped)", "req/s", h["rps"], c["rps"], "accept_rps")
    t.row("", "p50 ms", _ms(h["p50_ms"]), _ms(c["p50_ms"]), _x(_ratio(h["p50_ms"], c["p50_ms"]), "x"))
    p99 = _x(_ratio(h["p99_ms"], c["p99_ms"]), "x")
    t.row("", "p99 ms", _ms(h["p99_ms"]), _ms(c["p99_ms"]), p99, "accept_p99_factor")
    t.cpu(h, c)
    t.faults("accept", h, c)


def _end_to_end(t: _Table, s: dict[str, Any]) -> None:
    h, c = s["hookline"], s["ceiling"]
    t.rate("2. async end to end (2 workers)", "accepted req/s", h["rps"], c["rps"], "end_to_end_rps")
    t.cpu(h, c)
    hback, cback = (f"{b['end']:,} ({b['growth_per_s']:+,.0f}/s)" for b in (h["backlog"], c["backlog"]))
    t.row("", "backlog at end (growth/s)", hback, cback, "", "end_to_end_backlog_steady")
    lag = h["lag"]
    t.row("", "executed/s while accepting", _n(lag["executed_per_second"]), "-")
    lags = f"{_ms(lag['p50_ms'])} / {_ms(lag['p99_ms'])}"
    t.row("", "lag accepted->executed p50 / p99 ms", lags, "-", f"{lag['executions']:,} runs")
    t.faults("end_to_end", h, c)


def _request_response(t: _Table, s: dict[str, Any]) -> None:
    h, c = s["hookline"], s["ceiling"]
    t.rate("3. request-response (2 workers)", "req/s", h["rps"], c["rps"], "rpc_rps")
    t.cpu(h, c)
    hlat, clat = (f"{_ms(x['p50_ms'])} / {_ms(x['p99_ms'])}" for x in (h, c))
    t.row("", "p50 / p99 ms", hlat, clat)
    hs, cs = h["sequential"], c["sequential"]
    t.row("", "1 client: req/s", _n(hs["rps"]), _n(cs["rps"]), _x(_ratio(hs["rps"], cs["rps"])))
    extra = f"{hs['p50_ms'] - cs['p50_ms']:+.2f} ms"
    hp50, cp50 = (f"{x['p50_ms']:.2f}" for x in (hs, cs))
    t.row("", "1 client: p50 ms", hp50, cp50, extra, "sequential_p50_extra_ms")
    t.faults("rpc", h, c)


def _lane(t: _Table, s: dict[str, Any]) -> None:
    h, c = s["hookline"], s["ceiling"]
    measure = f"executions/s ({h['messages']:,} calls)"
    t.rate("4. ordered lane", measure, h["per_second"], c["per_second"], "lane_ratio")
    t.cpu(h, c, "execution")
    gaps = f"{h.get('run_ms_p50', 0):.2f} / {h.get('gap_ms_p50', 0):.2f}"
    t.row("", "run / run-to-run gap p50 ms", gaps, "-")
    t.row("", "in order, one at a time", _order(h.get("order", {})), "-", "", "lane_in_order_one_at_a_time")
    t.row("", "records committed once drained", f"{h['messages']:,}", "-", "", "lane_all_recorded")
    t.faults("lane", h, c)


def _drain(t: _Table, s: dict[str, Any]) -> None:
    h, c = s["hookline"], s["ceiling"]
    measure = f"executions/s ({h['expected']:,} queued)"
    t.rate("5. worker drain (2 workers)", measure, h["per_second"], c["per_second"], "drain_ratio")
    t.cpu(h, c, "execution")
    t.row("", "records committed once drained", f"{h['messages']:,}", "-", "", "drain_all_recorded")
    t.faults("drain", h, c)


def _neighbour(t: _Table, s: dict[str, Any]) -> None:
    alone, beside, noisy = s["quiet_alone"], s["quiet_beside"], s["noisy"]
    name = "7. noisy neighbour (quiet beside flooded)"
    refused = alone["refused"] + beside["refused"]
    t.row(name, "quiet: refused calls (alone + beside)", str(refused), "-", "", "neighbour_quiet_refused")
    a, b = alone["lag"]["p99_ms"], beside["lag"]["p99_ms"]
    t.row(
        "", "quiet: lag p99 ms beside / alone", _ms(b), _ms(a), _x(_ratio(b, a), "x"), "neighbour_lag_factor"
    )
    offered, executed = noisy["offered_per_second"], noisy["executed_per_second"]
    t.row(
        "",
        f"noisy: offered / run per s ({noisy['refused']:,} refused 503, Retry-After {noisy['probe_retry_after']})",
        _n(offered),
        _n(executed),
        _x(_ratio(offered, executed), "x"),
        "neighbour_flooded",
    )


def _memory(t: _Table, m: dict[str, Any]) -> None:
    def mb(role: str) -> str:
        values = m.get(role) or []
        return f"{max(values):.0f} (max of {len(values)})" if values else "-"

    servers = mb("ingress-server"), mb("ceiling-app-server")
    t.row("6. memory", "peak RSS MB, ingress servers", servers[0], servers[1], "", "ingress_rss_mb")
    t.row("", "peak RSS MB, workers", mb("worker"), mb("ceiling-consumer"))
    t.row("", "peak RSS MB, dispatcher", mb("dispatcher"), "-")


def _errors(side: dict[str, Any]) -> str:
    parts = (side, side.get("sequential", {}), side.get("fill", {}))
    total = errors(side)
    status = sum(part.get("status_errors", 0) for part in parts)
    return f"{total:,} ({status:,} >= 400)" if total else "0"


def _complete(side: dict[str, Any]) -> str:
    timed_out = side.get("timed_out", [])
    return "no: " + "; ".join(timed_out) if timed_out else "yes"


def _order(order: dict[str, Any]) -> str:
    if not order:
        return "no runs"
    if order["out_of_order"] == 0 and order["min_gap_ms"] >= 0:
        return f"yes (min gap {order['min_gap_ms']:.3f} ms)"
    return (
        f"no: {order['out_of_order']:,} out of order, {order['overlaps']:,} overlapping"
        f" (min gap {order['min_gap_ms']:.3f} ms)"
    )


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
