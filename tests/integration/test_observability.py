"""Metrics and probes on every service, and JSON logs that carry the run and never a body."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.db.pool import Connection
from shared.logs import JsonFormatter, RunContextFilter, run_context
from tests.conftest import TEST_SECRETS
from tests.helpers import apply_yaml, eventually, finished_execution, new_key
from tests.stack import Services, free_port

TRIGGERS = """
workspace: {ws}
triggers:
  - name: counted
    auth: {{type: none}}
    workflow:
      - id: fails
        http: {{url: "http://127.0.0.1:9/", timeout: 2s}}
    retry: {{max_attempts: 1}}
  - name: guarded
    methods: [POST]
    auth: {{type: api_key}}
    query: {{n: {{type: integer, required: true}}}}
    body: {{max_bytes: 64, content_types: [application/json]}}
    workflow: [{{id: ok, map: {{ok: true}}}}]
  - name: limited
    auth: {{type: none}}
    rate_limit: {{per_key: 1, per: 1m, burst: 1}}
    workflow: [{{id: ok, map: {{ok: true}}}}]
  - name: asks
    auth: {{type: none}}
    mode: request_response
    workflow: [{{respond: {{status: 200}}}}]
"""


@pytest.fixture
def probed(stack: Services) -> Iterator[dict[str, int]]:
    """One more worker and dispatcher, each with its metrics port."""
    ports = {"worker-probed": free_port(), "dispatcher-probed": free_port()}
    for name, port in ports.items():
        stack.start(name, "--metrics-port", str(port))
    yield ports
    for name in ports:
        stack.stop(name)


def _samples(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels`, from /metrics."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


async def test_worker_and_dispatcher_serve_health_readiness_and_metrics(
    probed: dict[str, int], stack: Services, db: Connection, workspace: str
) -> None:
    async def ready(port: int) -> httpx.Response | None:
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"http://127.0.0.1:{port}/readyz")
        return answer if answer.status_code == 200 else None

    checks = {
        "worker-probed": {"broker": True, "database": True, "deliveries": True},
        "dispatcher-probed": {"broker": True, "database": True},
    }
    for name, port in probed.items():
        answer = await eventually(lambda port=port: ready(port), timeout=20)  # type: ignore[misc]
        assert answer.json() == {"ready": True, "checks": checks[name]}
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{port}/healthz")).json() == {"status": "ok"}
    async with httpx.AsyncClient() as client:
        worker = (await client.get(f"http://127.0.0.1:{probed['worker-probed']}/metrics")).text
    for name in (
        "hookline_worker_executions_total",
        "hookline_worker_execution_seconds",
        "hookline_worker_end_to_end_seconds",
        "hookline_worker_retries_total",
        "hookline_worker_dead_letters_total",
    ):
        assert f"# TYPE {name} " in worker
    # The counters move: calls that fail on their only attempt, until one reaches this worker
    # (three workers share the queue).
    await apply_yaml(db, TRIGGERS.format(ws=workspace))
    ours = {"workspace": workspace, "trigger": "counted"}

    async def counted() -> str | None:
        async with httpx.AsyncClient() as client:
            await client.post(f"{stack.base_url}/hooks/{workspace}/counted", json={})
            text = (await client.get(f"http://127.0.0.1:{probed['worker-probed']}/metrics")).text
        return text if _samples(text, "hookline_worker_executions_total", **ours) >= 1 else None

    worker = await eventually(counted, timeout=30, every=0.2)
    runs = _samples(worker, "hookline_worker_executions_total", **ours)
    assert _samples(worker, "hookline_worker_executions_total", **ours, status="dead") == runs
    assert _samples(worker, "hookline_worker_dead_letters_total", **ours) == runs
    assert _samples(worker, "hookline_worker_execution_seconds_count", **ours) == runs
    assert _samples(worker, "hookline_worker_end_to_end_seconds_count", **ours) == runs

    work = f'queue="{stack.env["HOOKLINE_AMQP_PREFIX"]}.work"'

    async def sampled() -> str | None:
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{probed['dispatcher-probed']}/metrics")).text
        return text if 'hookline_queue_consumers{kind="work",' in text and work in text else None

    dispatcher = await eventually(sampled, timeout=20)
    assert "# TYPE hookline_dead_letters gauge" in dispatcher
    assert 'hookline_retention_deleted_total{family="executions"}' in dispatcher  # it swept as it started


async def test_a_worker_reports_itself_while_it_runs_and_removes_its_heartbeat_when_stopped(
    stack: Services, db: Connection
) -> None:
    pid = stack.start("worker-beating").pid
    try:

        async def up() -> bool | None:
            state = await db.fetchval(
                "select ready from service_heartbeats where service = 'worker' and instance like $1",
                f"%:{pid}",
            )
            return True if state else None

        await eventually(up, timeout=20)
    finally:
        assert stack.stop("worker-beating") == 0
    left = await db.fetchval("select count(*) from service_heartbeats where instance like $1", f"%:{pid}")
    assert left == 0


async def test_ingress_metrics_count_calls_and_refusals(
    stack: Services, db: Connection, workspace: str
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace))

    async def accepted() -> str | None:
        async with httpx.AsyncClient(base_url=stack.base_url) as client:
            answer = await client.post(f"/hooks/{workspace}/counted", json={})
        return str(answer.json()["execution_id"]) if answer.status_code == 202 else None

    await eventually(accepted)
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        before = (await client.get("/metrics")).text
        await client.get(f"/hooks/{workspace}/counted")  # 405
        await client.post(f"/hooks/{workspace}/counted", json={})  # 202
        text = (await client.get("/metrics")).text
    ours = {"workspace": workspace, "trigger": "counted"}
    assert _samples(text, "hookline_ingress_calls_total", **ours, outcome="202") == 2
    # The stack is shared: the counters moved by what this test sent, at least.
    moved = _samples(text, "hookline_ingress_rejected_total", reason="method-not-allowed") - _samples(
        before, "hookline_ingress_rejected_total", reason="method-not-allowed"
    )
    assert moved >= 1
    published = _samples(text, "hookline_ingress_publish_seconds_count") - _samples(
        before, "hookline_ingress_publish_seconds_count"
    )
    assert published >= 1
    assert _samples(text, "hookline_ingress_publish_seconds_sum") > 0


def _refusals(text: str) -> dict[str, float]:
    """hookline_ingress_rejected_total by reason, from the ingress's /metrics."""
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "hookline_ingress_rejected":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    counts[sample.labels["reason"]] = sample.value
    return counts


async def test_every_refusal_is_counted_by_its_reason(
    stack: Services, db: Connection, workspace: str
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace))
    key = (await new_key(db, workspace, "guarded")).key
    url = f"/hooks/{workspace}/guarded"
    json_body = {"Content-Type": "application/json", "X-API-Key": key}
    async with httpx.AsyncClient(base_url=stack.base_url) as client:

        async def known() -> bool | None:
            answer = await client.post(url + "?n=1", json={}, headers={"X-API-Key": key})
            return True if answer.status_code == 202 else None

        await eventually(known)

        async def answered(path: str, status: int) -> bool | None:
            return True if (await client.post(path, json={})).status_code == status else None

        await eventually(lambda: answered(f"/hooks/{workspace}/limited", 202))  # the one call a minute
        await eventually(lambda: answered(f"/hooks/{workspace}/asks", 200))
        admin = {"Authorization": f"Bearer {stack.env['HOOKLINE_ADMIN_TOKEN']}"}
        await client.post(f"/api/workspaces/{workspace}/triggers/asks/pause", headers=admin)
        await eventually(lambda: answered(f"/hooks/{workspace}/asks", 503))
        before = _refusals((await client.get("/metrics")).text)
        sent = {
            "unauthorized": await client.post(url + "?n=1", json={}),
            "method-not-allowed": await client.get(url + "?n=1", headers=json_body),
            "invalid-parameter": await client.post(url + "?n=x", content=b"{}", headers=json_body),
            "body-too-large": await client.post(
                url + "?n=1", content=b"[" + b"1," * 64 + b"1]", headers=json_body
            ),
            "unsupported-media-type": await client.post(
                url + "?n=1", content=b"a,b", headers={**json_body, "Content-Type": "text/csv"}
            ),
            "malformed-body": await client.post(url + "?n=1", content=b'{"a": ', headers=json_body),
            "rate-limited": await client.post(f"/hooks/{workspace}/limited", json={}),
            "trigger-paused": await client.post(f"/hooks/{workspace}/asks", json={}),
        }
        after = _refusals((await client.get("/metrics")).text)
    for reason, answer in sent.items():
        assert answer.json()["type"] == f"/problems/{reason}"
        assert after.get(reason, 0) - before.get(reason, 0) == 1, reason


async def test_service_logs_are_json_with_the_run_ids_and_no_body(
    stack: Services, db: Connection, workspace: str
) -> None:
    names = ("ingress", "dispatcher", "worker-1", "worker-2")
    # The session's stack logs for every test: the lines format is checked from here on.
    offsets = {name: len(stack.log(name)) for name in names}
    await apply_yaml(db, TRIGGERS.format(ws=workspace))
    marker = f"body-marker-{uuid.uuid4().hex}"

    async def accepted() -> str | None:
        async with httpx.AsyncClient(base_url=stack.base_url) as client:
            answer = await client.post(f"/hooks/{workspace}/counted", json={"secret": marker})
        return str(answer.json()["execution_id"]) if answer.status_code == 202 else None

    execution_id = await eventually(accepted)
    await finished_execution(db, execution_id)
    # Credentials, right and wrong, go through the ingress too.
    key = (await new_key(db, workspace, "guarded")).key
    wrong_key = f"hk_wrong-{uuid.uuid4().hex}"
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        for sent in (key, wrong_key):
            await client.post(f"/hooks/{workspace}/guarded?n=1", json={}, headers={"X-API-Key": sent})
        await client.get("/api/workspaces", headers={"Authorization": "Bearer hlt_wrong-token-123456"})
    secrets = [
        key,
        wrong_key,
        "hlt_wrong-token-123456",
        stack.env["HOOKLINE_ADMIN_TOKEN"],
        *TEST_SECRETS.values(),
    ]
    lines = []
    for name in names:
        text = stack.log(name)
        assert marker not in text
        assert [x for x in secrets if x in text] == [], name
        # Every line of this test's traffic, uvicorn's own included: one JSON object each.
        for line in text[offsets[name] :].splitlines():
            entry = json.loads(line)
            assert isinstance(entry, dict), (name, line)
            lines.append(entry)
    of_run = [x for x in lines if x.get("execution_id") == execution_id]
    assert of_run, "the run logged nothing"
    assert all((x["workspace"], x["trigger"]) == (workspace, "counted") for x in of_run)


def test_every_line_logged_during_a_run_carries_its_ids() -> None:
    formatter = JsonFormatter("worker")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    handler.addFilter(RunContextFilter())
    logger = logging.getLogger("hookline.test.steps")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with run_context(workspace="w", trigger="t", execution_id="e-1", body="never"):
            logger.info("step ran")
            logger.info("own ids win", extra={"execution_id": "e-2"})
        logger.info("after the run")
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(formatter.format(r)) for r in records]
    assert [(x["msg"], x.get("workspace"), x.get("trigger"), x.get("execution_id")) for x in lines] == [
        ("step ran", "w", "t", "e-1"),
        ("own ids win", "w", "t", "e-2"),
        ("after the run", None, None, None),
    ]
    assert all("body" not in x for x in lines)
