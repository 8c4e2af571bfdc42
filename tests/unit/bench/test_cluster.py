"""`hookline bench --rabbitmq-nodes N`: the option, what the services and the ceiling are
given, the ceiling's queues placed like hookline's, the placement check, and the node count
in the JSON's header and machine line. (The run itself: a smoke run, see the README.)"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bench import broker, report, run
from bench.harness import Bench, Options, server_roots
from shared.devstack.localservers.cluster import LocalRabbitMQCluster

URLS = (
    "amqp://guest:guest@127.0.0.1:5701/,amqp://guest:guest@127.0.0.1:5702/,amqp://guest:guest@127.0.0.1:5703/"
)


# -- the option ----------------------------------------------------------------------------


def test_rabbitmq_nodes_defaults_to_one_and_reaches_the_options() -> None:
    parser = run.build_parser()
    assert run.options_of(parser.parse_args([])).rabbitmq_nodes == 1
    args = parser.parse_args(["--rabbitmq-nodes", "3", "--seconds", "2", "--profile", "ingress"])
    options = run.options_of(args)
    assert options.rabbitmq_nodes == 3
    assert options.seconds == 2
    assert args.profile == ["ingress"]
    assert options.__dict__["rabbitmq_nodes"] == 3  # what the JSON's "options" records


@pytest.mark.parametrize("value", ["0", "10", "three", "-1"])
def test_a_node_count_outside_1_to_9_is_refused_in_one_line(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        run.build_parser().parse_args(["--rabbitmq-nodes", value])
    assert exited.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == (
        f"hookline bench: error: argument --rabbitmq-nodes: expected a node count from 1 to 9, got {value!r}"
    )


# -- what the services and the ceiling are given -------------------------------------------


def test_the_services_are_given_every_node_and_the_harness_talks_to_the_first(tmp_path: Path) -> None:
    bench = Bench(Options(rabbitmq_nodes=3), folder=tmp_path)
    bench.amqp_urls, bench.amqp_url = URLS, URLS.split(",")[0]
    env = bench._env()
    assert env["HOOKLINE_AMQP_URL"] == URLS
    assert env["BENCH_AMQP_URL"] == URLS


def test_a_ceiling_process_connects_to_one_node_at_random() -> None:
    nodes = URLS.split(",")
    chosen = {broker.one_node(URLS) for _ in range(200)}
    assert chosen == set(nodes)  # each time one of them; over 200 starts every one
    assert broker.one_node(nodes[0]) == nodes[0]


def test_on_a_cluster_the_ceilings_queues_have_3_replicas_and_balanced_leaders_like_hooklines() -> None:
    for name in broker.CEILING_QUEUES:
        arguments = broker.ceiling_queue_arguments(name, 1000, 10, nodes=3)
        assert arguments["x-queue-type"] == "quorum"
        assert arguments["x-quorum-initial-group-size"] == 3
        assert arguments["x-queue-leader-locator"] == "balanced"
    assert broker.ceiling_queue_arguments(broker.LANE_QUEUE, 1000, 10, nodes=3)["x-single-active-consumer"]
    assert (
        broker.ceiling_queue_arguments(broker.ASYNC_QUEUE, 1000, 10, nodes=2)["x-quorum-initial-group-size"]
        == 2
    )
    assert (
        broker.ceiling_queue_arguments(broker.ASYNC_QUEUE, 1000, 10, nodes=5)["x-quorum-initial-group-size"]
        == 3
    )


def test_on_one_node_the_ceilings_queues_are_declared_as_before() -> None:
    arguments = broker.ceiling_queue_arguments(broker.ASYNC_QUEUE, 1000, 10, nodes=1)
    assert "x-quorum-initial-group-size" not in arguments
    assert "x-queue-leader-locator" not in arguments
    assert arguments["x-max-length"] == 1000
    assert arguments["x-delivery-limit"] == 10


# -- the placement check -------------------------------------------------------------------


def _listed(*queues: tuple[str, str, list[str]]) -> str:
    return json.dumps([{"name": n, "leader": leader, "members": members} for n, leader, members in queues])


THREE = ["n1@localhost", "n2@localhost", "n3@localhost"]


def test_placement_records_each_queues_leader_and_replicas_and_leaders_per_node() -> None:
    listed = _listed(
        ("h.work", "n1@localhost", THREE),
        ("h.accept", "n2@localhost", THREE),
        ("ceiling.async", "n3@localhost", THREE),
        ("ceiling.rpc", "n3@localhost", THREE),
    )
    found = broker.placement(
        listed, {"hookline": ["h.work", "h.accept"], "ceiling": ["ceiling.async", "ceiling.rpc"]}, 3
    )
    assert found["nodes"] == 3
    assert found["replicas"] == 3
    assert found["hookline"]["queues"]["h.accept"] == {"leader": "n2@localhost", "replicas": 3}
    assert found["hookline"]["leaders_per_node"] == {"n1@localhost": 1, "n2@localhost": 1}
    assert found["ceiling"]["leaders_per_node"] == {"n3@localhost": 2}


def test_a_queue_replicated_otherwise_or_missing_stops_the_run() -> None:
    listed = _listed(("h.work", "n1@localhost", THREE), ("ceiling.async", "n1@localhost", ["n1@localhost"]))
    with pytest.raises(broker.PlacementError, match=r"ceiling queue ceiling\.async has 1 replicas, not 3"):
        broker.placement(listed, {"hookline": ["h.work"], "ceiling": ["ceiling.async"]}, 3)
    with pytest.raises(broker.PlacementError, match=r"hookline queue h\.lane does not exist"):
        broker.placement(listed, {"hookline": ["h.lane"]}, 3)


def test_on_one_node_every_queue_has_its_one_replica() -> None:
    listed = _listed(("h.work", "n1@localhost", ["n1@localhost"]))
    found = broker.placement(listed, {"hookline": ["h.work"]}, 1)
    assert found["hookline"]["queues"]["h.work"] == {"leader": "n1@localhost", "replicas": 1}


# -- CPU -----------------------------------------------------------------------------------


def test_every_running_nodes_vm_counts_as_rabbitmq(tmp_path: Path) -> None:
    cluster = LocalRabbitMQCluster(tmp_path / "rabbitmq", 3)
    # Stand-ins for started nodes: only their pids are read.
    cluster.nodes = [SimpleNamespace(pid=pid) for pid in (101, 102, None)]  # type: ignore[misc]
    assert server_roots(cluster) == {"rabbitmq": [101, 102]}


# -- the node count in the report ----------------------------------------------------------


def _document(nodes: int) -> dict[str, Any]:
    machine = {"cores": 2, "cpu": "x", "memory_gib": 4, "kernel": "6", "python": "3.11", "rabbitmq": "3.10.8"}
    return {
        "rabbitmq_nodes": nodes,
        "machine": {**machine, "rabbitmq_nodes": nodes, "postgresql": "15"},
        "load_average_before": [1.0],
        "load_average_after": [1.0],
        "seconds": 100,
    }


def test_the_machine_line_and_header_say_how_many_nodes_the_run_used() -> None:
    assert "RabbitMQ 3.10.8 (RabbitMQ: 3 nodes)" in report.machine_line(_document(3))
    assert "RabbitMQ 3.10.8 (RabbitMQ: 1 node)" in report.machine_line(_document(1))
    assert report.header(_document(3)).startswith("RabbitMQ: 3 nodes")
    assert "3 replicas" in report.header(_document(3))
    assert report.header(_document(1)).startswith("RabbitMQ: 1 node ")


def test_a_run_whose_queues_are_not_placed_alike_ends_with_one_line_and_code_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def misplaced(*_: object) -> None:
        raise broker.PlacementError("ceiling queue ceiling.async has 1 replicas, not 3")

    monkeypatch.setattr(run, "session", misplaced)
    monkeypatch.setattr(run, "ensure_wrk", lambda: None)
    assert run.main(["--rabbitmq-nodes", "3", "--results", str(tmp_path)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "bench: the two sides' queues are not placed alike, no figures:"
        " ceiling queue ceiling.async has 1 replicas, not 3"
    ]
    assert not list(tmp_path.glob("bench-*.json"))  # no figures written
