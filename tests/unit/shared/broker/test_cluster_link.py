"""Several broker nodes: the URL list, the aio-pika internals the node rotation leans on,
and the queue placement the dispatcher asks for on a cluster."""

from __future__ import annotations

import inspect

import pytest
from aio_pika.robust_connection import RobustConnection

from shared.broker.link import ClusterConnection
from shared.errors import ConfigError
from shared.settings import load_settings, split_amqp_urls
from shared.wire import topology

A, B, C = (f"amqp://guest:guest@127.0.0.1:{port}/" for port in (5672, 5673, 5674))


def test_one_url_is_one_node_and_a_comma_separated_list_is_one_node_each() -> None:
    assert split_amqp_urls(A) == (A,)
    assert split_amqp_urls(f"{A}, {B},{C}") == (A, B, C)


@pytest.mark.parametrize("value", [f"{A},", f"{A},,{B}", f"{A},mq.example:5672", "secret-pw@mq"])
def test_a_malformed_node_list_stops_the_start_with_a_line_that_shows_no_url(value: str) -> None:
    environ = {"HOOKLINE_DATABASE_URL": "postgresql://db/x", "HOOKLINE_AMQP_URL": value}
    with pytest.raises(ConfigError) as raised:
        load_settings(environ)
    assert str(raised.value).startswith("HOOKLINE_AMQP_URL: URL ")
    assert "secret-pw" not in str(raised.value)
    assert "mq.example" not in str(raised.value)


def test_the_robust_connection_still_makes_each_attempt_through_the_method_the_cluster_overrides() -> None:
    # ClusterConnection replaces aio-pika's private (name-mangled) connection attempt; if an
    # upgrade renames it, the override would silently never run and a dead node be re-dialled.
    attempt = "_RobustConnection__connect_transport"
    assert inspect.iscoroutinefunction(getattr(RobustConnection, attempt, None))
    assert "self.__connect_transport()" in inspect.getsource(RobustConnection)
    assert attempt in vars(ClusterConnection)


def test_quorum_queues_get_three_replicas_at_most_and_balanced_leaders_only_on_a_cluster() -> None:
    assert topology.placement_arguments(1) == ()
    assert dict(topology.placement_arguments(2)) == {
        "x-quorum-initial-group-size": 2,
        "x-queue-leader-locator": "balanced",
    }
    assert dict(topology.placement_arguments(5))["x-quorum-initial-group-size"] == 3
