"""The worker in the test's process (`Worker.run_until_idle`): `Runner`, the lanes and the
recorder on the real broker and database, with an in-process dispatcher for the topology."""

from __future__ import annotations

import itertools

import msgspec
import pytest

from dispatcher.service import Dispatcher
from shared.db.deadletters import LetterFilter
from shared.db.executions import get_execution
from shared.db.pool import Connection
from shared.ops import deadletters
from shared.settings import Settings
from shared.wire import topology
from tests.helpers import apply_yaml, filed_as_dead_letters
from tests.integration.in_process import (
    broker,
    invocation,
    publish,
    ready_in,
    trigger_version,
)
from tests.integration.target import Target
from worker.service import Worker

TRIGGERS = """
workspace: {ws}
triggers:
  - name: count
    auth: {{type: none}}
    workflow:
      - id: seen
        map: {{n: "{{{{ request.body.n }}}}", shout: "{{{{ upper(request.body.name) }}}}"}}
  - name: flaky
    auth: {{type: none}}
    retry: {{max_attempts: 3, backoff: 250ms}}
    workflow:
      - id: call
        http: {{url: "{target}/fail/{{{{ request.body.tag }}}}"}}
  - name: lane
    auth: {{type: none}}
    ordered: true
    workflow:
      - id: seen
        map: {{n: "{{{{ request.body.n }}}}"}}
"""


@pytest.fixture
async def ws(db: Connection, workspace: str, target: Target, dispatcher: Dispatcher) -> str:
    await apply_yaml(db, TRIGGERS.format(ws=workspace, target=target.base_url))
    await dispatcher.reconcile()  # its queues and bindings, now
    return workspace


async def test_a_call_is_run_recorded_and_acked_before_the_worker_is_idle(
    settings: Settings, db: Connection, ws: str
) -> None:
    call = invocation(ws, "count", await trigger_version(db, ws, "count"), {"n": 21, "name": "ada"})
    await publish(settings, call)

    await Worker(settings, concurrency=4).run_until_idle()

    execution = await get_execution(db, call.id)
    assert (execution.status, execution.attempts, execution.error) == ("succeeded", 1, None)
    assert execution.output == {"n": 21, "shout": "ADA"}
    # The worker closed its channels as it stopped: an unacked delivery would be back.
    assert await ready_in(settings, topology.work_queue_name(settings.amqp_prefix)) == 0


async def test_a_failing_run_is_retried_through_the_delay_queue_then_dead_lettered_at_its_limit(
    settings: Settings, db: Connection, ws: str, target: Target
) -> None:
    target.failing.add(ws)
    calls_before = target.calls
    call = invocation(ws, "flaky", await trigger_version(db, ws, "flaky"), {"tag": ws})
    await publish(settings, call)

    # The retries wait in the 250 ms delay tier, which flows back into the work queue:
    # the worker is not idle until the last attempt is dead-lettered.
    await Worker(settings, concurrency=4).run_until_idle()

    execution = await get_execution(db, call.id)
    assert (execution.status, execution.attempts) == ("dead", 3)
    assert execution.error == f"step call (http): GET {target.url('/fail/' + ws)} answered 500; expected 2xx"
    assert target.calls - calls_before == 3
    await filed_as_dead_letters(db, call.id)
    headers = await db.fetchval("select headers from dead_letters where id = $1", call.id)
    # The copy the third run took came from the delay queue: attempt 3, two runs before it.
    assert msgspec.msgpack.decode(headers) == {"x-hookline-attempt": 3, "x-hookline-runs": 2}


async def test_an_ordered_lane_runs_its_calls_one_at_a_time_in_arrival_order(
    settings: Settings, db: Connection, ws: str
) -> None:
    version = await trigger_version(db, ws, "lane")
    calls = [invocation(ws, "lane", version, {"n": n}) for n in range(12)]
    for call in calls:
        await publish(settings, call)
    lane = topology.ordered_queue_name(settings.amqp_prefix, ws, "lane")
    assert await ready_in(settings, lane) == 12

    await Worker(settings, concurrency=4).run_until_idle()

    executions = [await get_execution(db, call.id) for call in calls]
    assert [(x.status, x.output) for x in executions] == [("succeeded", {"n": n}) for n in range(12)]
    for before, after in itertools.pairwise(executions):
        assert before.finished_at is not None
        assert before.finished_at <= after.started_at, "a lane ran two calls at once, or out of order"
    assert await ready_in(settings, lane) == 0


async def test_a_dead_letter_replayed_once_its_target_is_back_runs_again_counting_on_from_the_record(
    settings: Settings, db: Connection, ws: str, target: Target
) -> None:
    target.failing.add(ws)
    call = invocation(ws, "flaky", await trigger_version(db, ws, "flaky"), {"tag": ws})
    await publish(settings, call)
    await Worker(settings, concurrency=4).run_until_idle()
    await filed_as_dead_letters(db, call.id)
    target.failing.discard(ws)

    async with broker(settings) as connection:
        outcome = await deadletters.replay(
            db, connection, settings.amqp_prefix, LetterFilter(ids=[call.id]), settings.publish_timeout
        )
    assert (outcome.replayed, outcome.failed) == ([(call.id, f"{ws}/flaky")], [])
    await Worker(settings, concurrency=4).run_until_idle()

    execution = await get_execution(db, call.id)
    assert (execution.status, execution.attempts, execution.error) == ("succeeded", 4, None)
    assert await db.fetchval("select count(*) from dead_letters where id = $1", call.id) == 0
