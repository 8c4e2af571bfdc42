"""Every delivery is settled, whatever fails: poison bodies (nested hundreds deep, a NUL at
the bottom) through the ingress and published straight to the invocations exchange, a
record the database refuses, a record that hangs. Each call is refused at the ingress or
recorded, the broker holds no unacknowledged message, a healthy trigger keeps answering,
and a restart brings no stall back. A private broker, so `rabbitmqctl` can count unacked.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import httpx
import pytest

from shared.db.pool import Connection, connect
from shared.devstack.localservers import LocalRabbitMQ
from shared.wire import topology
from shared.wire.messages import Invocation, RequestData, invocation_encoder
from tests.helpers import apply_yaml, eventually, filed_as_dead_letters
from tests.integration.calls import delivery_stack, finished
from tests.stack import Services

TRIGGERS = """
workspace: {ws}
triggers:
  - name: inbox
    auth: {{type: none}}
    workflow:
      - id: received
        map:
          body: "{{{{ request.body }}}}"
  - name: ask
    auth: {{type: none}}
    mode: request_response
    timeout: 10s
    workflow:
      - respond:
          status: 200
          body: {{echo: "{{{{ request.body }}}}"}}
  - name: echo
    auth: {{type: none}}
    mode: request_response
    timeout: 10s
    workflow:
      - respond:
          status: 200
          body: {{n: "{{{{ request.body.n }}}}"}}
  - name: slow-record
    auth: {{type: none}}
    workflow_timeout: 1s
    workflow:
      - id: received
        map:
          n: "{{{{ request.body.n }}}}"
"""

FINAL = ("succeeded", "failed", "dead")


async def final_runs(
    db: Connection, ids: list[str], timeout: float = 60
) -> dict[str, tuple[str, str | None]]:
    """Until each of `ids` has a final record: id -> (status, error). The request is not read
    back: decoding a body nested ~990 deep would exhaust this process's recursion limit."""

    async def probe() -> dict[str, tuple[str, str | None]] | None:
        rows = await db.fetch(
            "select id::text, status, error from executions where id = any($1::uuid[])"
            " and status = any($2::text[])",
            ids,
            list(FINAL),
        )
        done = {r["id"]: (r["status"], r["error"]) for r in rows}
        assert len(done) == len(ids), f"{len(ids) - len(done)} of {len(ids)} not recorded final"
        return done

    return await eventually(probe, timeout=timeout, every=0.5)


def deep(depth: int) -> Any:
    """A value nested `depth` lists deep with a NUL at the bottom."""
    value: Any = "\x00"
    for _ in range(depth):
        value = [value]
    return value


def deep_json(depth: int) -> bytes:
    return b"[" * depth + b'"\\u0000"' + b"]" * depth


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="hookline-delivery-poison-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def broker(folder: Path) -> Iterator[LocalRabbitMQ]:
    server = LocalRabbitMQ(folder / "rabbitmq")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def poison_stack(broker: LocalRabbitMQ, database_url: str, log_dir: Path) -> Iterator[Services]:
    # The ingress caps JSON nesting at 128 by default; raised here so the deep bodies reach the
    # workers (what this file proves). The cap itself: tests/integration/test_ingress_bounds.py.
    env = {"HOOKLINE_WATCHDOG_MARGIN": "2", "HOOKLINE_METRICS_PORT": "0", "HOOKLINE_MAX_JSON_DEPTH": "2000"}
    with delivery_stack(broker.url, database_url, log_dir, workers=2, env=env) as stack:
        yield stack


@pytest.fixture
async def ws(poison_stack: Services, db: Connection, workspace: str) -> str:
    await apply_yaml(db, TRIGGERS.format(ws=workspace))
    await _until_echo_answers(poison_stack, workspace)
    return workspace


def _prefix(stack: Services) -> str:
    return stack.env["HOOKLINE_AMQP_PREFIX"]


async def queues(broker: LocalRabbitMQ, prefix: str) -> dict[str, tuple[int, int]]:
    """Queue name -> (ready, unacknowledged) of the stack's queues, as the broker counts."""
    listed = await asyncio.to_thread(
        broker.ctl,
        "list_queues",
        "--quiet",
        "--no-table-headers",
        "name",
        "messages_ready",
        "messages_unacknowledged",
    )
    counts = {}
    for line in listed.splitlines():
        name, ready, unacked = line.split("\t")
        if name.startswith(prefix):
            counts[name] = (int(ready), int(unacked))
    return counts


async def settled_everywhere(broker: LocalRabbitMQ, stack: Services, timeout: float = 30) -> None:
    """Until no queue of the stack holds an unacknowledged message and no work queue (the
    shared one, a trigger's own) holds a ready one."""
    work = topology.work_queue_name(_prefix(stack))

    async def probe() -> bool | None:
        counts = await queues(broker, _prefix(stack))
        unacked = {name: c[1] for name, c in counts.items() if c[1]}
        assert not unacked, f"unacknowledged: {unacked}"
        ready = {
            name: c[0] for name, c in counts.items() if (name == work or name.startswith(f"{work}.")) and c[0]
        }
        assert not ready, f"ready in work queues: {ready}"
        return True

    await eventually(probe, timeout=timeout, every=0.5)


async def _echo(client: httpx.AsyncClient, stack: Services, ws: str, n: int) -> httpx.Response:
    return await client.post(f"{stack.base_url}/hooks/{ws}/echo", json={"n": n})


async def _until_echo_answers(stack: Services, ws: str) -> None:
    async def probe() -> bool | None:
        async with httpx.AsyncClient(timeout=10) as client:
            return (await _echo(client, stack, ws, 0)).status_code == 200 or None

    await eventually(probe, timeout=20, every=0.2)


async def echo_keeps_answering(stack: Services, ws: str, stop: asyncio.Event) -> list[int]:
    """Request-response calls to the healthy trigger, one after the other, until `stop`."""
    statuses = []
    async with httpx.AsyncClient(timeout=15) as client:
        n = 0
        while not stop.is_set() or n < 5:
            answer = await _echo(client, stack, ws, n)
            statuses.append(answer.status_code)
            assert answer.status_code != 200 or answer.json() == {"n": n}
            n += 1
    return statuses


async def poison_calls(stack: Services, ws: str, bodies: list[bytes]) -> tuple[list[str], list[int]]:
    """Send each body as an async call: the ids of the accepted ones, the statuses of the others."""
    accepted, refused = [], []
    async with httpx.AsyncClient(timeout=30) as client:
        gate = asyncio.Semaphore(16)

        async def one(body: bytes) -> None:
            async with gate:
                answer = await client.post(
                    f"{stack.base_url}/hooks/{ws}/inbox",
                    content=body,
                    headers={"content-type": "application/json"},
                )
            if answer.status_code == 202:
                accepted.append(str(answer.json()["execution_id"]))
            else:
                # Refused at the ingress (a nesting cap): a problem document, never a 500.
                assert answer.status_code == 400, answer.text
                assert answer.headers["content-type"] == "application/problem+json"
                refused.append(answer.status_code)

        await asyncio.gather(*(one(b) for b in bodies))
    return accepted, refused


async def with_echo(stack: Services, ws: str, work: Any) -> Any:
    """Run `work` while the healthy trigger is called; assert that it answered 200 throughout."""
    stop = asyncio.Event()
    calls = asyncio.create_task(echo_keeps_answering(stack, ws, stop))
    try:
        result = await work
    finally:
        stop.set()
    statuses = await calls
    assert set(statuses) == {200}, statuses
    return result


async def assert_healthy_afterwards(broker: LocalRabbitMQ, stack: Services, db: Connection, ws: str) -> None:
    await settled_everywhere(broker, stack)
    async with httpx.AsyncClient(timeout=15) as client:
        answers = await asyncio.gather(*(_echo(client, stack, ws, n) for n in range(20)))
    assert [a.status_code for a in answers] == [200] * 20
    assert [a.json() for a in answers] == [{"n": n} for n in range(20)]


async def test_seventy_poison_calls_nested_600_deep_are_recorded_and_settled_while_echo_answers(
    broker: LocalRabbitMQ, poison_stack: Services, db: Connection, ws: str
) -> None:
    accepted, refused = await with_echo(
        poison_stack, ws, poison_calls(poison_stack, ws, [deep_json(600)] * 70)
    )
    assert len(accepted) + len(refused) == 70
    outcomes = await final_runs(db, accepted)
    # Recorded as it ran: the NUL stored as U+FFFD, no Python recursion over the body.
    assert set(outcomes.values()) == {("succeeded", None)}
    await assert_healthy_afterwards(broker, poison_stack, db, ws)


async def test_a_sweep_of_depths_500_to_990_with_a_nul_at_the_bottom_is_refused_or_recorded(
    broker: LocalRabbitMQ, poison_stack: Services, db: Connection, ws: str
) -> None:
    depths = range(500, 991, 10)
    accepted, refused = await with_echo(
        poison_stack, ws, poison_calls(poison_stack, ws, [deep_json(d) for d in depths])
    )
    assert len(accepted) + len(refused) == len(depths)
    outcomes = await final_runs(db, accepted)
    # Recorded as it ran: the NUL stored as U+FFFD, no Python recursion over the body.
    assert set(outcomes.values()) == {("succeeded", None)}
    await assert_healthy_afterwards(broker, poison_stack, db, ws)


async def publish_straight(broker: LocalRabbitMQ, stack: Services, ws: str, depths: list[int]) -> list[str]:
    """Invocations as the ingress builds them, published to the invocations exchange with its
    AMQP properties: past any cap the ingress has. Their ids."""
    ids = []
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.get_exchange(topology.invocations_exchange(_prefix(stack)), ensure=False)
        for depth in depths:
            invocation = Invocation(
                id=str(uuid.uuid4()),
                workspace=ws,
                trigger="inbox",
                version=1,
                mode="async",
                received_at=time.time(),
                request=RequestData(
                    method="POST",
                    path=f"/hooks/{ws}/inbox",
                    content_type="application/json",
                    body_kind="json",
                    body=deep(depth),
                ),
            )
            # A thread's fresh stack: msgpack encodes as deep as Python's recursion limit allows.
            body = await asyncio.to_thread(invocation_encoder.encode, invocation)
            message = aio_pika.Message(
                body,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=invocation.id,
                content_type="application/msgpack",
                type="hookline.invocation",
            )
            await exchange.publish(message, routing_key=topology.routing_key(ws, "inbox"), timeout=5)
            ids.append(invocation.id)
    return ids


async def test_poison_invocations_published_straight_to_the_exchange_are_recorded_and_settled(
    broker: LocalRabbitMQ, poison_stack: Services, db: Connection, ws: str
) -> None:
    depths = [600] * 20 + list(range(500, 991, 10))
    ids = await with_echo(poison_stack, ws, publish_straight(broker, poison_stack, ws, depths))
    outcomes = await final_runs(db, ids)
    # Past what msgpack decodes in the worker: dead-lettered, with a record saying so.
    undecodable = ("dead", "the message could not be decoded; dead-lettered")
    # A body nested past what a step's Python code can walk fails its run (recorded dead, its
    # delivery settled); it never stalls a worker.
    assert set(outcomes.values()) <= {
        ("succeeded", None),
        undecodable,
        ("dead", "internal error: RecursionError"),
    }
    assert outcomes[ids[0]] == ("succeeded", None)  # 600 deep
    await assert_healthy_afterwards(broker, poison_stack, db, ws)


@pytest.fixture
async def refusing_records(database_url: str, ws: str) -> AsyncIterator[str]:
    """PostgreSQL refuses every full execution record of the workspace's `inbox` and `ask`
    (a minimal one, with no request, passes): a record-time failure, injected in the
    database itself."""
    name = f"refuse_{uuid.uuid4().hex[:8]}"
    async with connect(database_url) as connection:
        await connection.execute(
            f"""create function {name}() returns trigger language plpgsql as $$
            begin
                if new.workspace = '{ws}' and new.trigger in ('inbox', 'ask')
                        and new.request::text <> 'null' then
                    raise exception 'injected: this record is refused';
                end if;
                return new;
            end $$;
            create trigger {name} before insert or update on executions
                for each row execute function {name}();"""
        )
    try:
        yield ws
    finally:
        async with connect(database_url) as connection:
            await connection.execute(f"drop trigger {name} on executions; drop function {name}();")


async def test_a_record_the_database_refuses_becomes_a_minimal_dead_record_and_a_dead_letter(
    broker: LocalRabbitMQ, poison_stack: Services, db: Connection, refusing_records: str
) -> None:
    ws = refusing_records
    dead_letters = topology.dead_letter_queue_name(_prefix(poison_stack))
    await settled_everywhere(broker, poison_stack)

    async def steady() -> int | None:
        # Dead-lettering at least once goes through the queue's own log: let it land.
        first = (await queues(broker, _prefix(poison_stack)))[dead_letters][0]
        await asyncio.sleep(1)
        return first if (await queues(broker, _prefix(poison_stack)))[dead_letters][0] == first else None

    await eventually(steady, timeout=20)
    async with httpx.AsyncClient(timeout=15) as client:
        accepted = [
            (await client.post(f"{poison_stack.base_url}/hooks/{ws}/inbox", json={"n": n})).json()[
                "execution_id"
            ]
            for n in range(5)
        ]
        started = time.monotonic()
        asked = await client.post(f"{poison_stack.base_url}/hooks/{ws}/ask", json={"n": 1})
    # The waiting caller is answered at once with the failure, not after its 10 s timeout.
    assert time.monotonic() - started < 5
    assert asked.status_code == 500
    problem = asked.json()
    execution_id = problem["execution_id"]
    assert problem == {
        "type": "/problems/workflow-failed",
        "title": "The workflow failed",
        "status": 500,
        "detail": "the execution could not be recorded (RaiseError)",
        "execution_id": execution_id,
    }
    done = await finished(db, ws, [*accepted, execution_id], timeout=30)
    error = (
        "the execution could not be recorded (RaiseError); this minimal record stands in for it"
        " and the message was dead-lettered"
    )
    refused = [r for r in done if r.id in {*accepted, execution_id}]
    assert len(refused) == 6
    assert {(r.status, r.error, r.body) for r in refused} == {("dead", error, None)}

    # Dead-lettered: the dispatcher files each letter of the dead-letter queue in its table.
    await filed_as_dead_letters(db, *(r.id for r in refused), timeout=20)
    await assert_healthy_afterwards(broker, poison_stack, db, ws)


async def test_a_restart_of_the_workers_brings_no_stall_back(
    broker: LocalRabbitMQ, poison_stack: Services, db: Connection, ws: str
) -> None:
    accepted, _ = await poison_calls(poison_stack, ws, [deep_json(600)] * 40)
    ids = await publish_straight(broker, poison_stack, ws, [600] * 20)
    await final_runs(db, [*accepted, *ids])
    for name in ("worker-1", "worker-2"):
        poison_stack.stop(name)
        poison_stack.start(name, "--concurrency", "16")
    await _until_echo_answers(poison_stack, ws)
    await assert_healthy_afterwards(broker, poison_stack, db, ws)
    # Nothing came back to run again: every execution ran once.
    attempts = await db.fetch("select attempts from executions where workspace = $1", ws)
    assert {r["attempts"] for r in attempts} == {1}


async def _worker_readiness(db: Connection) -> list[tuple[bool, int | None]]:
    rows = await db.fetch(
        "select ready, metrics_port from service_heartbeats where service = 'worker'"
        " and seen_at > now() - interval '6 seconds'"
    )
    return [(r["ready"], r["metrics_port"]) for r in rows]


async def test_a_delivery_whose_record_hangs_is_settled_by_the_watchdog_and_the_worker_says_not_ready(
    broker: LocalRabbitMQ, poison_stack: Services, db: Connection, database_url: str, ws: str
) -> None:
    execution_id = str(uuid.uuid4())
    # An uncommitted row with the same id: the worker's record of the run waits on its lock.
    blocker = await asyncpg.connect(database_url)
    transaction = blocker.transaction()
    await transaction.start()
    await blocker.execute(
        "insert into executions (id, workspace, trigger, trigger_version, status, attempts,"
        " received_at, started_at, request) values ($1, $2, 'slow-record', 1, 'running', 1, now(),"
        " now(), 'null')",
        uuid.UUID(execution_id),
        ws,
    )
    try:
        connection = await aio_pika.connect(broker.url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            exchange = await channel.get_exchange(
                topology.invocations_exchange(_prefix(poison_stack)), ensure=False
            )
            invocation = Invocation(
                id=execution_id,
                workspace=ws,
                trigger="slow-record",
                version=1,
                mode="async",
                received_at=time.time(),
                request=RequestData(method="POST", path="/", body_kind="json", body={"n": 1}),
            )
            message = aio_pika.Message(
                invocation_encoder.encode(invocation),
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=execution_id,
                content_type="application/msgpack",
                type="hookline.invocation",
            )
            await exchange.publish(message, routing_key=topology.routing_key(ws, "slow-record"), timeout=5)

        # workflow_timeout 1 s + margin 2 s: the watchdog settles it, and the worker says so.
        async def not_ready() -> httpx.Response | None:
            for ready, port in await _worker_readiness(db):
                if not ready and port is not None:
                    async with httpx.AsyncClient(timeout=5) as client:
                        readyz = await client.get(f"http://127.0.0.1:{port}/readyz")
                    if readyz.status_code == 503:
                        return readyz
            return None

        readyz = await eventually(not_ready, timeout=20, every=0.5)
        assert readyz.json() == {
            "ready": False,
            "checks": {"broker": True, "database": True, "deliveries": False},
        }
    finally:
        await transaction.rollback()
        await blocker.close()
    # The lock gone, the requeued delivery runs and is recorded; nothing stays unacknowledged.
    await final_runs(db, [execution_id], timeout=30)
    await assert_healthy_afterwards(broker, poison_stack, db, ws)


async def test_a_sample_the_database_refuses_is_dropped_alone_and_the_others_are_written(
    poison_stack: Services, db: Connection, database_url: str, workspace: str
) -> None:
    good, bad = f"{workspace}-good", f"{workspace}-bad"
    for ws in (good, bad):
        await apply_yaml(db, TRIGGERS.format(ws=ws))
        await _until_echo_answers(poison_stack, ws)
    name = f"refuse_{uuid.uuid4().hex[:8]}"
    await db.execute(
        f"""create function {name}() returns trigger language plpgsql as $$
        begin
            if new.workspace = '{bad}' then raise exception 'injected: this sample is refused'; end if;
            return new;
        end $$;
        create trigger {name} before insert or update on trigger_samples
            for each row execute function {name}();"""
    )
    try:
        async with httpx.AsyncClient(timeout=15) as client:
            # In the same second, so in the same batch of the sample writer.
            answers = await asyncio.gather(
                *(
                    client.post(f"{poison_stack.base_url}/hooks/{ws}/inbox", json={"ws": ws})
                    for ws in (bad, good)
                )
            )
        good_id = answers[1].json()["execution_id"]

        async def sampled() -> bool | None:
            row = await db.fetchrow(
                "select execution_id::text from trigger_samples where workspace = $1 and trigger = 'inbox'",
                good,
            )
            return (row is not None and row["execution_id"] == good_id) or None

        await eventually(sampled, timeout=10, every=0.2)
        await asyncio.sleep(3)  # the writer runs each second: a refused sample is not tried again
        log = poison_stack.log("ingress")
        assert log.count(f"sample of {bad}/inbox dropped (RaiseError)") == 1
    finally:
        await db.execute(f"drop trigger {name} on trigger_samples; drop function {name}();")
