"""`python -m bench.queue_cost`: what trigger queues cost one RabbitMQ node.

Starts a private node (like the tests and `make bench`), declares trigger queues as the
dispatcher does (quorum, bounded, dead-lettered, `x-queue-leader-locator: balanced`) up to
each count asked for, and prints, per count: the time to declare the new ones, the time to
declare them all again (what each reconcile does), the node's memory (Erlang's total and
the beam process's RSS), its file descriptors, and its CPU while idle for 10 s. Then it
restarts the node and times its boot with every queue. Root is needed (the node runs as
the `rabbitmq` user), as for `make bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import aio_pika

from shared.devstack.localservers.rabbitmq import LocalRabbitMQ
from shared.wire import topology

PREFIX = "cost"


def _beam_pid(rabbit: LocalRabbitMQ) -> int:
    return int(rabbit.ctl("eval", "list_to_integer(os:getpid()).").strip())


def _rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return round(int(match[1]) / 1024, 1) if match else 0.0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _nofile(pid: int) -> int:
    match = re.search(r"Max open files\s+(\d+)", Path(f"/proc/{pid}/limits").read_text())
    return int(match[1]) if match else 0


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def _declare(url: str, names: list[str]) -> float:
    began = time.monotonic()
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        arguments = dict(topology.trigger_queue_arguments(PREFIX, 10_000, 10))
        for name in names:
            await channel.declare_queue(name, durable=True, arguments=arguments)
    return round(time.monotonic() - began, 2)


def _names(count: int) -> list[str]:
    return [topology.trigger_queue_name(PREFIX, f"ws{i // 50}", f"trigger{i}") for i in range(count)]


async def measure(counts: list[int], idle: float) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="hookline-queue-cost-"))
    os.chmod(folder, 0o755)  # the node runs as the rabbitmq user
    rabbit = LocalRabbitMQ(folder / "rabbitmq")
    out: dict[str, Any] = {"counts": []}
    try:
        url = rabbit.start()
        pid = _beam_pid(rabbit)
        out["nofile_limit"] = _nofile(pid)
        out["empty"] = {"rss_mib": _rss_mib(pid), "fds": _fds(pid)}
        declared = 0
        for count in counts:
            names = _names(count)
            new = await _declare(url, names[declared:])
            declared = count
            again = await _declare(url, names)
            await asyncio.sleep(2)
            before = _cpu_seconds(pid)
            await asyncio.sleep(idle)
            cpu = round(100 * (_cpu_seconds(pid) - before) / idle, 1)
            memory = int(rabbit.ctl("eval", "erlang:memory(total).").strip())
            row = {
                "queues": count,
                "declare_new_s": new,
                "declare_all_again_s": again,
                "erlang_memory_mib": round(memory / 2**20, 1),
                "rss_mib": _rss_mib(pid),
                "fds": _fds(pid),
                "idle_cpu_percent": cpu,
            }
            out["counts"].append(row)
            print(json.dumps(row), flush=True)
        rabbit.stop()
        began = time.monotonic()
        rabbit.start()
        out["restart_s"] = round(time.monotonic() - began, 1)
        pid = _beam_pid(rabbit)
        out["after_restart"] = {"rss_mib": _rss_mib(pid), "fds": _fds(pid)}
    finally:
        rabbit.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.queue_cost", description=__doc__)
    parser.add_argument("--counts", default="200,500,1000", help="queue counts, ascending")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measured per count")
    args = parser.parse_args()
    counts = [int(x) for x in args.counts.split(",")]
    print(json.dumps(asyncio.run(measure(counts, args.idle)), indent=2))


if __name__ == "__main__":
    main()
