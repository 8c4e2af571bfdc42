"""Flow control across workers: `concurrency` (plain and per key) and `throttle`, as a target sees them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.db.pool import Connection
from tests.helpers import apply_yaml, eventually
from tests.integration.calls import all_finished, delivery_stack, send_many
from tests.integration.concurrency_target import Recorder, running_recorder
from tests.stack import Services

TRIGGERS = """
workspace: {ws}
triggers:
  - name: two-at-once
    auth: {{type: none}}
    concurrency: 2
    workflow:
      - id: call
        http: {{url: "{target}/run", query: {{key: all, ms: "300"}}}}
  - name: one-per-customer
    auth: {{type: none}}
    concurrency: {{key: "request.body.customer", limit: 1}}
    workflow:
      - id: call
        http: {{url: "{target}/run", query: {{key: "{{{{ request.body.customer }}}}", ms: "300"}}}}
  - name: twenty-a-second
    auth: {{type: none}}
    throttle: {{rate: 20, per: 1s, burst: 5}}
    workflow:
      - id: call
        http: {{url: "{target}/run", query: {{key: throttled, ms: "0"}}}}
"""


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    with running_recorder() as running:
        yield running


@pytest.fixture(scope="module")
def flow_stack(amqp_url: str, database_url: str, log_dir: Path) -> Iterator[Services]:
    with delivery_stack(amqp_url, database_url, log_dir, workers=3) as stack:
        yield stack


async def _routed(url: str) -> bool | None:
    async with httpx.AsyncClient() as client:
        answer = await client.post(url, json={"customer": "probe"})
    return True if answer.status_code == 202 else None


async def _ready(stack: Services, db: Connection, workspace: str, recorder: Recorder, trigger: str) -> str:
    await apply_yaml(db, TRIGGERS.format(ws=workspace, target=recorder.base_url))
    url = f"{stack.base_url}/hooks/{workspace}/{trigger}"
    await eventually(lambda: _routed(url), timeout=20)
    await all_finished(db, workspace, 1, timeout=20, trigger=trigger)
    return url


async def test_concurrency_two_holds_across_three_workers_and_is_reached(
    flow_stack: Services, db: Connection, workspace: str, recorder: Recorder
) -> None:
    url = await _ready(flow_stack, db, workspace, recorder, "two-at-once")
    await send_many(url, [{"n": n} for n in range(12)])
    done = await all_finished(db, workspace, 13, timeout=60)
    assert {r.status for r in done} == {"succeeded"}
    assert recorder.most_by_key["all"] == 2, "never more than 2 at once, and 2 at once seen"
    # Three workers took the 12 calls: each could run 16 at once, the limit held them to 2.
    assert sum("execution succeeded" in flow_stack.log(f"worker-{i}") for i in (1, 2, 3)) >= 2


async def test_a_per_key_limit_holds_per_key_while_other_keys_run(
    flow_stack: Services, db: Connection, workspace: str, recorder: Recorder
) -> None:
    url = await _ready(flow_stack, db, workspace, recorder, "one-per-customer")
    customers = ["acme", "globex", "initech"]
    await send_many(url, [{"customer": c, "n": n} for n in range(4) for c in customers])
    done = await all_finished(db, workspace, 13, timeout=60)
    assert {r.status for r in done} == {"succeeded"}
    assert {c: recorder.most_by_key[c] for c in customers} == {c: 1 for c in customers}
    assert recorder.most >= 2, "keys run in parallel"


async def test_a_throttle_of_twenty_a_second_starts_no_more_than_rate_plus_burst_and_refuses_none(
    flow_stack: Services, db: Connection, workspace: str, recorder: Recorder
) -> None:
    url = await _ready(flow_stack, db, workspace, recorder, "twenty-a-second")
    # send_many asserts every answer is 202: the excess waits in the queue, nobody is refused.
    ids = await send_many(url, [{"n": n} for n in range(200)])
    assert len(ids) == 200
    done = await all_finished(db, workspace, 201, timeout=90)
    assert {r.status for r in done} == {"succeeded"}
    starts = sorted(t for t, key in recorder.starts if key == "throttled")
    assert len(starts) >= 200
    assert recorder.most_in_window(1.0) <= 20 + 5
    # The throttle did hold them back: 200 calls at 20 a second (after a burst of 5) take ~9.75 s.
    assert starts[-1] - starts[0] >= 8.5
