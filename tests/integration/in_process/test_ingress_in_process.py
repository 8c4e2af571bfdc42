"""The hot path in the test's process: the real ingress app (`create_app`) under Litestar's
`AsyncTestClient`, on the real broker and database, with an in-process dispatcher and worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from aio_pika.abc import AbstractIncomingMessage
from litestar.testing import AsyncTestClient

from dispatcher.service import Dispatcher
from ingress.app import create_app
from shared.db.executions import get_execution
from shared.db.pool import Connection
from shared.settings import Settings
from shared.wire import topology
from shared.wire.messages import Invocation, invocation_decoder
from tests.helpers import apply_yaml, new_key
from tests.integration.in_process import (
    broker,
    ready_in,
    worker_beside,
)
from tests.integration.target import Target

# Litestar 2.25 deprecates the inferred styles of parameters and dependencies that the
# ingress's handlers are written in (`workspace: str` from the path, `access: Scope` from a
# dependency); the app works. Moving them to `FromPath[...]` and `NamedDependency[...]`
# belongs with the handlers' move to controllers (issue 13, item 5); until then the
# deprecation is let through here, where the whole app is built.
pytestmark = pytest.mark.filterwarnings("ignore::litestar.exceptions.LitestarDeprecationWarning")

TRIGGERS = """
workspace: {ws}
triggers:
  - name: inbox
    auth: {{type: api_key}}
    workflow:
      - id: seen
        map: {{order: "{{{{ request.body.order }}}}"}}
  - name: by-customer
    auth: {{type: none}}
    ordered: {{key: "{{{{ request.body.customer }}}}", partitions: 2}}
    workflow:
      - id: seen
        map: {{order: "{{{{ request.body.order }}}}"}}
  - name: price
    auth: {{type: none}}
    mode: request_response
    workflow:
      - id: quote
        http: {{url: "{target}/work/1"}}
      - respond:
          status: 201
          headers: {{X-Quote: "{{{{ request.body.item }}}}"}}
          body: {{item: "{{{{ request.body.item }}}}", target: "{{{{ steps.quote.output.body }}}}"}}
"""


def hookline_headers(headers: dict[str, Any]) -> dict[str, Any]:
    """Without the delivery count the quorum queue adds as it delivers."""
    return {k: v for k, v in headers.items() if k != "x-delivery-count"}


@pytest.fixture
async def ws(db: Connection, workspace: str, target: Target, dispatcher: Dispatcher) -> str:
    await apply_yaml(db, TRIGGERS.format(ws=workspace, target=target.base_url))
    await dispatcher.reconcile()  # routes exist before the first call
    return workspace


@pytest.fixture
async def api_key(db: Connection, ws: str) -> str:
    return (await new_key(db, ws, "inbox")).key


@pytest.fixture
async def client(settings: Settings, api_key: str) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    # Opened after the triggers and the key exist: the registry loads them as the app starts.
    async with AsyncTestClient(app=create_app(settings)) as running:
        yield running


async def test_an_async_call_is_accepted_once_its_message_is_in_its_trigger_queue(
    settings: Settings,
    ws: str,
    api_key: str,
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    response = await client.post(f"/hooks/{ws}/inbox", json={"order": 7}, headers={"X-API-Key": api_key})

    assert response.status_code == 202
    execution_id = response.json()["execution_id"]
    assert response.json() == {
        "execution_id": execution_id,
        "status_url": f"/hooks/{ws}/inbox/executions/{execution_id}",
    }
    async with broker(settings) as connection:
        channel = await connection.channel()
        # An unordered trigger's calls are routed to its own queue (issue 15's isolation).
        name = topology.trigger_queue_name(settings.amqp_prefix, ws, "inbox")
        queue = await channel.get_queue(name, ensure=False)
        message = await queue.get(timeout=5)
        await message.ack()  # taken out: no worker of this module runs it
    assert (message.message_id, message.delivery_mode, message.content_type, message.type) == (
        execution_id,
        2,
        "application/msgpack",
        "hookline.invocation",
    )
    assert (message.reply_to, message.correlation_id) == (None, None)
    assert hookline_headers(message.headers) == {}  # no ordering key, a first run
    call: Invocation = invocation_decoder.decode(message.body)
    assert (call.id, call.workspace, call.trigger, call.mode) == (execution_id, ws, "inbox", "async")
    assert (call.request.method, call.request.body_kind, call.request.body) == ("POST", "json", {"order": 7})


async def test_a_keyed_call_carries_its_ordering_key_to_its_partition(
    settings: Settings,
    ws: str,
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    response = await client.post(f"/hooks/{ws}/by-customer", json={"customer": "c-42", "order": 1})

    assert response.status_code == 202
    execution_id = response.json()["execution_id"]
    lanes = [topology.ordered_queue_name(settings.amqp_prefix, ws, "by-customer", 1, p) for p in range(2)]
    assert sorted([await ready_in(settings, lane) for lane in lanes]) == [0, 1]
    # Single-active-consumer queues refuse basic.get: consume, as a lane's worker would.
    got: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
    async with broker(settings) as connection:
        channel = await connection.channel()
        for lane in lanes:
            await (await channel.get_queue(lane, ensure=False)).consume(got.put)
        message = await asyncio.wait_for(got.get(), 5)
        await message.ack()
    found = [(message.message_id, hookline_headers(message.headers))]
    assert found == [(execution_id, {"x-hookline-key": "c-42"})]


async def test_a_request_response_call_is_answered_by_the_worker_with_the_workflows_answer(
    settings: Settings,
    db: Connection,
    ws: str,
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    async with worker_beside(client, settings):
        response = await client.post(f"/hooks/{ws}/price", json={"item": "nut"})

    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-quote"] == "nut"
    assert msgspec.json.decode(response.content) == {"item": "nut", "target": {"ok": True}}
    execution = await get_execution(db, response.headers["x-execution-id"])
    assert (execution.status, execution.attempts) == ("succeeded", 1)
