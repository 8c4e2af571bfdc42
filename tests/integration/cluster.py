"""A private 3-node RabbitMQ cluster for fault tests (never the session's broker, never the
machine's), and moving a quorum queue's leader to the node a test means to kill."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from shared.devstack.localservers import LocalServerError
from shared.devstack.localservers.cluster import LocalRabbitMQCluster
from shared.devstack.localservers.rabbitmq import LocalRabbitMQ


@contextlib.contextmanager
def rabbitmq_cluster(nodes: int = 3) -> Iterator[LocalRabbitMQCluster]:
    """`nodes` private RabbitMQ nodes joined in one cluster; stopped and removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="hookline-cluster-"))
    folder.chmod(0o755)
    cluster = LocalRabbitMQCluster(folder / "rabbitmq", nodes)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


def move_leader(cluster: LocalRabbitMQCluster, queue: str, to: LocalRabbitMQ, timeout: float = 90) -> None:
    """Make `to` lead `queue` (RabbitMQ 3.10 has no command for it: its own function, by eval).

    The transfer is refused while the target's replica is not in sync yet: asked again.
    """
    deadline = time.monotonic() + timeout
    answer = ""
    while cluster.leader_of(queue) is not to:
        if time.monotonic() > deadline:
            raise LocalServerError(f"{queue} is still led by {cluster.leader_of(queue).node} ({answer})")
        answer = to.ctl(
            "eval",
            f'{{ok, Q}} = rabbit_amqqueue:lookup(rabbit_misc:r(<<"/">>, queue, <<"{queue}">>)),'
            f" rabbit_quorum_queue:transfer_leadership(Q, '{to.node}').",
        ).strip()
        if answer.startswith("{migrated"):
            # The new leader is elected asynchronously: until list_queues says so.
            settled = time.monotonic() + 10
            while cluster.leader_of(queue) is not to and time.monotonic() < settled:
                time.sleep(0.5)
