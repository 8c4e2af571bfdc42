"""`hookline status`: is the stack up (ingress readiness, every service process's heartbeat),
the broker's nodes (and, for `hookline up`'s local cluster, the queues each leads), what
waits where, how much fails, what retention deleted last."""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import httpx
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from yarl import URL

from shared.broker.failures import report_connect_failures_once
from shared.broker.link import connect_once
from shared.cli.commands import runs
from shared.cli.commands.output import print_json, print_table
from shared.db.deadletters import letter_counts
from shared.db.pool import connect
from shared.db.retention import LastSweep, last_sweeps
from shared.db.runlog import FailureRate, failure_rate
from shared.devstack.localservers import LocalServerError
from shared.devstack.localservers.cluster import read_states
from shared.errors import BrokerUnavailable, DatabaseUnavailable
from shared.ops.queues import QueueDepth, queue_depths
from shared.runtime.heartbeats import ServiceBeat, service_beats
from shared.settings import Settings, read_stack


@dataclass(frozen=True)
class Node:
    """A broker node as `hookline status` shows it."""

    url: str  # without its password
    answers: bool
    name: str | None = None  # the Erlang node name (local cluster only)
    leads: tuple[str, ...] | None = None  # the quorum queues it leads (local cluster only)


def register(sub: Any) -> None:
    p = sub.add_parser("status", help="services up, queue depths and consumers, recent failure rate")
    p.add_argument("--minutes", type=int, default=15, help="failure-rate window (default 15)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=runs(_status))


def ingress_readiness(settings: Settings) -> dict[str, Any]:
    """The ingress's `/readyz` answer, or why there is none."""
    try:
        answer = httpx.get(f"{settings.public_url}/readyz", timeout=3)
    except httpx.HTTPError as exc:
        return {"ready": False, "error": f"unreachable ({type(exc).__name__})"}
    try:
        body: dict[str, Any] = answer.json()
    except ValueError:
        return {"ready": False, "error": f"answered {answer.status_code}"}
    return body


async def _status(settings: Settings, ns: argparse.Namespace) -> int:
    ingress = ingress_readiness(settings)
    services: list[ServiceBeat] | None = None
    rate: FailureRate | None = None
    queues: list[QueueDepth] | None = None
    sweeps: list[LastSweep] = []
    dead = 0
    broker_error: str | None = None
    try:
        async with connect(settings.database_url) as db:
            services = await service_beats(db)
            rate = await failure_rate(db, ns.minutes)
            sweeps = await last_sweeps(db)
            dead = sum((await letter_counts(db)).values())
            try:
                async with connect_once(settings.amqp_url, "hookline-status") as broker:
                    queues = await queue_depths(broker, db, settings.amqp_prefix)
            except BrokerUnavailable as exc:
                queues, broker_error = None, str(exc)  # why: a TLS refusal says what to fix
    except DatabaseUnavailable:
        pass  # reported below: the rest of the report needs the database
    nodes = await broker_nodes(settings)
    healthy = bool(ingress.get("ready")) and services is not None and queues is not None
    if ns.json:
        print_json(
            {
                "ingress": ingress,
                "database": services is not None,
                "broker": queues is not None,
                **({"broker_error": broker_error} if broker_error else {}),
                "nodes": [vars(x) for x in nodes],
                "services": [{**vars(x), "state": x.state} for x in services or []],
                "queues": queues,
                "failures": {**vars(rate), "rate": rate.rate} if rate else None,
                "dead_letters": dead,
                "retention": [vars(x) for x in sweeps],
            }
        )
        return 0 if healthy else 1
    checks = ", ".join(f"{k} {'ok' if v else 'DOWN'}" for k, v in ingress.get("checks", {}).items())
    state = "ready" if ingress.get("ready") else "NOT READY"
    print(f"ingress {settings.public_url}: {state} ({checks or ingress.get('error', '')})")
    if services is None:
        print("database: unreachable (services, queues and failures need it)")
        return 1
    _print_services(services)
    _print_nodes(nodes)
    if queues is None:
        print(f"broker: {broker_error or 'unreachable'}")
    else:
        rows = [("QUEUE", "KIND", "TRIGGER", "MESSAGES", "CONSUMERS")]
        for q in queues:
            trigger = f"{q.workspace}/{q.trigger}" if q.trigger else "-"
            rows.append(
                (q.name, q.kind, trigger, str(q.messages), str(q.consumers) if q.exists else "missing")
            )
        print_table(rows)
    print(f"dead letters: {dead} waiting (hookline dlq list)")
    assert rate is not None
    share = f" ({rate.rate:.1%})" if rate.rate is not None else ""
    print(f"last {rate.minutes} min: {rate.finished} runs finished, {rate.failed} failed{share}")
    print(retention_line(sweeps))
    return 0 if healthy else 1


async def broker_nodes(settings: Settings) -> list[Node]:
    """Every node of HOOKLINE_AMQP_URL and whether it answers AMQP; for the local cluster of
    `hookline up --rabbitmq-nodes N`, also its node name and the queues it leads."""
    urls = settings.amqp_urls
    answers = await asyncio.gather(*(_answers(url) for url in urls))
    by_port: dict[int | None, tuple[str, tuple[str, ...], bool]] = {}
    stack = read_stack()
    if stack is not None and stack.rabbitmq_cluster is not None and stack.amqp_url == settings.amqp_url:
        try:
            states = await asyncio.to_thread(read_states, Path(stack.rabbitmq_cluster))
        except LocalServerError:
            states = []
        by_port = {port: (state.name, state.leads, state.running) for state, port in states}
    nodes = []
    for url, answered in zip(urls, answers, strict=True):
        parsed = URL(url)
        shown = str(parsed.with_password("******")) if parsed.password else url
        known = by_port.get(parsed.port)
        if known is None:
            nodes.append(Node(shown, answered))
        else:
            name, leads, running = known
            nodes.append(Node(shown, answered, name, leads if running else ()))
    return nodes


async def _answers(url: str) -> bool:
    report_connect_failures_once()  # a node that refuses is shown DOWN, not logged by aiormq too
    try:
        connection = await aio_pika.connect(
            url, timeout=3, client_properties={"connection_name": "hookline-status"}
        )
    except (*CONNECTION_EXCEPTIONS, TimeoutError):
        return False
    await connection.close()
    return True


def _print_nodes(nodes: list[Node]) -> None:
    rows = [("BROKER NODE", "NAME", "STATE", "LEADS")]
    for x in nodes:
        leads = "-" if x.leads is None else (f"{len(x.leads)}: {', '.join(x.leads)}" if x.leads else "0")
        rows.append((x.url, x.name or "-", "running" if x.answers else "DOWN", leads))
    print_table(rows)


def retention_line(sweeps: list[LastSweep]) -> str:
    """One line: when retention last swept and what it deleted."""
    if not sweeps:
        return "retention: no sweep yet"
    at = max(x.swept_at for x in sweeps).isoformat(timespec="seconds")
    deleted = ", ".join(f"{x.deleted} {x.family.replace('_', ' ')}" for x in sweeps)
    total = sum(x.deleted_total for x in sweeps)
    return f"retention: last sweep {at} deleted {deleted} ({total} rows in all)"


def _print_services(services: list[ServiceBeat]) -> None:
    if not services:
        print("services: none has reported in the last 10 minutes")
        return
    rows = [("SERVICE", "INSTANCE", "STATE", "UP SINCE", "METRICS")]
    for x in services:
        state = f"silent {x.silent_seconds:.0f} s" if x.state == "silent" else x.state
        port = str(x.metrics_port) if x.metrics_port else "-"
        rows.append((x.service, x.instance, state, x.started_at.isoformat(timespec="seconds"), port))
    print_table(rows)
