"""With the broker stopped the ingress answers 503 at once, and recovers by itself."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.db.pool import Connection
from shared.devstack.localservers import LocalRabbitMQ
from tests.helpers import apply_yaml, eventually, finished_execution, new_key
from tests.stack import Services, services

TRIGGERS = """
workspace: {ws}
triggers:
  - name: inbox
    auth: {{type: api_key}}
    workflow: [{{id: got, map: "{{{{ request.body }}}}"}}]
  - name: echo
    auth: {{type: api_key}}
    mode: request_response
    workflow: [{{respond: {{status: 200, body: "{{{{ request.body }}}}"}}}}]
"""


@pytest.fixture(scope="module")
def broker() -> Iterator[LocalRabbitMQ]:
    """A private broker this module may stop (never the session's, never the machine's)."""
    folder = Path(tempfile.mkdtemp(prefix="hookline-outage-"))
    folder.chmod(0o755)
    server = LocalRabbitMQ(folder / "rabbitmq")
    server.start()
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def outage_stack(broker: LocalRabbitMQ, database_url: str, log_dir: Path) -> Iterator[Services]:
    prefix = f"outage-{uuid.uuid4().hex[:6]}"
    (log_dir / prefix).mkdir()
    # A short publish deadline: a call that meets a frozen broker is refused within a second.
    env = {"HOOKLINE_PUBLISH_TIMEOUT": "1"}
    with services(
        broker.url, database_url, log_dir / prefix, workers=1, prefix=prefix, extra_env=env
    ) as running:
        yield running


@pytest.mark.fault
async def test_broker_down_means_503_with_retry_after_then_recovery_without_restart(
    broker: LocalRabbitMQ, outage_stack: Services, db: Connection, workspace: str
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace))
    key = (await new_key(db, workspace, "inbox", "echo")).key
    inbox = f"{outage_stack.base_url}/hooks/{workspace}/inbox"
    echo = f"{outage_stack.base_url}/hooks/{workspace}/echo"
    headers = {"X-API-Key": key}

    async def accepted() -> str | None:
        async with httpx.AsyncClient() as client:
            answer = await client.post(inbox, json={"n": 1}, headers=headers)
        return answer.json()["execution_id"] if answer.status_code == 202 else None

    await finished_execution(db, await eventually(accepted))

    broker.stop()
    async with httpx.AsyncClient(timeout=10) as client:
        started = time.monotonic()
        down = [await client.post(url, json={"n": 2}, headers=headers) for url in (inbox, echo)]
        elapsed = time.monotonic() - started
    for answer in down:
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == "5"
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["type"] == "/problems/broker-unavailable"
    assert elapsed < 2, "a broker outage must be answered at once, not after a hang"

    broker.start()
    execution_id = await eventually(accepted, timeout=60, every=0.2)
    assert (await finished_execution(db, execution_id, timeout=30)).status == "succeeded"
    async with httpx.AsyncClient() as client:
        answer = await client.post(echo, json={"back": True}, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"back": True}


@pytest.mark.fault
async def test_a_broker_that_blocks_publishers_gets_503_at_once_not_a_hang(
    broker: LocalRabbitMQ, outage_stack: Services, db: Connection, workspace: str
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace))
    key = (await new_key(db, workspace, "inbox", "echo")).key
    inbox = f"{outage_stack.base_url}/hooks/{workspace}/inbox"

    async def status() -> int:
        async with httpx.AsyncClient(timeout=30) as client:
            return (await client.post(inbox, json={}, headers={"X-API-Key": key})).status_code

    await eventually(lambda: _true_if(status(), 202), timeout=30)
    broker.ctl("set_vm_memory_high_watermark", "0.00001")  # a memory alarm: publishers blocked
    try:
        # The first publish meets the alarm (refused at the publish deadline); after that the
        # connection is known to be blocked and every call is refused at once.
        first = await status()
        assert first == 503
        started = time.monotonic()
        assert [await status() for _ in range(5)] == [503] * 5
        assert time.monotonic() - started < 1.0
    finally:
        broker.ctl("set_vm_memory_high_watermark", "0.4")
    await eventually(lambda: _true_if(status(), 202), timeout=30)


async def _true_if(value: object, expected: int) -> bool | None:
    return True if await value == expected else None  # type: ignore[misc]
