"""Pausing as routing: a paused unordered trigger's key goes to its hold queue and back."""

from __future__ import annotations

from dispatcher.reconcile import Route, Target, desired_topology
from shared.db.lanes import TriggerShape
from shared.wire import topology
from shared.wire.topology import LaneLayout

WORK = Target("queue", "p.work")
HOLD = Target("queue", "p.held.w.t")
OWN = Target("queue", "p.work.w.t")  # the trigger's own queue


def route(pauses: dict[tuple[str, str], bool], ordered: bool = False) -> Route:
    shape = TriggerShape("w", "t", False, 0 if ordered else None)
    layouts = [LaneLayout("w", "t", 1, 0, None)] if ordered else []
    (only,) = desired_topology([shape], layouts, "p", 100, 5, pauses).routes
    return only


def test_hold_queue_names_are_pinned() -> None:
    assert topology.hold_queue_name("hookline", "w", "t") == "hookline.held.w.t"


def test_a_hold_queue_is_unconsumed_and_dead_letters_into_the_work_queue_at_least_once() -> None:
    assert dict(topology.hold_queue_arguments("p", 100)) == {
        "x-queue-type": "quorum",
        "x-max-length": 100,
        "x-overflow": "reject-publish",
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "p.work",
        "x-dead-letter-strategy": "at-least-once",
    }


def test_a_paused_unordered_trigger_is_routed_to_its_hold_queue_only() -> None:
    assert route({("w", "t"): False}) == Route("w.t", HOLD, (WORK, OWN))
    holds = desired_topology(
        [TriggerShape("w", "t", False, None)], [], "p", 100, 5, {("w", "t"): False}
    ).holds
    assert [h.name for h in holds] == ["p.held.w.t"]


def test_a_resumed_trigger_is_routed_back_and_leaves_the_hold_queue() -> None:
    assert route({("w", "t"): True}) == Route("w.t", OWN, (WORK, HOLD))
    assert route({}) == Route("w.t", OWN, (WORK,))


def test_a_paused_ordered_trigger_keeps_its_lane_route() -> None:
    lane = Target("queue", "p.ordered.w.t")
    assert route({("w", "t"): False}, ordered=True) == Route("w.t", lane, (WORK, OWN, HOLD))
