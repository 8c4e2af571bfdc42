"""Traces in the test's process: the real ingress app (`create_app`) under Litestar's test
client, an in-process dispatcher and worker, on the real broker and database, with spans in
the SDK's in-memory exporter: the headers the ingress publishes, and a request-response
call's whole trace down to the target."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from litestar.testing import AsyncTestClient
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from dispatcher.service import Dispatcher
from ingress.app import create_app
from shared.db.executions import get_execution
from shared.db.pool import Connection
from shared.runtime import tracing
from shared.settings import Settings
from shared.wire import topology
from tests.helpers import apply_yaml
from tests.integration.in_process import (
    broker,
    worker_beside,
)
from tests.integration.target import Target

# As in test_ingress_in_process.py: Litestar's deprecation of the handlers' inferred styles.
pytestmark = pytest.mark.filterwarnings("ignore::litestar.exceptions.LitestarDeprecationWarning")

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER = f"00-{CALLER_TRACE}-b7ad6b7169203331-01"
TRIGGERS = """
workspace: {ws}
triggers:
  - name: inbox
    auth: {{type: none}}
    workflow:
      - id: seen
        map: {{order: "{{{{ request.body.order }}}}"}}
  - name: quote
    auth: {{type: none}}
    mode: request_response
    workflow:
      - id: ask
        http: {{method: POST, url: "{target}/quote/{ws}", json: {{item: "{{{{ request.body.item }}}}"}}}}
      - respond: {{status: 201, body: {{item: "{{{{ request.body.item }}}}"}}}}
"""
SMUGGLED = {"tracestate": "vendor=evil", "X-Injected": "sk-h-5a1e"}


@pytest.fixture
async def ws(db: Connection, workspace: str, target: Target, dispatcher: Dispatcher) -> str:
    await apply_yaml(db, TRIGGERS.format(ws=workspace, target=target.base_url))
    await dispatcher.reconcile()
    return workspace


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with tracing.installed(provider):
        yield exporter


@pytest.fixture
async def client(settings: Settings, ws: str, spans: InMemorySpanExporter) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    async with AsyncTestClient(app=create_app(settings)) as running:
        yield running


def span_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.span_id:016x}"


async def test_the_ingress_publishes_its_publish_spans_traceparent_and_nothing_of_the_callers(
    settings: Settings,
    ws: str,
    client: AsyncTestClient,  # type: ignore[type-arg]
    spans: InMemorySpanExporter,
) -> None:
    response = await client.post(
        f"/hooks/{ws}/inbox?key=sk-q-0c4f", json={"order": 7}, headers={"traceparent": CALLER, **SMUGGLED}
    )
    assert response.status_code == 202
    async with broker(settings) as connection:
        channel = await connection.channel()
        name = topology.trigger_queue_name(settings.amqp_prefix, ws, "inbox")
        message = await (await channel.get_queue(name, ensure=False)).get(timeout=5)
        await message.ack()  # taken out: no worker of this test runs it
    found = {span.name: span for span in spans.get_finished_spans()}
    published = found[f"publish {topology.invocations_exchange(settings.amqp_prefix)}"]
    served = found["POST /hooks/{workspace}/{trigger}"]
    headers = {k: v for k, v in (message.headers or {}).items() if k != "x-delivery-count"}
    assert headers == {"traceparent": f"00-{CALLER_TRACE}-{span_id(published)}-01"}
    assert published.parent is not None
    assert f"{published.parent.span_id:016x}" == span_id(served)
    assert served.attributes is not None
    assert served.attributes["hookline.execution_id"] == response.json()["execution_id"]
    assert served.attributes["http.response.status_code"] == 202
    assert "sk-q-0c4f" not in repr([dict(s.attributes or {}) for s in found.values()])


async def test_a_request_response_calls_trace_runs_from_the_caller_to_the_target(
    settings: Settings,
    db: Connection,
    ws: str,
    target: Target,
    client: AsyncTestClient,  # type: ignore[type-arg]
    spans: InMemorySpanExporter,
) -> None:
    async with worker_beside(client, settings):
        response = await client.post(
            f"/hooks/{ws}/quote", json={"item": "nut"}, headers={"traceparent": CALLER, **SMUGGLED}
        )
    assert response.status_code == 201, response.text
    execution = await get_execution(db, response.headers["x-execution-id"])
    assert (execution.status, execution.trace_id) == ("succeeded", CALLER_TRACE)

    every = spans.get_finished_spans()
    found = {span.name: span for span in every}
    served = found["POST /hooks/{workspace}/{trigger}"]
    published = found[f"publish {topology.invocations_exchange(settings.amqp_prefix)}"]
    run, ask = found[f"run {ws}/quote"], found["step ask"]
    respond = [s for s in every if (s.attributes or {}).get("hookline.step.kind") == "respond"]
    assert (len(every), len(respond)) == (5, 1), [s.name for s in every]
    assert respond[0].parent is not None
    assert f"{respond[0].parent.span_id:016x}" == span_id(run)
    chain = [(span.parent.span_id if span.parent else None) for span in (served, published, run, ask)]
    assert [f"{parent:016x}" if parent else None for parent in chain] == [
        "b7ad6b7169203331",
        span_id(served),
        span_id(published),
        span_id(run),
    ]
    assert {span.context.trace_id for span in every if span.context} == {int(CALLER_TRACE, 16)}
    [post] = target.posts_to(f"/quote/{ws}")
    assert (post.traceparent, post.tracestate) == (f"00-{CALLER_TRACE}-{span_id(ask)}-01", None)
