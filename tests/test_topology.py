"""Queue names are part of the deployed state: renaming one is a migration, so they are pinned."""

from __future__ import annotations

from dispatcher.reconcile import Route, desired_topology
from shared import topology
from shared.db.registry import TriggerState
from shared.topology import QueueSpec


def test_names_are_pinned() -> None:
    assert topology.invocations_exchange("hookline") == "hookline.invocations"
    assert topology.dead_letter_exchange("hookline") == "hookline.dead"
    assert topology.work_queue_name("hookline") == "hookline.work"
    assert topology.dead_letter_queue_name("hookline") == "hookline.dead-letters"
    assert topology.ordered_queue_name("hookline", "demo", "orders") == "hookline.ordered.demo.orders"
    assert topology.routing_key("demo", "orders") == "demo.orders"


def test_work_queues_are_bounded_quorum_queues_that_dead_letter_at_least_once() -> None:
    arguments = dict(topology.work_queue_arguments("p", 100, 5))
    assert arguments == {
        "x-queue-type": "quorum",
        "x-max-length": 100,
        "x-overflow": "reject-publish",
        "x-dead-letter-exchange": "p.dead",
        "x-dead-letter-strategy": "at-least-once",
        "x-delivery-limit": 5,
    }
    assert dict(topology.ordered_queue_arguments("p", 100, 5))["x-single-active-consumer"] is True


def test_desired_topology_routes_each_trigger_to_exactly_one_queue() -> None:
    states = [
        TriggerState("w", "plain", ordered=False, was_ordered=False, deleted=False),
        TriggerState("w", "lane", ordered=True, was_ordered=True, deleted=False),
        TriggerState("w", "was-lane", ordered=False, was_ordered=True, deleted=False),
        TriggerState("w", "gone", ordered=False, was_ordered=False, deleted=True),
    ]
    desired = desired_topology(states, "p", 100, 5)
    work = QueueSpec("p.work", topology.work_queue_arguments("p", 100, 5))
    assert desired.work == work
    assert list(desired.routes) == [
        Route("w.gone", None, ("p.work",)),
        Route(
            "w.lane",
            QueueSpec("p.ordered.w.lane", topology.ordered_queue_arguments("p", 100, 5)),
            ("p.work",),
        ),
        Route("w.plain", work, ()),
        Route("w.was-lane", work, ("p.ordered.w.was-lane",)),
    ]
