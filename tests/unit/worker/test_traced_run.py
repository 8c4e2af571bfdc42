"""One call's trace across the AMQP hop, in the test's process and without a broker: the
ingress's server span and publish (the real `InvocationPublisher`, its properties captured),
then the worker's `Runner` on a delivery with those headers, running a real workflow whose
http step calls a mock target. Spans go to the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

import aiormq
import asyncpg
import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from ingress.hooks import answer_status
from ingress.publishing import InvocationPublisher
from ingress.replies import ReplyWaiter
from shared.broker.publishers import ReplyPublisher
from shared.runtime import tracing
from shared.settings import Settings
from shared.wire import topology
from shared.wire.amqp import republished_headers
from shared.wire.messages import Invocation
from tests.unit.worker.test_runner_failures import FakeDelivery, FakeHolds
from tests.workflow_runs import Recorded, StaticResources, invocation, workflow_of
from worker.consumer import Lane, Runner
from worker.engine import Workflow
from worker.execution import Reporter
from worker.recorder import Recorder

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER = f"00-{CALLER_TRACE}-b7ad6b7169203331-01"
WORKFLOW = """
- id: order
  map: {id: "{{ request.body.id }}"}
- id: post
  http:
    method: POST
    url: "http://target.test/orders?key=k-55e1"
    headers: {X-Api-Key: k-55e1}
    json: "{{ steps.order.output }}"
"""


class Captured:
    """A ConfirmedPublisher that keeps what it was given and confirms at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, aiormq.spec.Basic.Properties, str]] = []

    async def publish(self, body: bytes, properties: aiormq.spec.Basic.Properties, routing_key: str) -> None:
        self.sent.append((body, properties, routing_key))


class OneWorkflow:
    def __init__(self, workflow: Workflow) -> None:
        self.workflow = workflow

    async def get(self, workspace: str, trigger: str, version: int) -> Workflow:
        return self.workflow


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with tracing.installed(provider):
        yield exporter


def publisher_of(captured: Captured) -> InvocationPublisher:
    publisher = InvocationPublisher(
        Settings(amqp_url="amqp://unused", database_url="postgresql://unused"), ReplyWaiter()
    )
    # A connected publisher as `_open` leaves it, on a confirm channel that is `captured`.
    publisher._link = SimpleNamespace(ready=True, connection=None)  # type: ignore[assignment]
    publisher._exchange = SimpleNamespace(name="hl.invocations")  # type: ignore[assignment]
    publisher._publisher = captured  # type: ignore[assignment]
    return publisher


async def ingress_publishes(call: Invocation, caller_traceparent: str | None) -> aiormq.spec.Basic.Properties:
    """The ingress's part: a server span (as `Hooks.handle` opens it), the publish in it."""
    captured = Captured()
    traced = (
        tracing.serving("POST", caller_traceparent, "/hooks/ws/t", "ws", "t", answer_status)
        if tracing.on
        else tracing.UNTRACED
    )
    with traced as span:
        await publisher_of(captured).publish(call, "ws.t", want_reply=False)
        if span is not None:
            tracing.answered(span, 202)
    [(_, properties, _)] = captured.sent
    return properties


async def worker_runs(
    call: Invocation, headers: dict[str, Any] | None
) -> tuple[Recorded, list[httpx.Request], FakeDelivery]:
    """The worker's part: a delivery with `headers`, run and recorded by the real Runner."""
    received: list[httpx.Request] = []

    def target(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(201, json={"created": True})

    recorded = Recorded()
    async with httpx.AsyncClient(transport=httpx.MockTransport(target)) as client:
        runner = Runner(
            OneWorkflow(workflow_of(WORKFLOW, StaticResources(client))),  # type: ignore[arg-type]
            Reporter(cast(Recorder, recorded), cast(ReplyPublisher, None), cast(asyncpg.Pool, None)),
            FakeHolds("skip"),  # type: ignore[arg-type]
            None,  # type: ignore[arg-type]
            None,  # type: ignore[arg-type]
            prefix="hl",
            delivery_limit=10,
            stopping=asyncio.Event(),
        )
        message = FakeDelivery(call)
        message.headers = headers  # type: ignore[assignment]
        await runner.handle(message, Lane.SHARED, "hl.work.ws.t")  # type: ignore[arg-type]
    return recorded, received, message


def named(spans: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    found = {span.name: span for span in spans.get_finished_spans()}
    assert len(found) == len(spans.get_finished_spans()), "span names repeat"
    return found


def ids(span: ReadableSpan) -> tuple[int, int]:
    assert span.context is not None
    return span.context.trace_id, span.context.span_id


async def test_the_run_and_its_steps_continue_the_callers_trace_across_the_amqp_headers(
    spans: InMemorySpanExporter,
) -> None:
    call = invocation({"id": 7})
    properties = await ingress_publishes(call, CALLER)
    recorded, received, message = await worker_runs(call, properties.headers)

    found = named(spans)
    assert sorted(found) == [
        "POST /hooks/{workspace}/{trigger}",
        "publish hl.invocations",
        "run ws/t",
        "step order",
        "step post",
    ]
    served, published = found["POST /hooks/{workspace}/{trigger}"], found["publish hl.invocations"]
    run, mapped, posted = found["run ws/t"], found["step order"], found["step post"]
    trace_id = int(CALLER_TRACE, 16)
    assert {ids(span)[0] for span in found.values()} == {trace_id}
    parents = {name: (span.parent.span_id if span.parent else None) for name, span in found.items()}
    assert parents == {
        "POST /hooks/{workspace}/{trigger}": 0xB7AD6B7169203331,
        "publish hl.invocations": ids(served)[1],
        "run ws/t": ids(published)[1],
        "step order": ids(run)[1],
        "step post": ids(run)[1],
    }
    kinds = [span.kind for span in (served, published, run, mapped, posted)]
    assert kinds == [
        SpanKind.SERVER,
        SpanKind.PRODUCER,
        SpanKind.CONSUMER,
        SpanKind.INTERNAL,
        SpanKind.CLIENT,
    ]
    # What crossed the hop: the publish's traceparent, and nothing else of the caller's.
    assert properties.headers == {"traceparent": f"00-{CALLER_TRACE}-{ids(published)[1]:016x}-01"}
    [request] = received
    assert request.headers.get_list("traceparent") == [f"00-{CALLER_TRACE}-{ids(posted)[1]:016x}-01"]
    [record] = recorded.records
    assert (record.status, record.trace_id) == ("succeeded", CALLER_TRACE)
    assert message.calls == ["ack"]
    assert dict(served.attributes or {}) == {
        "http.request.method": "POST",
        "http.route": "/hooks/{workspace}/{trigger}",
        "url.path": "/hooks/ws/t",
        "hookline.workspace": "ws",
        "hookline.trigger": "t",
        "hookline.execution_id": call.id,
        "http.response.status_code": 202,
    }
    assert dict(run.attributes or {}) == {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "process",
        "messaging.destination.name": "hl.work.ws.t",
        "messaging.message.id": call.id,
        "hookline.workspace": "ws",
        "hookline.trigger": "t",
        "hookline.execution_id": call.id,
        "hookline.status": "succeeded",
    }
    # The step's URL has a key in its query and its header: neither is in a span.
    assert dict(posted.attributes or {}) == {
        "hookline.step.id": "post",
        "hookline.step.kind": "http",
        "http.request.method": "POST",
        "url.scheme": "http",
        "server.address": "target.test",
        "server.port": 80,
        "http.response.status_code": 201,
    }
    assert "k-55e1" not in repr([dict(span.attributes or {}) for span in found.values()])


async def test_without_a_traceparent_the_ingress_starts_the_trace_the_run_records(
    spans: InMemorySpanExporter,
) -> None:
    call = invocation({"id": 8})
    properties = await ingress_publishes(call, "00-not-a-traceparent-01")
    recorded, received, _ = await worker_runs(call, properties.headers)
    found = named(spans)
    served = found["POST /hooks/{workspace}/{trigger}"]
    assert served.parent is None
    trace_id = ids(served)[0]
    assert {ids(span)[0] for span in found.values()} == {trace_id}
    [record] = recorded.records
    assert record.trace_id == f"{trace_id:032x}"
    assert received[0].headers["traceparent"].split("-")[1] == f"{trace_id:032x}"


@pytest.mark.parametrize(
    "headers",
    [
        None,
        {},
        {"traceparent": 42},
        {"traceparent": b"00-nonsense"},
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\nX-Injected: 1"},
    ],
)
async def test_a_delivery_without_a_usable_traceparent_runs_in_a_trace_of_its_own(
    spans: InMemorySpanExporter, headers: dict[str, Any] | None
) -> None:
    recorded, received, message = await worker_runs(invocation({"id": 9}), headers)
    run = named(spans)["run ws/t"]
    assert run.parent is None
    [record] = recorded.records
    assert record.trace_id == f"{ids(run)[0]:032x}"
    [request] = received
    assert "x-injected" not in request.headers
    assert request.headers["traceparent"].split("-")[1] == record.trace_id
    assert message.calls == ["ack"]


class Refuses:
    """A tracer that fails the test if anything asks it for a span."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"tracing is off, yet the tracer was asked for {name}")


async def test_with_tracing_off_nothing_is_traced_carried_or_recorded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert not tracing.on
    monkeypatch.setattr(tracing, "_tracer", Refuses())
    call = invocation({"id": 10})
    properties = await ingress_publishes(call, CALLER)
    assert properties.headers is None
    recorded, received, message = await worker_runs(call, {"traceparent": CALLER})
    [record] = recorded.records
    assert (record.status, record.trace_id) == ("succeeded", None)
    # Not even the traceparent the message carried: off, nothing is read or sent on.
    assert "traceparent" not in received[0].headers
    assert message.calls == ["ack"]


def test_a_retry_and_a_dead_letter_put_back_keep_the_calls_traceparent() -> None:
    headers = {"traceparent": CALLER, "x-delivery-count": 3, "x-death": [{"count": 1}]}
    again = republished_headers(headers, **{topology.ATTEMPT_HEADER: 2})
    assert again == {"traceparent": CALLER, topology.ATTEMPT_HEADER: 2}
