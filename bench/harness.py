"""The bench's own stack: private servers, hookline's services and the ceiling's, and their controls.

Everything lives under one temporary folder and is stopped by `close()`, in order: load,
ingress, workers, dispatcher, the ceiling's processes, then the servers.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import asyncpg
import httpx
import msgspec
from aio_pika.abc import AbstractConnection

from bench import broker
from bench.ceiling_consumer import Stats
from bench.cpu import CpuMeter
from bench.processes import ROOT, Fleet
from bench.profile import Profiler
from shared.broker.inspection import queue_state
from shared.db.keys import create_key
from shared.db.migrate import migrate
from shared.db.pool import connect
from shared.db.registry import apply_workspace
from shared.devstack.localservers import LocalPostgres, LocalRabbitMQ, free_port
from shared.devstack.localservers.cluster import LocalRabbitMQCluster
from shared.spec.loader import load_file
from shared.wire import topology

HERE = Path(__file__).resolve().parent
PREFIX = "bench"
WORKSPACE = "bench"
STOP_ORDER = ("ingress", "worker", "dispatcher", "ceiling-app", "ceiling-consumer")


@dataclass(frozen=True)
class Options:
    """How big the run is."""

    seconds: float = 10.0  # each measured load
    warmup: float = 2.0  # before each measured load, same target, not measured
    connections: int = 50
    ingress_workers: int = 2  # server processes (hookline's ingress and the ceiling's app)
    workers: int = 2  # worker processes (and ceiling consumers)
    worker_concurrency: int = 32  # hookline's default; the ceiling responder's prefetch too
    lane_calls: int = 5_000
    drain_messages: int = 20_000
    body_bytes: int = 1024
    rabbitmq_nodes: int = 1  # more: a local cluster, quorum queues with min(3, nodes) replicas


@dataclass
class Bench:
    """One run's servers and processes."""

    options: Options
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="hookline-bench-")))
    servers: list[LocalRabbitMQ | LocalRabbitMQCluster | LocalPostgres] = field(default_factory=list)
    fleet: Fleet | None = None
    amqp_url: str = ""  # the harness's own connection: the first node
    amqp_urls: str = ""  # every node's, comma separated: what the services are given
    database_url: str = ""
    ingress_port: int = 0
    ceiling_port: int = 0
    api_key: str = ""
    body_file: Path = Path()
    body: bytes = b""
    versions: dict[str, int] = field(default_factory=dict)
    versions_info: dict[str, str] = field(default_factory=dict)
    profile_roles: tuple[str, ...] = ()  # py-spy on these roles' processes during each load
    profile_dir: Path = Path()
    _amqp: AbstractConnection | None = None

    # -- bring-up ---------------------------------------------------------------------------

    def start_servers(self) -> None:
        """Private RabbitMQ (one node, or a local cluster of `rabbitmq_nodes`) and PostgreSQL
        (durable: fsync on, as in production)."""
        self.folder.chmod(0o755)  # the rabbitmq and postgres users must enter it
        (self.folder / "logs").mkdir()
        rabbit: LocalRabbitMQ | LocalRabbitMQCluster
        if self.options.rabbitmq_nodes > 1:
            rabbit = LocalRabbitMQCluster(self.folder / "rabbitmq", self.options.rabbitmq_nodes)
        else:
            rabbit = LocalRabbitMQ(self.folder / "rabbitmq")
        self.servers.append(rabbit)
        self.amqp_urls = rabbit.start()
        self.amqp_url = self.amqp_urls.split(",")[0]
        postgres = LocalPostgres(self.folder / "postgres")
        self.servers.append(postgres)
        self.database_url = postgres.start()
        self.versions_info["rabbitmq"] = self.ctl("version").strip()
        self.ingress_port = free_port()
        self.ceiling_port = free_port(avoid={self.ingress_port})
        self.fleet = Fleet(self.folder / "logs", self._env())
        self.body = make_body(self.options.body_bytes)
        self.body_file = self.folder / "body.json"
        self.body_file.write_bytes(self.body)

    def _env(self) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("HOOKLINE_", "BENCH_"))}
        return {
            **inherited,
            # The services run the code of this tree, whichever checkout is installed.
            "PYTHONPATH": str(ROOT),
            "HOOKLINE_AMQP_URL": self.amqp_urls,
            "HOOKLINE_DATABASE_URL": self.database_url,
            "HOOKLINE_AMQP_PREFIX": PREFIX,
            "HOOKLINE_PORT": str(self.ingress_port),
            "HOOKLINE_ADMIN_TOKEN": "bench-admin-token-0123456789",
            "HOOKLINE_LOG_JSON": "true",
            "HOOKLINE_WORKER_CONCURRENCY": str(self.options.worker_concurrency),
            # The bound the shared queue had before trigger queues: a scenario's trigger takes
            # a whole load (async accept fills its queue with workers stopped).
            "HOOKLINE_TRIGGER_QUEUE_MAX_LENGTH": "1000000",
            # Every node: each ceiling process connects to one of them, at random, as each
            # of hookline's services starts at a random node.
            "BENCH_AMQP_URL": self.amqp_urls,
        }

    async def prepare(self) -> None:
        """Migrate, apply bench/triggers.yaml, make a key, declare the ceiling's queues."""
        async with connect(self.database_url) as connection:
            await migrate(connection)
            async with connection.transaction():
                for workspace in load_file(HERE / "triggers.yaml"):
                    await apply_workspace(connection, workspace)
            names = [t.name for w in load_file(HERE / "triggers.yaml") for t in w.triggers]
            self.api_key = (await create_key(connection, WORKSPACE, names, "bench")).key
            rows = await connection.fetch(
                "select name, version from triggers where workspace = $1", WORKSPACE
            )
            self.versions = {row["name"]: row["version"] for row in rows}
            self.versions_info["postgresql"] = await connection.fetchval("show server_version")
        self._amqp = await aio_pika.connect(self.amqp_url)
        await broker.declare_ceiling_queues(self.amqp, 1_000_000, 10, self.options.rabbitmq_nodes)

    @property
    def connected(self) -> bool:
        return self._amqp is not None and not self._amqp.is_closed

    @property
    def amqp(self) -> AbstractConnection:
        assert self._amqp is not None
        return self._amqp

    @property
    def processes(self) -> Fleet:
        assert self.fleet is not None
        return self.fleet

    async def start_hookline(self) -> None:
        """Dispatcher and ingress (workers start per scenario); wait until every trigger routes."""
        self.processes.start("dispatcher", ["-m", "dispatcher"])
        self.processes.start("ingress", ["-m", "ingress", "--workers", str(self.options.ingress_workers)])
        await self._until_ready(f"http://127.0.0.1:{self.ingress_port}/readyz", "GET")
        for trigger in ("accept", "flow", "lane", "drain"):
            await self._until_ready(self.hook_url(trigger), "POST")
        await self.purge_hookline()

    async def start_ceiling(self) -> None:
        self.processes.start(
            "ceiling-app",
            [
                "-m",
                "bench.ceiling_app",
                "--port",
                str(self.ceiling_port),
                "--workers",
                str(self.options.ingress_workers),
            ],
        )
        await self._until_ready(self.ceiling_url("async", broker.ASYNC_QUEUE), "POST")
        await broker.purge(self.amqp, broker.ASYNC_QUEUE)

    async def _until_ready(self, url: str, method: str, within: float = 60) -> None:
        deadline = time.monotonic() + within
        headers = {"X-API-Key": self.api_key, "Content-Type": "application/json"}
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                self.processes.check_alive()
                try:
                    answer = await client.request(method, url, content=self.body, headers=headers)
                    if answer.status_code < 300:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{url} not ready within {within:.0f} s")
                await asyncio.sleep(0.2)

    # -- controls the scenarios use ---------------------------------------------------------

    def hook_url(self, trigger: str) -> str:
        return f"http://127.0.0.1:{self.ingress_port}/hooks/{WORKSPACE}/{trigger}"

    def ceiling_url(self, kind: str, queue: str) -> str:
        return f"http://127.0.0.1:{self.ceiling_port}/{kind}/{queue}"

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key}

    async def start_workers(self) -> None:
        for _ in range(self.options.workers):
            self.processes.start("worker", ["-m", "worker"])
        # Consuming once the shared queue has its consumers.
        deadline = time.monotonic() + 60
        while True:
            self.processes.check_alive()
            state = await queue_state(self.amqp, topology.work_queue_name(PREFIX))
            if state is not None and state.consumers >= self.options.workers:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not start consuming within 60 s")
            await asyncio.sleep(0.1)

    def stop_workers(self) -> None:
        self.processes.stop("worker")

    def start_consumers(self, mode: str, queue: str, prefetch: int, count: int) -> list[Path]:
        """Ceiling consumers (drain or respond) on `queue`; the files their counts go to."""
        files = []
        for _ in range(count):
            stats = self.folder / f"consumer-{len(list(self.folder.glob('consumer-*')))}.json"
            stats.write_bytes(msgspec.json.encode(Stats()))
            argv = ["-m", "bench.ceiling_consumer", mode, "--queue", queue, "--prefetch", str(prefetch)]
            self.processes.start("ceiling-consumer", [*argv, "--stats", str(stats)])
            files.append(stats)
        return files

    def stop_consumers(self) -> None:
        self.processes.stop("ceiling-consumer")

    async def purge_hookline(self) -> None:
        await broker.purge(self.amqp, topology.work_queue_name(PREFIX))
        # Each unordered trigger's own queue (the start-up's probe calls wait there too).
        for trigger in ("accept", "flow", "drain"):
            await broker.purge(self.amqp, topology.trigger_queue_name(PREFIX, WORKSPACE, trigger))
        await broker.purge(self.amqp, topology.ordered_queue_name(PREFIX, WORKSPACE, "lane"))

    def ctl(self, *args: str, timeout: float = 60) -> str:
        """`rabbitmqctl` on the (first) node; list_queues and list_channels cover the cluster."""
        rabbit = next(s for s in self.servers if not isinstance(s, LocalPostgres))
        node = rabbit.running()[0] if isinstance(rabbit, LocalRabbitMQCluster) else rabbit
        return node.ctl(*args, timeout=timeout)

    async def unacknowledged(self) -> int:
        """Messages delivered and not yet acknowledged, broker-wide (fresh, unlike list_queues'
        quorum queue figures, which come from a 5 s statistics tick)."""
        args = ("--quiet", "list_channels", "--no-table-headers", "name", "messages_unacknowledged")
        return broker.unacknowledged(await asyncio.to_thread(self.ctl, *args, timeout=30))

    async def placement(self) -> dict[str, dict[str, object]]:
        """Where the queues the scenarios use have their leader and replicas, on both sides.

        Both sides declare theirs with the same placement (`topology.placement_arguments`);
        a queue with another replica count than min(3, nodes) would make the comparison
        unfair, and stops the run.
        """
        listed = await asyncio.to_thread(
            self.ctl, "list_queues", "name", "leader", "members", "--formatter", "json", timeout=30
        )
        queues = {
            "hookline": [
                topology.work_queue_name(PREFIX),
                *(topology.trigger_queue_name(PREFIX, WORKSPACE, t) for t in ("accept", "flow", "drain")),
                topology.ordered_queue_name(PREFIX, WORKSPACE, "lane"),
            ],
            "ceiling": list(broker.CEILING_QUEUES),
        }
        return broker.placement(listed, queues, self.options.rabbitmq_nodes)

    def cpu_meter(self) -> CpuMeter:
        """CPU per role: hookline's services, the ceiling's, and the servers."""

        def roots() -> dict[str, list[int]]:
            out: dict[str, list[int]] = {}
            for running in self.processes.running.values():
                out.setdefault(running.role, []).append(running.process.pid)
            for server in self.servers:
                out.update(server_roots(server))
            return out

        return CpuMeter(roots)

    async def db(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.database_url)

    def profiler(self, label: str) -> Profiler | None:
        """py-spy on every process of the profiled roles, if any (stop it after the load)."""
        pids = {role: [r.process.pid for r in self.processes.of_role(role)] for role in self.profile_roles}
        pids = {role: found for role, found in pids.items() if found}
        if not pids:
            return None
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        return Profiler(pids, self.profile_dir / label)

    # -- tear-down --------------------------------------------------------------------------

    def close(self, keep_logs: Path | None = None) -> None:
        """Stop everything this run started and delete its folder (its logs kept in `keep_logs`)."""
        if self.fleet is not None:
            self.fleet.stop_all(STOP_ORDER)
        for server in reversed(self.servers):
            server.stop()
        if keep_logs is not None and (self.folder / "logs").exists():
            shutil.rmtree(keep_logs, ignore_errors=True)
            shutil.copytree(self.folder / "logs", keep_logs)
        shutil.rmtree(self.folder, ignore_errors=True)


def server_roots(server: LocalRabbitMQ | LocalRabbitMQCluster | LocalPostgres) -> dict[str, list[int]]:
    """The process trees a server's CPU is counted over: every node's VM is "rabbitmq"."""
    if isinstance(server, LocalPostgres):
        return {"postgres": [server.pid]} if server.pid is not None else {}
    nodes = server.running() if isinstance(server, LocalRabbitMQCluster) else [server]
    pids = [node.pid for node in nodes if node.pid is not None]
    return {"rabbitmq": pids} if pids else {}


def read_stats(files: list[Path]) -> list[Stats]:
    out = []
    for path in files:
        try:
            out.append(msgspec.json.decode(path.read_bytes(), type=Stats))
        except FileNotFoundError:
            out.append(Stats())
    return out


def make_body(size: int) -> bytes:
    """A JSON object of exactly `size` bytes, shaped like an order."""
    base = {
        "id": 12345,
        "customer": {"id": "C-1001", "name": "Acme Widgets Ltd", "country": "SE"},
        "items": [{"sku": f"SKU-{i:04d}", "qty": i % 7 + 1, "price": 19.95 + i} for i in range(6)],
        "note": "",
    }
    short = len(msgspec.json.encode(base))
    base["note"] = "x" * max(0, size - short)
    body = msgspec.json.encode(base)
    assert len(body) == size, len(body)
    return body
