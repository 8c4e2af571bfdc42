"""A private RabbitMQ node: its own folder, ports, epmd and Erlang cookie; /etc/rabbitmq unread.

Everything the node reads or writes lives under the data folder, named through RabbitMQ's
environment variables, so it never meets the machine's own node (rabbit@localhost, epmd on
4369). The mnesia folder is tied to the node name, so the name is fixed at the first start
and recorded in `ports.json` with the port.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from shared.devstack.localservers.accounts import check_traversable, hand_over, service_account
from shared.devstack.localservers.errors import LocalServerError
from shared.devstack.localservers.install import epmd_program, rabbitmq_bin_dir
from shared.devstack.localservers.plugins import build_home
from shared.devstack.localservers.ports import (
    LOOPBACK,
    Recorded,
    claim_port,
    free_port,
    write_recorded,
)
from shared.devstack.localservers.processes import (
    reap_leftovers,
    spawn,
    stop_process,
    wait_ready,
)
from shared.devstack.localservers.server import LocalServer
from shared.devstack.localservers.tls import TlsListener, tls_config

if TYPE_CHECKING:
    from shared.devstack.localservers.accounts import Account

log = logging.getLogger(__name__)

# The only plugin hookline leans on (ordering keys spread over partition queues); the
# management UI and Prometheus stay off, and with them their ports.
ENABLED_PLUGINS = ("rabbitmq_consistent_hash_exchange",)

_CONFIG = """\
# Written by hookline's LocalRabbitMQ at every start; edits are lost.
log.console = false
log.file.level = info
# The broker's last word on a delivery left unsettled: 1 h. A worker's watchdog settles one
# a run holds past its workflow_timeout first (HOOKLINE_WATCHDOG_LIMIT, 50 min at most); a
# stopped ordered lane's message comes back each hour and is held again (docs/delivery.md).
consumer_timeout = 3600000
"""

# `+B i` ignores SIGINT, as RabbitMQ's own wrapper does; distribution on loopback only.
_ERL_ARGS = "+B i"
LOOPBACK_DIST = "-kernel inet_dist_use_interface {127,0,0,1}"

# AMQP 0-9-1 protocol header; a broker that is up answers with a Connection.Start frame.
_PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
_CONNECTION_START = b"\x00\x0a\x00\x0a"  # class 10 (connection), method 10 (start)


@dataclass(frozen=True)
class Membership:
    """What the nodes of one local cluster share (`LocalRabbitMQCluster` makes it).

    One epmd (nodes find each other through it), one Erlang cookie, and each node's share of
    the machine's memory as its alarm watermark (by default each would take 40% of it).
    """

    epmd_port: int
    cookie: str
    memory_watermark: int  # bytes


# Added to a cluster member's config: the minority side of a partition stops serving (its
# clients move to the majority's nodes) instead of both sides accepting writes.
_CLUSTER_CONFIG = """cluster_partition_handling = pause_minority
vm_memory_high_watermark.absolute = {watermark}
"""


class LocalRabbitMQ(LocalServer):
    """One RabbitMQ node run from `data_dir`; `start()` returns its AMQP URL.

    With `membership` it is a member of a local cluster: the cluster's epmd and cookie, and
    the partition handling and memory watermark of a node that shares the machine.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        membership: Membership | None = None,
        *,
        tls: TlsListener | None = None,
        listen: Sequence[str] = (),
    ) -> None:
        """`listen`: addresses to take AMQP on besides loopback (a test's veth address), same port."""
        super().__init__(data_dir, port)
        self._tls = tls  # an AMQPS listener besides the plain one
        self._tls_port: int | None = None
        self._listen = tuple(listen)
        self._node = self._recorded.node or f"hookline-{self._port}@localhost"
        self._epmd: subprocess.Popen[bytes] | None = None
        self._env: dict[str, str] = {}
        self._membership = membership

    @property
    def url(self) -> str:
        """The AMQP URL of the node (the default `guest` user, allowed from loopback)."""
        return f"amqp://guest:guest@{LOOPBACK}:{self._port}/"

    @property
    def tls_url(self) -> str:
        """The AMQPS URL of the node's TLS listener (the client adds its `?cafile=`)."""
        if self._tls_port is None:
            raise LocalServerError(f"RabbitMQ in {self._data} has no TLS listener (started?)")
        return f"amqps://guest:guest@{LOOPBACK}:{self._tls_port}/"

    @property
    def node(self) -> str:
        """The Erlang node name, fixed for the data folder."""
        return self._node

    @property
    def log_file(self) -> Path:
        """The node's main log."""
        return self._data / "log" / "rabbit.log"

    def start(self, timeout: float = 90) -> str:
        """Start the node (a no-op when it runs) and return its URL once AMQP answers."""
        if self.pid is not None:
            return self.url
        self.stop()  # what is left of a node that died: its epmd, its helpers
        bin_dir = rabbitmq_bin_dir()
        account = service_account("rabbitmq")
        self._prepare(account)
        member = self._membership
        epmd_port = member.epmd_port if member is not None else free_port(avoid={self._port})
        self._env = self._environment(epmd_port, dist_port=free_port(avoid={self._port, epmd_port}))
        if sbin := build_home(self._data / "dist", bin_dir, ENABLED_PLUGINS):
            self._env["RABBITMQ_SCRIPTS_DIR"] = str(sbin)
            self._env["RABBITMQ_PLUGINS_DIR"] = str(sbin.parent / "plugins")
        hand_over(self._data, account)
        self._account = account
        began = time.monotonic()
        try:
            if member is None:
                self._start_epmd(account, epmd_port)
            self._server = spawn(
                [str(bin_dir / "rabbitmq-server")],
                account=account,
                env=self._env,
                cwd=self._data,
                output=self._data / "log" / "startup.log",
                # SIGTERM is RabbitMQ's graceful shutdown: queues are closed cleanly.
                death_signal=signal.SIGTERM,
            )
            wait_ready(
                lambda: amqp_answers(self._port) and (self._tls_port is None or _listening(self._tls_port)),
                self._server,
                what=f"RabbitMQ node {self._node}",
                timeout=timeout,
                # Before its logging is configured the node writes to stdout.
                logs=(self._data / "log" / "startup.log", self.log_file),
            )
        except BaseException:
            self.stop()
            raise
        log.info("RabbitMQ %s ready on port %d in %.1f s", self._node, self._port, time.monotonic() - began)
        return self.url

    def stop(self) -> None:
        """Stop gracefully and wait until the node, its epmd and their helpers are gone."""
        if self._server is not None:
            stop_process(self._server, signal.SIGTERM, what="RabbitMQ", timeout=60)
            self._server = None
        if self._epmd is not None:
            stop_process(self._epmd, signal.SIGTERM, what="epmd", timeout=10)
            self._epmd = None
        if self._account is not None:
            reap_leftovers(self._data, self._account, timeout=10)
            self._account = None

    def ctl(self, *args: str, timeout: float = 60) -> str:
        """Run `rabbitmqctl` against this node (same user, cookie and epmd); its output."""
        if self.pid is None or self._account is None:
            raise LocalServerError(f"RabbitMQ in {self._data} is not running")
        return run_ctl(self._node, self._env, self._data, self._account, args, timeout)

    def _prepare(self, account: Account) -> None:
        """Create the folder tree and config files, and claim the port."""
        data = self._data
        data.mkdir(parents=True, exist_ok=True)
        check_traversable(data, account)
        for folder in ("home", "mnesia", "log", "conf.d"):
            (data / folder).mkdir(exist_ok=True)
        # An empty env file: RabbitMQ must not source /etc/rabbitmq/rabbitmq-env.conf.
        (data / "rabbitmq-env.conf").write_text("# hookline: nothing from /etc/rabbitmq\n")
        config = _CONFIG
        if self._membership is not None:
            config += _CLUSTER_CONFIG.format(watermark=self._membership.memory_watermark)
            # The cluster's cookie (read from $HOME by the node and by rabbitmqctl), owner-only.
            cookie = data / "home" / ".erlang.cookie"
            if cookie.exists():
                cookie.chmod(0o600)
            cookie.write_text(self._membership.cookie)
            cookie.chmod(0o400)
        (data / "rabbitmq.conf").write_text(config)
        (data / "advanced.config").write_text("[].\n")
        (data / "enabled_plugins").write_text(f"[{','.join(ENABLED_PLUGINS)}].\n")
        self._port = claim_port(self._port, fixed=self._fixed_port, what=f"RabbitMQ in {data}")
        self._write_listeners(data / "conf.d" / "listeners.conf")
        write_recorded(data, Recorded(port=self._port, node=self._node))
        if self._tls is not None:
            self._tls_port = self._tls.port or free_port(avoid={self._port})
            with (data / "rabbitmq.conf").open("a") as conf:
                conf.write(tls_config(self._tls, data / "tls", self._tls_port))

    def _write_listeners(self, path: Path) -> None:
        """With extra addresses, every listener in the config (a node takes one address from
        RABBITMQ_NODE_IP_ADDRESS); without, no file, and the environment's loopback alone."""
        path.unlink(missing_ok=True)
        if self._listen:
            listeners = [LOOPBACK, *self._listen]
            path.write_text(
                "".join(f"listeners.tcp.{n} = {a}:{self._port}\n" for n, a in enumerate(listeners, 1))
            )

    def _environment(self, epmd_port: int, dist_port: int) -> dict[str, str]:
        """The node's whole environment: nothing inherited, every path under the folder."""
        data = self._data
        return {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            # The Erlang cookie lives in $HOME; rabbitmqctl must see the same one.
            "HOME": str(data / "home"),
            "RABBITMQ_NODENAME": self._node,
            **(
                {}
                if self._listen
                else {"RABBITMQ_NODE_IP_ADDRESS": LOOPBACK, "RABBITMQ_NODE_PORT": str(self._port)}
            ),
            "RABBITMQ_DIST_PORT": str(dist_port),
            # A private epmd, so the node neither shares nor starts the system's on 4369.
            "ERL_EPMD_PORT": str(epmd_port),
            "ERL_EPMD_ADDRESS": LOOPBACK,
            "RABBITMQ_CONF_ENV_FILE": str(data / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(data / "rabbitmq.conf"),
            "RABBITMQ_CONFIG_FILES": str(data / "conf.d"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(data / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(data / "enabled_plugins"),
            "RABBITMQ_MOTD_FILE": str(data / "motd"),
            "RABBITMQ_MNESIA_BASE": str(data / "mnesia"),
            "RABBITMQ_LOG_BASE": str(data / "log"),
            "RABBITMQ_LOGS": str(self.log_file),
            "RABBITMQ_PID_FILE": str(data / "rabbitmq.pid"),
            # Busy-waiting schedulers would burn the CPU the tests need on 2 cores.
            "RABBITMQ_SCHEDULER_BUSY_WAIT_THRESHOLD": "none",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": f"{_ERL_ARGS} {LOOPBACK_DIST}",
            "RABBITMQ_CTL_ERL_ARGS": LOOPBACK_DIST,
            # rabbitmq-server otherwise runs the VM as a child of a shell that relays
            # signals; `detached` makes it exec the VM, so the pid we hold (and its
            # parent-death signal) is the VM's own.
            "detached": "1",
        }

    def _start_epmd(self, account: Account, epmd_port: int) -> None:
        """Run epmd as our child, so we own its pid and it dies with us."""
        self._epmd = start_epmd(account, self._env, self._data, epmd_port)

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send `sig` to the node's VM (a fault test's kill -9, SIGSTOP, SIGCONT)."""
        if self._server is None:
            raise LocalServerError(f"RabbitMQ in {self._data} is not running")
        os.kill(self._server.pid, sig)


def start_epmd(account: Account, env: dict[str, str], folder: Path, port: int) -> subprocess.Popen[bytes]:
    """Run epmd on `port` as our child, so we own its pid and it dies with us."""
    epmd = spawn(
        [str(epmd_program()), "-port", str(port), "-address", LOOPBACK],
        account=account,
        env=env,
        cwd=folder,
        output=folder / "log" / "epmd.log",
        death_signal=signal.SIGTERM,
    )
    wait_ready(lambda: _listening(port), epmd, what="epmd", timeout=10, logs=(folder / "log" / "epmd.log",))
    return epmd


def run_ctl(
    node: str, env: dict[str, str], cwd: Path, account: Account, args: tuple[str, ...], timeout: float
) -> str:
    """Run `rabbitmqctl --node NODE ARGS` as `account` with `env` (its cookie); its output."""
    result = subprocess.run(
        [str(rabbitmq_bin_dir() / "rabbitmqctl"), "--node", node, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **account.popen_kwargs(),
    )
    # **popen_kwargs hides which overload of run() applies, so name the text types here.
    output: str = result.stdout
    errors: str = result.stderr
    if result.returncode != 0:
        raise LocalServerError(
            f"rabbitmqctl {' '.join(args)} failed with code {result.returncode}: "
            f"{errors.strip() or output.strip()}"
        )
    return output


def amqp_answers(port: int, host: str = LOOPBACK) -> bool:
    """True when a broker on `port` answers the AMQP protocol header with Connection.Start."""
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.sendall(_PROTOCOL_HEADER)
            frame = _receive(sock, 11)  # 7-byte frame header, then class and method ids
    except OSError:
        return False
    return frame[:1] == b"\x01" and frame[7:11] == _CONNECTION_START


def _listening(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1):
            return True
    except OSError:
        return False


def _receive(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data
