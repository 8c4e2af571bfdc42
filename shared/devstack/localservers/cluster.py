"""A private RabbitMQ cluster on one machine: N `LocalRabbitMQ` nodes that joined the first.

Each node has its own folder, ports and node name (`node-1`, `node-2`, ... under the
cluster's folder); they share one epmd (that is how Erlang nodes find each other), one
Erlang cookie (recorded in the folder, owner-only) and the machine's memory. Nodes 2..N run
`stop_app`, `join_cluster <node 1>`, `start_app` at their first start; a restarted cluster
is already joined. All nodes start at once: a node that stopped while others ran waits for
them at boot (its tables live on its peers).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.devstack.localservers.accounts import check_traversable, hand_over, service_account
from shared.devstack.localservers.errors import LocalServerError
from shared.devstack.localservers.ports import Recorded, free_port, read_recorded, write_recorded
from shared.devstack.localservers.processes import reap_leftovers, stop_process
from shared.devstack.localservers.rabbitmq import (
    LOOPBACK_DIST,
    LocalRabbitMQ,
    Membership,
    run_ctl,
    start_epmd,
)

if TYPE_CHECKING:
    from types import TracebackType

    from shared.devstack.localservers.accounts import Account

log = logging.getLogger(__name__)

# Of the machine's memory, what all nodes together may take before their alarms go off.
MEMORY_SHARE = 0.4

# The folder under `.hookline/` that `hookline up --rabbitmq-nodes N` keeps its cluster in.
CLUSTER_FOLDER = "rabbitmq-cluster"


@dataclass(frozen=True)
class NodeState:
    """One node as the cluster sees it: its name, whether it runs, the queues it leads."""

    name: str
    running: bool
    leads: tuple[str, ...]


class LocalRabbitMQCluster:
    """`nodes` RabbitMQ nodes run from `data_dir`; `start()` returns their URLs, comma separated."""

    def __init__(self, data_dir: Path, nodes: int = 3) -> None:
        if nodes < 1:
            raise LocalServerError("a cluster needs at least one node")
        self._data = Path(os.path.abspath(data_dir))
        self._count = nodes
        self._epmd: subprocess.Popen[bytes] | None = None
        self._account: Account | None = None
        self.nodes: list[LocalRabbitMQ] = []

    @property
    def folders(self) -> list[Path]:
        """The nodes' data folders."""
        return [self._data / f"node-{index}" for index in range(1, self._count + 1)]

    @property
    def url(self) -> str:
        """Every node's AMQP URL, comma separated (what HOOKLINE_AMQP_URL takes)."""
        return ",".join(node.url for node in self.nodes)

    def start(self, timeout: float = 120) -> str:
        """Start every node (joining them at the first start); their URLs once all answer."""
        if self.nodes and all(node.pid is not None for node in self.nodes):
            return self.url
        self.stop()
        account = service_account("rabbitmq")
        data = self._data
        data.mkdir(parents=True, exist_ok=True)
        check_traversable(data, account)
        (data / "log").mkdir(exist_ok=True)
        recorded = read_recorded(data)
        epmd_port = recorded.port or free_port()
        write_recorded(data, Recorded(port=epmd_port))
        cookie_file = data / "cookie"
        if not cookie_file.exists():
            fd = os.open(cookie_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(20).upper())
        cookie = cookie_file.read_text().strip()
        hand_over(data / "log", account)
        self._account = account
        membership = Membership(epmd_port, cookie, _watermark(self._count))
        began = time.monotonic()
        try:
            self._epmd = start_epmd(account, _epmd_env(), data, epmd_port)
            self.nodes = []
            taken: set[int] = {epmd_port}
            for folder in self.folders:
                port = read_recorded(folder).port or free_port(avoid=taken)
                taken.add(port)
                self.nodes.append(LocalRabbitMQ(folder, port, membership=membership))
            with ThreadPoolExecutor(max_workers=self._count) as pool:
                for started in [pool.submit(node.start, timeout) for node in self.nodes]:
                    started.result()
            first = self.nodes[0]
            for node in self.nodes[1:]:
                if first.node not in _running_nodes(node):
                    node.ctl("stop_app")
                    node.ctl("join_cluster", first.node)
                    node.ctl("start_app")
        except BaseException:
            self.stop()
            raise
        log.info("RabbitMQ cluster of %d nodes ready in %.1f s", self._count, time.monotonic() - began)
        return self.url

    def stop(self) -> None:
        """Stop every node gracefully (all at once), then their epmd."""
        if self.nodes:
            with ThreadPoolExecutor(max_workers=len(self.nodes)) as pool:
                for stopped in [pool.submit(node.stop) for node in self.nodes]:
                    stopped.result()
        if self._epmd is not None:
            stop_process(self._epmd, signal.SIGTERM, what="epmd", timeout=10)
            self._epmd = None
        if self._account is not None:
            reap_leftovers(self._data, self._account, timeout=10)
            self._account = None

    def running(self) -> list[LocalRabbitMQ]:
        """The nodes whose process runs (a SIGSTOPped one counts as running)."""
        return [node for node in self.nodes if node.pid is not None]

    def states(self) -> list[NodeState]:
        """Every node of the cluster, whether it runs, and the quorum queues it leads."""
        return cluster_states(self.running()[0].ctl)

    def leader_of(self, queue: str) -> LocalRabbitMQ:
        """The node that leads `queue` now."""
        listed = json.loads(self.running()[0].ctl("list_queues", "name", "leader", "--formatter", "json"))
        leader = next((q.get("leader") for q in listed if q["name"] == queue), None)
        for node in self.nodes:
            if node.node == leader:
                return node
        raise LocalServerError(f"no node leads {queue}")

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def cluster_states(ctl: Any) -> list[NodeState]:
    """Nodes and leaders as `rabbitmqctl` reports them (`ctl(*args)` returns its output)."""
    status = json.loads(ctl("cluster_status", "--formatter", "json"))
    members = [*status.get("disk_nodes", []), *status.get("ram_nodes", [])]
    running = set(status.get("running_nodes", []))
    queues = json.loads(ctl("list_queues", "name", "type", "leader", "--formatter", "json"))
    leads: dict[str, list[str]] = {}
    for queue in queues:
        if queue.get("type") == "quorum" and queue.get("leader"):
            leads.setdefault(queue["leader"], []).append(queue["name"])
    return [NodeState(name, name in running, tuple(sorted(leads.get(name, [])))) for name in members]


def read_states(data_dir: Path, timeout: float = 20) -> list[tuple[NodeState, int | None]]:
    """Nodes, leaders and AMQP ports of a cluster that runs from `data_dir` (another process
    started it: `hookline up`), asked through the first node whose `rabbitmqctl` answers."""
    data = Path(os.path.abspath(data_dir))
    epmd_port = read_recorded(data).port
    folders = sorted(data.glob("node-*"))
    if epmd_port is None or not folders:
        raise LocalServerError(f"no RabbitMQ cluster in {data}")
    ports = {read_recorded(f).node: read_recorded(f).port for f in folders}
    account = service_account("rabbitmq")
    failure = ""
    for folder in folders:
        node = read_recorded(folder).node
        if node is None:
            continue
        env = {
            **_epmd_env(),
            "HOME": str(folder / "home"),  # the cluster's cookie
            "ERL_EPMD_PORT": str(epmd_port),
            "RABBITMQ_CONF_ENV_FILE": str(folder / "rabbitmq-env.conf"),
            "RABBITMQ_CTL_ERL_ARGS": LOOPBACK_DIST,
        }

        def ctl(*args: str, node: str = node, env: dict[str, str] = env, folder: Path = folder) -> str:
            return run_ctl(node, env, folder, account, args, timeout)

        try:
            states = cluster_states(ctl)
        except (LocalServerError, subprocess.TimeoutExpired, ValueError) as exc:
            failure = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            continue
        return [(state, ports.get(state.name)) for state in states]
    raise LocalServerError(f"no node of the cluster in {data} answers ({failure})")


def _running_nodes(node: LocalRabbitMQ) -> list[str]:
    status = json.loads(node.ctl("cluster_status", "--formatter", "json"))
    found: list[str] = status.get("running_nodes", [])
    return found


def _watermark(nodes: int) -> int:
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(total * MEMORY_SHARE / nodes)


def _epmd_env() -> dict[str, str]:
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
