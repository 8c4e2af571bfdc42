"""Traces across real processes: an ingress, a dispatcher and a worker exporting to a local
OTLP/HTTP receiver (a slow one), a call carrying the caller's `traceparent`, and a recorder
target for the workflow's http step. The trace id reaches the target, the execution record,
the API, the CLI and the console; the receiver holds the trace's spans, each with its parent."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.db.pool import Connection
from tests.helpers import apply_yaml, eventually, finished_execution
from tests.integration.calls import cli, delivery_stack
from tests.integration.console_browser import get, session_of, sign_in
from tests.integration.otlp_receiver import Received, Receiver, running_receiver
from tests.integration.target import Target
from tests.stack import Services

CALLER_SPAN = "00f067aa0ba902b7"
# What the call carries that no span, no message header and no target may see.
SECRETS = ("sk-q-7d2c", "sk-h-91a0", "4111-1111-1111-1111", "vendor=evil")
TRIGGERS = """
workspace: {ws}
triggers:
  - name: order
    methods: [POST]
    auth: {{type: none}}
    mode: request_response
    timeout: 20s
    workflow:
      - id: payload
        map: {{id: "{{{{ request.body.id }}}}"}}
      - id: notify
        http: {{method: POST, url: "{target}/traced/{ws}", json: "{{{{ steps.payload.output }}}}"}}
      - id: answer
        respond: {{status: 201, body: {{id: "{{{{ steps.payload.output.id }}}}"}}}}
  - name: ready
    auth: {{type: none}}
    mode: request_response
    workflow: [{{respond: {{status: 204}}}}]
"""
NAMES = {
    "ingress": "POST /hooks/{{workspace}}/{{trigger}}",
    "run": "run {ws}/order",
    "payload": "step payload",
    "notify": "step notify",
    "answer": "step answer",
}


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    # Slow on purpose: the exporter's wait must hold up neither the start nor a call.
    with running_receiver(delay=0.5) as running:
        yield running


@pytest.fixture(scope="module")
def traced(amqp_url: str, database_url: str, log_dir: Path, receiver: Receiver) -> Iterator[Services]:
    """A stack of its own exporting to `receiver` (the same start-up and readiness wait as
    every stack: `tests/stack.py` `services`)."""
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "200",  # milliseconds: spans within a second, not five
    }
    with delivery_stack(amqp_url, database_url, log_dir, workers=1, env=env) as stack:
        yield stack


@pytest.fixture
async def ws(db: Connection, workspace: str, target: Target, traced: Services) -> str:
    await apply_yaml(db, TRIGGERS.format(ws=workspace, target=target.base_url))

    async def routed() -> bool | None:  # the ingress knows the triggers, the dispatcher routed them
        async with httpx.AsyncClient() as client:
            answer = await client.post(f"{traced.base_url}/hooks/{workspace}/ready")
        return True if answer.status_code == 204 else None

    await eventually(routed, timeout=30)
    return workspace


async def call(stack: Services, ws: str, traceparent: str) -> str:
    """The order call, with things a caller could hope to smuggle; its execution id."""
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:
        answer = await client.post(
            f"/hooks/{ws}/order?key=sk-q-7d2c",
            json={"id": 7, "card": "4111-1111-1111-1111"},
            headers={"traceparent": traceparent, "tracestate": "vendor=evil", "X-Secret": "sk-h-91a0"},
        )
    assert (answer.status_code, answer.json()) == (201, {"id": 7}), answer.text
    return answer.headers["x-execution-id"]


def caller_trace() -> tuple[str, str]:
    """A caller's traceparent (a trace of this test alone) and its trace id."""
    trace_id = uuid.uuid4().hex
    return f"00-{trace_id}-{CALLER_SPAN}-01", trace_id


async def whole_trace(receiver: Receiver, trace_id: str, ws: str) -> dict[str, Received]:
    """The trace's spans by role once all six are in (the exporter sends them in batches)."""
    names = {role: name.format(ws=ws) for role, name in NAMES.items()}

    async def probe() -> dict[str, Received] | None:
        spans = receiver.of_trace(trace_id)
        found = {role: [s for s in spans if s.name == name] for role, name in names.items()}
        found["publish"] = [s for s in spans if s.name.startswith("publish ")]
        if any(len(each) != 1 for each in found.values()):
            return None
        assert len(spans) == 6, spans
        return {role: each[0] for role, each in found.items()}

    return await eventually(probe, timeout=30, every=0.2)


async def test_the_callers_trace_is_continued_to_the_target_recorded_and_exported_with_its_parents(
    traced: Services, receiver: Receiver, ws: str, target: Target, db: Connection
) -> None:
    caller, caller_trace_id = caller_trace()
    execution_id = await call(traced, ws, caller)

    execution = await finished_execution(db, execution_id, timeout=30)
    assert (execution.status, execution.trace_id) == ("succeeded", caller_trace_id)
    [post] = target.posts_to(f"/traced/{ws}")
    assert post.traceparent is not None
    version, trace_id, parent_id, flags = post.traceparent.split("-")
    assert (version, trace_id, flags) == ("00", caller_trace_id, "01")
    assert post.tracestate is None  # the caller's tracestate goes nowhere

    spans = await whole_trace(receiver, caller_trace_id, ws)
    parents = {role: span.parent_id for role, span in spans.items()}
    assert parents == {
        "ingress": CALLER_SPAN,
        "publish": spans["ingress"].span_id,
        "run": spans["publish"].span_id,
        "payload": spans["run"].span_id,
        "notify": spans["run"].span_id,
        "answer": spans["run"].span_id,
    }
    assert parent_id == spans["notify"].span_id  # the target's parent is the http step's span
    kinds = {role: span.kind for role, span in spans.items()}
    assert kinds == {
        "ingress": "SERVER",
        "publish": "PRODUCER",
        "run": "CONSUMER",
        "payload": "INTERNAL",
        "notify": "CLIENT",
        "answer": "INTERNAL",
    }
    services = {role: span.service for role, span in spans.items()}
    assert services == {
        "ingress": "hookline-ingress",
        "publish": "hookline-ingress",
        "run": "hookline-worker",
        "payload": "hookline-worker",
        "notify": "hookline-worker",
        "answer": "hookline-worker",
    }
    assert spans["ingress"].attributes["http.response.status_code"] == 201
    assert spans["ingress"].attributes["url.path"] == f"/hooks/{ws}/order"
    assert spans["run"].attributes["hookline.execution_id"] == execution_id
    assert spans["run"].attributes["hookline.status"] == "succeeded"
    assert spans["notify"].attributes["http.response.status_code"] == 201
    assert not any(span.failed for span in spans.values())
    exported = repr([span.attributes for span in spans.values()])
    assert not [secret for secret in SECRETS if secret in exported]


async def test_the_trace_id_is_shown_by_the_api_the_cli_and_the_console(
    traced: Services, ws: str, db: Connection
) -> None:
    caller, caller_trace_id = caller_trace()
    execution_id = await call(traced, ws, caller)
    await finished_execution(db, execution_id, timeout=30)

    admin = {"Authorization": f"Bearer {traced.env['HOOKLINE_ADMIN_TOKEN']}"}
    async with httpx.AsyncClient(base_url=f"{traced.base_url}/api", headers=admin, timeout=30) as api:
        shown = await api.get(f"/executions/{execution_id}")
    assert shown.status_code == 200, shown.text
    assert shown.json()["trace_id"] == caller_trace_id

    printed = cli(traced, "executions", "show", execution_id)
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout)["trace_id"] == caller_trace_id

    signed = await sign_in(traced.base_url, traced.env["HOOKLINE_ADMIN_TOKEN"])
    page = await get(traced.base_url, f"/console/executions/{execution_id}", session_of(signed))
    assert page.status_code == 200
    assert f'<dt>Trace</dt><dd class="mono" id="trace-id">{caller_trace_id}</dd>' in page.text


@pytest.mark.parametrize(
    "hostile",
    [
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "garbage, 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "x" * 4000,
    ],
)
async def test_a_malformed_traceparent_is_ignored_and_the_call_starts_a_trace_of_its_own(
    traced: Services, receiver: Receiver, ws: str, target: Target, db: Connection, hostile: str
) -> None:
    execution_id = await call(traced, ws, hostile)
    execution = await finished_execution(db, execution_id, timeout=30)
    assert execution.status == "succeeded"
    assert execution.trace_id is not None
    assert len(execution.trace_id) == 32
    assert execution.trace_id not in ("4bf92f3577b34da6a3ce929d0e0e4736", "0" * 32)
    spans = await whole_trace(receiver, execution.trace_id, ws)
    assert spans["ingress"].parent_id is None  # a root: nothing of the caller's was continued
    [post] = [
        p for p in target.posts_to(f"/traced/{ws}") if p.traceparent and execution.trace_id in p.traceparent
    ]
    assert post.traceparent.split("-")[:3] == ["00", execution.trace_id, spans["notify"].span_id]
