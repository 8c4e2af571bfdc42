"""A RabbitMQ node cut off from the rest of its cluster for 30 s under load (issue 18, must-show 3).

Three private RabbitMQ nodes, each in a network namespace of its own on one test-made bridge
(tests/bridge.py), `rabbit@10.232.x.N` with long names, AMQP and Erlang distribution on
those addresses; a private database; the services in the root namespace, given the three
URLs. A node the ingress is *not* connected to has its bridge port taken down for 30 s while
async, ordered and request-response callers run (in one variant it leads the ordered lane's
queue and the trigger queues; in the other it leads none). With `pause_minority` the cut
node pauses itself; the two others keep serving; when the link is back the node rejoins
without a restart, and:

* every accepted call is recorded and succeeds;
* the ordered lane ran in arrival order, one call at a time;
* each call reached the HTTP target (a local recorder, counted by call id) once, or as many
  times as its record's `attempts` say it was delivered: nothing ran twice unrecorded.

Each run prints the seconds of 503 it measured.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path

import httpx
import pytest

from shared.db.pool import Connection, connect
from shared.devstack.localservers.cluster import LocalRabbitMQCluster
from shared.devstack.localservers.errors import LocalServerError
from shared.devstack.localservers.rabbitmq import LocalRabbitMQ, NetworkHost, amqp_answers
from shared.wire import topology
from tests.bridge import Lan, bridged_hosts
from tests.helpers import apply_yaml, eventually
from tests.integration.calls import finished, never_overlap, runs
from tests.integration.cluster import move_leader
from tests.integration.in_process import private_database
from tests.integration.target import Target, running_target
from tests.integration.test_rabbitmq_cluster import (
    PUBLISH_TIMEOUT,
    RR_TIMEOUT,
    Answer,
    Load,
    _callers_never_hung,
    _post,
    _unknown_outcome,
    _until_accepted,
)
from tests.netns import Host, unavailable_reason
from tests.servers import traversable_tmp_dir
from tests.stack import Services, services

pytestmark = [pytest.mark.fault, pytest.mark.timeout(600)]

TRIGGERS = """
workspace: {ws}
triggers:
  - name: inbox
    auth: {{type: none}}
    workflow:
      - id: rec
        http: {{method: POST, url: "{target}/slow/{run_ms}", json: {{call: "{{{{ execution.id }}}}"}}}}
  - name: lane
    auth: {{type: none}}
    ordered: true
    workflow:
      - id: rec
        http: {{method: POST, url: "{target}/rec/lane", json: {{call: "{{{{ execution.id }}}}"}}}}
  - name: echo
    auth: {{type: none}}
    mode: request_response
    timeout: {rr_timeout}s
    workflow: [{{respond: {{status: 200, body: "{{{{ request.body }}}}"}}}}]
"""

CUT_SECONDS = 30
BEFORE_SECONDS = 5  # load before the cut, and after the link is back (plus the rejoin)
AFTER_SECONDS = 10
NET_TICKTIME = 10  # Erlang's, on these nodes: a silent peer is down after 7.5-12.5 s
HEARTBEAT = 2  # HOOKLINE_HEARTBEAT: a service gives up on a silent node after ~2 of them
ASYNC_SENDERS = 4  # each sends one call after another, paced: a bounded load
PACE = 0.05
RUN_MS = 300  # an async call holds the recorder this long: workers hold runs when the link goes
RR_CALLERS = 3


@dataclass
class Partitioned:
    """The cluster, the LAN its nodes are on, and the recorder the workflows call."""

    cluster: LocalRabbitMQCluster
    lan: Lan
    target: Target

    def host_of(self, node: LocalRabbitMQ) -> Host:
        return self.lan.hosts[self.cluster.nodes.index(node)]


@pytest.fixture  # a cluster per test: a node that never came back does not fail the next one
def partitioned() -> Iterator[Partitioned]:
    if (reason := unavailable_reason()) is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"network namespaces are needed here: {reason}")
        pytest.skip(f"network namespaces are needed here: {reason}")
    with ExitStack() as cleanup:  # undone in reverse: nodes, folder, bridge and namespaces
        lan = cleanup.enter_context(bridged_hosts(3, "rmq"))
        folder = cleanup.enter_context(traversable_tmp_dir("hookline-partition-"))
        hosts = [NetworkHost(h.name, h.address) for h in lan.hosts]
        cluster = LocalRabbitMQCluster(folder / "rabbitmq", 3, hosts=hosts, net_ticktime=NET_TICKTIME)
        cleanup.enter_context(cluster)
        for node in cluster.nodes:  # partitions are noticed in 7.5-12.5 s, not 45-75 s
            assert node.ctl("eval", "net_kernel:get_net_ticktime().").strip() == str(NET_TICKTIME)
        target = cleanup.enter_context(running_target())
        yield Partitioned(cluster, lan, target)


@pytest.fixture
async def own_db(postgres_server_url: str) -> AsyncIterator[tuple[str, Connection]]:
    async with private_database(postgres_server_url) as url, connect(url) as connection:
        yield url, connection


@pytest.fixture
def stack(partitioned: Partitioned, own_db: tuple[str, Connection], log_dir: Path) -> Iterator[Services]:
    prefix = f"rp-{uuid.uuid4().hex[:6]}"
    folder = log_dir / prefix
    folder.mkdir()
    env = {"HOOKLINE_PUBLISH_TIMEOUT": str(PUBLISH_TIMEOUT), "HOOKLINE_HEARTBEAT": str(HEARTBEAT)}
    with services(partitioned.cluster.url, own_db[0], folder, workers=2, prefix=prefix, extra_env=env) as s:
        yield s


async def _ctl(node: LocalRabbitMQ, *args: str) -> str:
    """`rabbitmqctl ARGS` inside the node's namespace, in a thread (the callers keep running);
    a refusal is an AssertionError, so `eventually` asks again."""
    try:
        return await asyncio.to_thread(node.ctl, *args, timeout=30)
    except (LocalServerError, subprocess.TimeoutExpired) as exc:
        raise AssertionError(f"rabbitmqctl {args[0]} on {node.node}: {exc}") from exc


async def _running(node: LocalRabbitMQ) -> bool:
    """Whether the node's rabbit application runs (False while pause_minority holds it), as
    `rabbitmqctl` inside its namespace says (in a thread: the callers keep running)."""
    answer = await _ctl(node, "eval", "rabbit:is_running().")
    return answer.strip() == "true"


async def _sees_all(node: LocalRabbitMQ, cluster: LocalRabbitMQCluster) -> bool | None:
    """True once `node` sees every node of the cluster running."""
    status = json.loads(await _ctl(node, "cluster_status", "--formatter", "json"))
    return True if set(status.get("running_nodes", [])) == {n.node for n in cluster.nodes} else None


async def _paused(node: LocalRabbitMQ) -> bool | None:
    return True if not await _running(node) else None


async def _amqp_answers(node: LocalRabbitMQ) -> bool | None:
    """True once the node's AMQP listener answers (from here, over the bridge)."""
    return True if await asyncio.to_thread(amqp_answers, node.port, node.address) else None


# RabbitMQ 3.10.8's "global hang workaround" fails on Erlang >= 25.1 (this machine has 25.2):
# a paused node's restart of its own may hang for good (rabbitmq/rabbitmq-server#6034, fixed
# by #6046 in later 3.10 releases). Seen in 3 of 11 cuts here.
HANG_SIGNATURE = "Global hang workaround"
# How long a node whose log shows the hang is given to come back by itself.
HANG_GRACE_SECONDS = 20.0


async def _back_or_hung(node: LocalRabbitMQ, healed_at: float) -> bool | None:
    """True once the node takes AMQP again, or once it is plainly stuck in the engine's hang."""
    if await _amqp_answers(node):
        return True
    stuck = time.monotonic() - healed_at > HANG_GRACE_SECONDS
    return True if stuck and HANG_SIGNATURE in node.log_file.read_text(errors="replace") else None


def _not_back(node: LocalRabbitMQ) -> str:
    """Why a paused node is not serving 2 minutes after its link came back, as its log tells."""
    log = node.log_file.read_text(errors="replace")
    if HANG_SIGNATURE in log:
        return (
            f"{node.node} never came back: its restart hangs in Erlang's `global` (its log: 'Global"
            " hang workaround'); RabbitMQ 3.10's workaround does not work on Erlang >= 25.1"
            " (rabbitmq/rabbitmq-server#6034)"
        )
    return f"{node.node} does not take AMQP 2 minutes after its link came back"


def _logged_at(log: Path, text: str, since: float) -> float:
    """The wall-clock time of the first line of `log` with `text` at or after `since`."""
    for line in log.read_text(errors="replace").splitlines():
        if text in line:
            at = datetime.fromisoformat(line.split(" [", 1)[0].replace(" ", "T", 1)).timestamp()
            if at >= since - 1:
                return at
    raise AssertionError(f"{log} has no {text!r} since the cut")


def _node_of(partitioned: Partitioned, log: str) -> LocalRabbitMQ:
    """The node a service's log says it connected to last."""
    found = re.findall(r"connected to broker node amqp://[^@]*@([\d.]+):(\d+)/", log)
    assert found, "the service logged no broker node"
    address, port = found[-1]
    return next(n for n in partitioned.cluster.nodes if n.address == address and n.port == int(port))


async def _routed(client: httpx.AsyncClient, base: str) -> None:
    async def probe() -> bool | None:
        answers = [
            await _post(client, f"{base}/inbox", {"n": -1}, {}),
            await _post(client, f"{base}/lane", {"seq": -1}, {}),
            await _post(client, f"{base}/echo", {"probe": True}, {}),
        ]
        return True if [a.status for a in answers] == [202, 202, 200] else None

    await eventually(probe, timeout=30, every=0.2)


async def _paced_load(
    client: httpx.AsyncClient,
    base: str,
    partitioned: Partitioned,
    victim: LocalRabbitMQ,
) -> tuple[Load, float]:
    """Callers of all three kinds from BEFORE_SECONDS before the cut until AFTER_SECONDS after
    the node is back in the cluster; the cut itself; and the seconds until the node rejoined."""
    inbox, lane, echo = f"{base}/inbox", f"{base}/lane", f"{base}/echo"
    async_answers: list[Answer] = []
    ordered_answers: list[list[Answer]] = []
    rr_answers: list[Answer] = []
    accepted: list[str] = []
    ordered_ids: list[str] = []
    stop = asyncio.Event()
    cut = partitioned.host_of(victim)
    majority = [n for n in partitioned.cluster.nodes if n is not victim]

    async def async_sender(sender: int) -> None:
        n = 0
        while not stop.is_set():
            accepted.append(await _until_accepted(client, inbox, {"sender": sender, "n": n}, async_answers))
            n += 1
            await asyncio.sleep(PACE)

    async def ordered_sender() -> None:
        seq = 0
        while not stop.is_set():  # one after the other: arrival order is seq order
            ordered_answers.append([])
            ordered_ids.append(await _until_accepted(client, lane, {"seq": seq}, ordered_answers[seq]))
            seq += 1
            await asyncio.sleep(PACE)

    async def rr_caller(caller: int) -> None:
        n = 0
        while not stop.is_set():
            rr_answers.append(await _post(client, echo, {"caller": caller, "n": n}, {}))
            n += 1

    tasks = [
        *(asyncio.create_task(async_sender(s)) for s in range(ASYNC_SENDERS)),
        asyncio.create_task(ordered_sender()),
        *(asyncio.create_task(rr_caller(c)) for c in range(RR_CALLERS)),
    ]
    try:
        await asyncio.sleep(BEFORE_SECONDS)  # load before the fault, not a wait for an absence
        print(f"\ncut with {len(accepted)} async and {len(ordered_ids)} ordered calls accepted")
        cut.cut()
        fault_at, cut_wall = time.monotonic(), time.time()
        try:
            # The cut node notices it is alone (net_ticktime) and pauses (pause_minority).
            await eventually(lambda: _paused(victim), timeout=CUT_SECONDS - 2, every=1)
            paused_seen = time.monotonic() - fault_at
            assert all([await _running(n) for n in majority]), "a node of the majority paused"
            await asyncio.sleep(max(0.0, CUT_SECONDS - (time.monotonic() - fault_at)))  # the fault's length
        finally:
            cut.restore()
        healed_at = time.monotonic()
        paused_at = _logged_at(victim.log_file, "Cluster minority/secondary status detected", cut_wall)
        print(
            f"node {victim.node} paused itself {paused_at - cut_wall:.1f} s after its link went down"
            f" (its log; rabbitmqctl saw it paused {paused_seen:.1f} s after)"
        )
        # Back without a restart: the node takes AMQP again, and every node sees all three.
        # The one exception is the engine's own hang (HANG_SIGNATURE): the test then ends as
        # an expected failure that names it (an operator restarts the node).
        try:
            await eventually(lambda: _back_or_hung(victim, healed_at), timeout=120, every=0.2)
        except AssertionError as exc:
            raise AssertionError(_not_back(victim)) from exc
        if not await _amqp_answers(victim):
            # The engine's bug, not hookline's: reported as such (xfail), never as a pass.
            pytest.xfail(_not_back(victim))
        rejoined = time.monotonic() - healed_at
        for node in [victim, *majority]:
            await eventually(partial(_sees_all, node, partitioned.cluster), timeout=60, every=0.5)
        await asyncio.sleep(AFTER_SECONDS)  # load after the fault
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    load = Load(async_answers, ordered_answers, rr_answers, accepted, ordered_ids, fault_at, healed_at)
    return load, rejoined


def _refused_seconds(load: Load) -> tuple[float, int, int]:
    """Seconds of 503 during the cut (the union of 0.5 s buckets with a 503 in them, async and
    ordered callers), the 202s and the 503s answered between the cut and the link's return."""
    answers = [*load.async_answers, *(a for seq in load.ordered_answers for a in seq)]
    during = [a for a in answers if load.fault_at <= a.at <= load.healed_at]
    buckets = {int((a.at - load.fault_at) / 0.5) for a in during if a.status == 503}
    return len(buckets) * 0.5, sum(a.status == 202 for a in during), sum(a.status == 503 for a in during)


@pytest.mark.parametrize("leads", [False, True], ids=["leads-nothing", "leads-the-queues"])
async def test_a_node_cut_off_for_30_s_pauses_the_majority_serves_and_nothing_runs_twice_unrecorded(
    partitioned: Partitioned,
    stack: Services,
    own_db: tuple[str, Connection],
    workspace: str,
    leads: bool,
) -> None:
    cluster, db = partitioned.cluster, own_db[1]
    for node in cluster.nodes:  # the previous variant's node back in the cluster
        await eventually(partial(_sees_all, node, cluster), timeout=120, every=0.5)
    await apply_yaml(
        db,
        TRIGGERS.format(
            ws=workspace, target=partitioned.target.base_url, rr_timeout=RR_TIMEOUT, run_ms=RUN_MS
        ),
    )
    base = f"{stack.base_url}/hooks/{workspace}"
    limits = httpx.Limits(max_connections=32, keepalive_expiry=2)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        await _routed(client, base)
        ingress_node = _node_of(partitioned, stack.log("ingress"))
        worker_nodes = [_node_of(partitioned, stack.log(f"worker-{i}")) for i in (1, 2)]
        # Not the ingress's node; one a worker consumes through, if any: its runs are redelivered.
        others = [n for n in cluster.nodes if n is not ingress_node]
        victim = next((n for n in others if n in worker_nodes), others[0])
        print(
            f"\ningress on {ingress_node.node}, workers on {[n.node for n in worker_nodes]};"
            f" cutting {victim.node}"
        )
        prefix = stack.env["HOOKLINE_AMQP_PREFIX"]
        queues = [
            topology.ordered_queue_name(prefix, workspace, "lane"),
            *(topology.trigger_queue_name(prefix, workspace, t) for t in ("inbox", "echo")),
        ]
        # The worst case for the queues: their leaders on the node cut off; else on the others.
        for queue in queues:
            move_leader(cluster, queue, victim if leads else ingress_node)
        led = {q for s in cluster.states() if s.name == victim.node for q in s.leads}
        assert set(queues) <= led if leads else not set(queues) & led
        services_before = {name: p.pid for name, p in stack.processes.items()}
        victim_pid = victim.pid

        load, rejoined = await _paced_load(client, base, partitioned, victim)

    what = f"node {victim.node} cut off for {CUT_SECONDS} s ({'leading' if leads else 'leading none of'} the queues)"
    refused, served, refusals = _refused_seconds(load)
    last = max(
        (
            a.at
            for a in [*load.async_answers, *(x for s in load.ordered_answers for x in s)]
            if a.status == 503
        ),
        default=None,
    )
    print(
        f"{what}: during the cut {served} calls answered 202 and {refusals} answered 503, in"
        f" {refused:.1f} s of it; last 503 {'none' if last is None else f'{last - load.fault_at:.1f} s after the cut'};"
        f" the node took AMQP again {rejoined:.1f} s after the link came back"
    )
    # The majority kept serving: most of the cut, calls were accepted.
    assert served > 0
    assert refused < CUT_SECONDS / 2, f"{refused} s of 503 in a {CUT_SECONDS} s cut"
    # No 503 before the cut.
    everything = [*load.async_answers, *(a for seq in load.ordered_answers for a in seq)]
    assert all(a.at >= load.fault_at for a in everything if a.status == 503), "a 503 before the cut"

    # Every accepted call is recorded and succeeded.
    ids = load.accepted + load.ordered_ids
    done = {r.id: r for r in await finished(db, workspace, ids, timeout=180)}
    assert {done[i].status for i in ids} == {"succeeded"}

    # The lane ran in arrival order, one at a time (a call resent after an unconfirmed
    # publish may have been enqueued twice: it then runs twice, back to back, and only it).
    lane_runs = await runs(db, workspace, "lane")
    seqs = [r.body["seq"] for r in lane_runs]
    collapsed = [s for i, s in enumerate(seqs) if i == 0 or s != seqs[i - 1]]
    assert collapsed == list(range(-1, len(load.ordered_ids))), "execution order is arrival order"
    never_overlap(lane_runs)
    twice = {seq for seq, count in Counter(seqs).items() if count > 1}
    assert all(any(_unknown_outcome(a) for a in load.ordered_answers[seq]) for seq in twice), twice

    # At the recorder: every call at least once, and more than once only as often as its
    # record says it was delivered (a redelivery after the cut node's consumer was lost).
    at_target = Counter(_call_ids(partitioned.target))
    assert set(ids) <= at_target.keys(), "an accepted call never reached the target"
    unrecorded = {i: (at_target[i], done[i].attempts) for i in ids if at_target[i] > done[i].attempts}
    assert not unrecorded, f"ran more often than recorded (runs, attempts): {unrecorded}"
    redelivered = [i for i in ids if done[i].attempts > 1]
    print(
        f"{len(ids)} calls accepted; {len(redelivered)} redelivered, "
        f"{sum(1 for i in ids if at_target[i] > 1)} of them ran twice at the target; "
        f"ordered calls resent after an unconfirmed publish: {sorted(twice)}"
    )

    # Nothing restarted: the node is the same process, and so is every service.
    assert victim.pid == victim_pid, "the cut node was restarted"
    assert {name: p.pid for name, p in stack.processes.items()} == services_before
    assert all(p.poll() is None for p in stack.processes.values()), "a service died"
    _callers_never_hung(load)


def _call_ids(target: Target) -> list[str]:
    with target.lock:
        return [str(json.loads(p.body)["call"]) for p in target.posts]
