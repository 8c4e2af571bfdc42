"""A keyed call whose publish went unconfirmed runs once, however the sender retries: on a
private broker hung by SIGSTOP while the call is published (the publish times out: 503 with
an unknown outcome), the retry with the same Idempotency-Key is answered 202 under the same
execution id, whether the first copy was enqueued after all or never reached the queue."""

from __future__ import annotations

import shutil
import signal
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ingress.idempotency import fingerprint
from shared.db.pool import Connection
from shared.devstack.localservers import LocalRabbitMQ
from tests.helpers import apply_yaml, eventually, finished_execution
from tests.integration.target import Target
from tests.stack import Services, services

PUBLISH_TIMEOUT = 1.0

TRIGGERS = """
workspace: {ws}
triggers:
  - name: pay
    auth: {{type: none}}
    idempotency: {{header: Idempotency-Key, window: 1h}}
    workflow:
      - id: call
        http: {{method: POST, url: "{target}/paid/{ws}", json: "{{{{ request.body }}}}"}}
"""


@pytest.fixture(scope="module")
def broker() -> Iterator[LocalRabbitMQ]:
    """A private broker this module hangs and kills (never the session's, never the machine's)."""
    folder = Path(tempfile.mkdtemp(prefix="hookline-unknown-"))
    folder.chmod(0o755)
    server = LocalRabbitMQ(folder / "rabbitmq")
    server.start()
    yield server
    if server.pid is not None:
        server.kill(signal.SIGCONT)  # a test that failed while it was hung
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def unknown_stack(broker: LocalRabbitMQ, database_url: str, log_dir: Path) -> Iterator[Services]:
    prefix = f"unknown-{uuid.uuid4().hex[:6]}"
    (log_dir / prefix).mkdir()
    # A short publish deadline, a heartbeat the hang does not reach.
    env = {"HOOKLINE_PUBLISH_TIMEOUT": str(PUBLISH_TIMEOUT), "HOOKLINE_HEARTBEAT": "60"}
    with services(
        broker.url, database_url, log_dir / prefix, workers=1, prefix=prefix, extra_env=env
    ) as running:
        yield running


async def _ready(client: httpx.AsyncClient, url: str) -> None:
    async def accepted() -> bool | None:
        answer = await client.post(url, json={"warm": True})
        return True if answer.status_code == 202 else None

    await eventually(accepted, timeout=60)


async def _unconfirmed_under_a_hung_broker(
    broker: LocalRabbitMQ, client: httpx.AsyncClient, url: str, headers: dict[str, str], body: object
) -> str:
    broker.kill(signal.SIGSTOP)
    try:
        answer = await client.post(url, json=body, headers=headers)
    except BaseException:
        broker.kill(signal.SIGCONT)
        raise
    assert answer.status_code == 503, answer.text
    problem = answer.json()
    execution_id = problem["execution_id"]
    assert problem["status_url"].endswith(f"/executions/{execution_id}")
    assert problem["detail"] == (
        "the broker did not confirm in time; the call may have been accepted all the same (see its"
        " status URL); a retry with the same idempotency key runs it at most once"
    )
    return str(execution_id)


async def _records(db: Connection, workspace: str) -> list[tuple[str, str, int]]:
    rows = await db.fetch(
        "select id::text, status, attempts from executions where workspace = $1 and trigger = 'pay'"
        " and request::text not like '%warm%'",
        workspace,
    )
    return [(r["id"], r["status"], r["attempts"]) for r in rows]


@pytest.mark.fault
async def test_a_retry_of_a_call_enqueued_after_all_is_202_under_its_id_and_runs_once(
    broker: LocalRabbitMQ, unknown_stack: Services, db: Connection, workspace: str, target: Target
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace, target=target.base_url))
    url = f"{unknown_stack.base_url}/hooks/{workspace}/pay"
    headers = {"Idempotency-Key": f"order-{uuid.uuid4().hex}"}
    async with httpx.AsyncClient(timeout=10) as client:
        await _ready(client, url)
        first = await _unconfirmed_under_a_hung_broker(broker, client, url, headers, {"order": 1})
        broker.kill(signal.SIGCONT)
        # The first copy was in the socket: the broker takes it and the worker runs it.
        await finished_execution(db, first, timeout=30)
        retry = await client.post(url, json={"order": 1}, headers=headers)
        assert retry.status_code == 202, retry.text
        assert retry.json() == {
            "execution_id": first,
            "status_url": f"/hooks/{workspace}/pay/executions/{first}",
        }
    settled = "a copy of this keyed call has run already: settled without a second run"
    await eventually(lambda: _true(settled in unknown_stack.log("worker-1")), timeout=30)
    assert await _records(db, workspace) == [(first, "succeeded", 1)]
    assert _orders(target, workspace) == ['{"order":1}']


async def test_a_retry_of_a_call_that_never_reached_the_queue_runs_it_once_under_its_id(
    unknown_stack: Services, db: Connection, workspace: str, target: Target
) -> None:
    # The state an unconfirmed publish whose frames never reached the broker leaves behind
    # (its connection dropped before they were read): the claim kept as unconfirmed under
    # the execution id the 503 named, and nothing queued under that id. A broker killed
    # while hung (SIGSTOP, then SIGKILL) would make it for real, but its restart is not
    # deterministic enough here (see the report); the claim row is what the ingress writes.
    await apply_yaml(db, TRIGGERS.format(ws=workspace, target=target.base_url))
    url = f"{unknown_stack.base_url}/hooks/{workspace}/pay"
    body = b'{"order":2}'
    key, first = f"order-{uuid.uuid4().hex}", str(uuid.uuid4())
    await db.execute(
        "insert into idempotency_keys (workspace, trigger, key, execution_id, expires_at, accepted,"
        " unconfirmed, fingerprint) values ($1, 'pay', $2, $3, now() + interval '1 hour', false, true, $4)",
        workspace,
        key,
        uuid.UUID(first),
        fingerprint("POST", b"", body),
    )
    headers = {"Idempotency-Key": key, "Content-Type": "application/json"}
    async with httpx.AsyncClient(timeout=10) as client:
        await _ready(client, url)
        retry = await client.post(url, content=body, headers=headers)
        assert retry.status_code == 202, retry.text
        assert retry.json() == {
            "execution_id": first,
            "status_url": f"/hooks/{workspace}/pay/executions/{first}",
        }
        done = await finished_execution(db, first, timeout=30)
        assert (done.status, done.attempts) == ("succeeded", 1)
        # Its claim is accepted now: one more retry is a repeat, and runs nothing.
        again = await client.post(url, content=body, headers=headers)
        assert (again.status_code, again.json()["execution_id"]) == (202, first)
    assert await _records(db, workspace) == [(first, "succeeded", 1)]
    assert _orders(target, workspace) == ['{"order":2}']


def _orders(target: Target, workspace: str) -> list[str]:
    """The calls the workflow made to the target (the warm-up calls left out)."""
    return [p.body for p in target.posts_to(f"/paid/{workspace}") if "warm" not in p.body]


async def _true(value: bool) -> bool | None:
    return True if value else None


RR_TRIGGER = """
workspace: {ws}
triggers:
  - name: ask
    auth: {{type: none}}
    mode: request_response
    timeout: 10s
    workflow:
      - id: call
        http: {{method: POST, url: "{target}/asked/{ws}", json: "{{{{ request.body }}}}"}}
      - respond: {{status: 200, body: {{asked: "{{{{ request.body.q }}}}"}}}}
"""


async def test_a_request_response_retry_of_an_unconfirmed_call_waits_for_its_answer(
    unknown_stack: Services, db: Connection, workspace: str, target: Target
) -> None:
    # As above, for a caller that waits: the retry is answered with the execution's answer.
    await apply_yaml(db, RR_TRIGGER.format(ws=workspace, target=target.base_url))
    url = f"{unknown_stack.base_url}/hooks/{workspace}/ask"
    body = b'{"q":"stock"}'
    key, first = f"ask-{uuid.uuid4().hex}", str(uuid.uuid4())
    await db.execute(
        "insert into idempotency_keys (workspace, trigger, key, execution_id, expires_at, accepted,"
        " unconfirmed, fingerprint) values ($1, 'ask', $2, $3, now() + interval '1 hour', false, true, $4)",
        workspace,
        key,
        uuid.UUID(first),
        fingerprint("POST", b"", body),
    )
    headers = {"Idempotency-Key": key, "Content-Type": "application/json"}
    async with httpx.AsyncClient(timeout=20) as client:

        async def answered() -> httpx.Response | None:
            # 404 until the ingress's registry has the trigger just applied.
            answer = await client.post(url, content=body, headers=headers)
            return answer if answer.status_code not in (404, 503) else None

        retry = await eventually(answered, timeout=30, every=0.2)
    answer = (retry.status_code, retry.json(), retry.headers.get("X-Execution-Id"))
    assert answer == (200, {"asked": "stock"}, first)
    assert [p.body for p in target.posts_to(f"/asked/{workspace}")] == ['{"q":"stock"}']
