"""Queue names are part of the deployed state: renaming one is a migration, so they are pinned."""

from __future__ import annotations

from dispatcher.reconcile import LayoutChanges, Route, Target, desired_topology, layout_changes
from shared.db.lanes import TriggerShape, shape_from_spec
from shared.wire import topology
from shared.wire.topology import LaneLayout, QueueSpec


def test_names_are_pinned() -> None:
    assert topology.invocations_exchange("hookline") == "hookline.invocations"
    assert topology.dead_letter_exchange("hookline") == "hookline.dead"
    assert topology.work_queue_name("hookline") == "hookline.work"
    assert topology.dead_letter_queue_name("hookline") == "hookline.dead-letters"
    assert topology.ordered_queue_name("hookline", "demo", "orders") == "hookline.ordered.demo.orders"
    assert topology.ordered_queue_name("hookline", "demo", "orders", 2) == "hookline.ordered.demo.orders.g2"
    assert (
        topology.ordered_queue_name("hookline", "demo", "orders", 1, 3) == "hookline.ordered.demo.orders.g1.3"
    )
    assert (
        topology.partition_exchange_name("hookline", "demo", "orders", 4)
        == "hookline.partitions.demo.orders.g4"
    )
    assert topology.routing_key("demo", "orders") == "demo.orders"
    assert [topology.retry_queue_name("hookline", t) for t in topology.RETRY_TIERS] == [
        "hookline.retry.250ms",
        "hookline.retry.1s",
        "hookline.retry.2s",
        "hookline.retry.5s",
        "hookline.retry.15s",
        "hookline.retry.1m",
        "hookline.retry.5m",
        "hookline.retry.15m",
        "hookline.retry.1h",
    ]


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


def test_a_retry_tier_expires_into_the_work_queue_at_least_once() -> None:
    assert dict(topology.retry_queue_arguments("p", 5, 100)) == {
        "x-queue-type": "quorum",
        "x-message-ttl": 5000,
        "x-max-length": 100,
        "x-overflow": "reject-publish",
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "p.work",
        "x-dead-letter-strategy": "at-least-once",
    }


def test_a_delay_is_served_by_the_nearest_tier_on_a_log_scale() -> None:
    assert [topology.retry_tier(d) for d in (0.01, 0.25, 0.4, 0.6, 1.4, 1.5, 3, 4, 8, 45, 86400)] == [
        0.25, 0.25, 0.25, 1, 1, 2, 2, 5, 5, 60, 3600,
    ]  # fmt: skip


def test_the_ordered_setting_becomes_a_shape() -> None:
    assert shape_from_spec("w", "t", False, False) == TriggerShape("w", "t", False, None)
    assert shape_from_spec("w", "t", False, True) == TriggerShape("w", "t", False, 0)
    assert shape_from_spec("w", "t", True, {"key": "request.body.c", "partitions": 4}) == TriggerShape(
        "w", "t", True, 4, "request.body.c"
    )


def test_a_new_ordered_trigger_gets_generation_one_and_a_changed_one_a_new_generation() -> None:
    shapes = [
        TriggerShape("w", "new", False, 0),
        TriggerShape("w", "same", False, 4, "request.body.c"),
        TriggerShape("w", "more", False, 8, "request.body.c"),
        TriggerShape("w", "off", False, None),
        TriggerShape("w", "gone", True, 0),
    ]
    same = LaneLayout("w", "same", 3, 4, "request.body.c")
    more = LaneLayout("w", "more", 1, 4, "request.body.c")
    off = LaneLayout("w", "off", 2, 0, None)
    gone = LaneLayout("w", "gone", 1, 0, None)
    old = LaneLayout("w", "old", 1, 0, None)  # its workspace was deleted
    assert layout_changes(shapes, [same, more, off, gone, old]) == LayoutChanges(
        drain=(more, off, gone, old),
        create=(LaneLayout("w", "new", 1, 0, None), LaneLayout("w", "more", 2, 8, "request.body.c")),
    )


def test_desired_topology_routes_each_trigger_to_exactly_one_target() -> None:
    shapes = [
        TriggerShape("w", "plain", False, None),
        TriggerShape("w", "lane", False, 0),
        TriggerShape("w", "keyed", False, 2, "request.body.c"),
        TriggerShape("w", "was-lane", False, None),
        TriggerShape("w", "gone", True, None),
    ]
    layouts = [
        LaneLayout("w", "lane", 1, 0, None),
        LaneLayout("w", "keyed", 1, 0, None, draining=True),
        LaneLayout("w", "keyed", 2, 2, "request.body.c"),
        LaneLayout("w", "was-lane", 1, 0, None, draining=True),
    ]
    desired = desired_topology(shapes, layouts, "p", 100, 5)
    work = Target("queue", "p.work")
    assert desired.work == QueueSpec("p.work", topology.work_queue_arguments("p", 100, 5))
    assert [r.name for r in desired.retries] == [
        topology.retry_queue_name("p", t) for t in topology.RETRY_TIERS
    ]
    assert [(lane.exchange, [q.name for q in lane.queues]) for lane in desired.lanes] == [
        ("p.partitions.w.keyed.g2", ["p.ordered.w.keyed.g2.0", "p.ordered.w.keyed.g2.1"]),
        (None, ["p.ordered.w.lane"]),
    ]

    def own(name: str) -> Target:
        return Target("queue", f"p.work.w.{name}")

    # Each unordered trigger has a queue of its own; every key leaves the shared work queue
    # (where unordered keys were bound before trigger queues) and its own queue when ordered.
    assert list(desired.routes) == [
        Route("w.gone", None, (work, own("gone"))),
        Route(
            "w.keyed",
            Target("exchange", "p.partitions.w.keyed.g2"),
            (work, own("keyed"), Target("queue", "p.ordered.w.keyed")),
        ),
        Route("w.lane", Target("queue", "p.ordered.w.lane"), (work, own("lane"))),
        Route("w.plain", own("plain"), (work,)),
        Route("w.was-lane", own("was-lane"), (work, Target("queue", "p.ordered.w.was-lane"))),
    ]
    assert [q.name for q in desired.triggers] == ["p.work.w.plain", "p.work.w.was-lane"]
    assert list(desired.retiring) == ["p.work.w.gone", "p.work.w.keyed", "p.work.w.lane"]


def test_a_trigger_queue_is_bounded_by_its_trigger_or_the_deployment() -> None:
    shapes = [TriggerShape("w", "own", False, None, max_queued=7), TriggerShape("w", "default", False, None)]
    desired = desired_topology(shapes, [], "p", 100, 5, trigger_max_length=50)
    bounds = {q.name: q.argument_dict()["x-max-length"] for q in desired.triggers}
    assert bounds == {"p.work.w.own": 7, "p.work.w.default": 50}
    assert desired.work.argument_dict()["x-max-length"] == 100
    assert dict(topology.trigger_queue_arguments("p", 7, 5)) == {
        "x-queue-type": "quorum",
        "x-max-length": 7,
        "x-overflow": "reject-publish",
        "x-dead-letter-exchange": "p.dead",
        "x-dead-letter-strategy": "at-least-once",
        "x-delivery-limit": 5,
        "x-queue-leader-locator": "balanced",
    }
    assert topology.trigger_queue_name("hookline", "w", "t") == "hookline.work.w.t"
    assert shape_from_spec("w", "t", False, False, 9) == TriggerShape("w", "t", False, None, max_queued=9)
