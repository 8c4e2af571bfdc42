"""The `sql` step on a real PostgreSQL (the session's steps database), through a worker's Connections."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from shared.db.pool import Connection, connect, create_pool
from tests.helpers import apply_yaml
from tests.workflow_runs import invocation, workflow_of
from worker.engine import Workflow
from worker.resources import Connections

ERP = "erp: {type: postgres, dsn: '${env:TEST_ERP_DSN}', pool_size: 2}"


@pytest.fixture
async def erp(steps_database_url: str) -> AsyncIterator[Connection]:
    """A connection to the steps' database, as its owner."""
    async with connect(steps_database_url) as connection:
        yield connection


@pytest.fixture
async def stock(erp: Connection) -> AsyncIterator[str]:
    """A table of this test, with three rows."""
    table = f"stock_{uuid.uuid4().hex[:8]}"
    await erp.execute(
        f"create table {table} (item text, warehouse text, on_hand int, price numeric(10, 2),"
        " counted_at timestamptz, batch uuid, meta jsonb, primary key (item, warehouse))"
    )
    await erp.execute(
        f"insert into {table} values"
        " ('A-100', 'Gothenburg', 120, 9.50, '2025-01-31T12:00:00Z', '7f9c24e8-3b1a-4d5e-9f00-0c1d2e3f4a5b',"
        " '{\"bin\": [1, 2]}'),"
        " ('A-100', 'Malmo', 35, 10, null, null, null),"
        " ('B-200', 'Gothenburg', 0, 0.25, null, null, null)"
    )
    yield table
    await erp.execute(f"drop table {table}")


@pytest.fixture
async def connections(
    database_url: str, steps_database_url: str, db: Connection, workspace: str
) -> AsyncIterator[Connections]:
    """The worker's Connections with `erp` applied to this test's workspace."""
    await apply_yaml(db, f"workspace: {workspace}\nconnections:\n  {ERP}\n")
    pool = await create_pool(database_url, max_size=2)
    resources = Connections(pool, environ={"TEST_ERP_DSN": steps_database_url})
    yield resources
    await resources.close()
    await pool.close()


def query(sql: str, params: str = "[]", extra: str = "") -> str:
    return f"- id: q\n  sql: {{connection: erp, query: {sql!r}, params: {params}{extra}}}"


async def run(workflow: Workflow, workspace: str, body: Any = None) -> Any:
    return await workflow.run(invocation(body, workspace=workspace), 1)


async def test_rows_come_back_as_objects_with_json_values(
    connections: Connections, stock: str, workspace: str
) -> None:
    workflow = workflow_of(
        query(f"select * from {stock} where item = $1 order by warehouse", '["{{ request.body.item }}"]'),
        connections,
        connections=ERP,
    )
    outcome = await run(workflow, workspace, {"item": "A-100"})
    assert outcome.ok, outcome.error
    assert outcome.output == [
        {
            "item": "A-100",
            "warehouse": "Gothenburg",
            "on_hand": 120,
            "price": 9.5,
            "counted_at": "2025-01-31T12:00:00+00:00",
            "batch": "7f9c24e8-3b1a-4d5e-9f00-0c1d2e3f4a5b",
            "meta": {"bin": [1, 2]},
        },
        {
            "item": "A-100",
            "warehouse": "Malmo",
            "on_hand": 35,
            "price": 10,
            "counted_at": None,
            "batch": None,
            "meta": None,
        },
    ]


async def test_a_json_column_is_text_for_from_json_and_a_jsonb_column_a_value(
    connections: Connections, workspace: str
) -> None:
    """A step's connection is not hookline's own database: json stays text, as documented."""
    workflow = workflow_of(
        query("select json_build_object('a', 1) as j, jsonb_build_object('a', 1) as b")
        + '\n- id: parsed\n  map: "{{ from_json(steps.q.output[0].j) }}"',
        connections,
        connections=ERP,
    )
    outcome = await run(workflow, workspace)
    assert outcome.ok, outcome.error
    assert outcome.steps[0]["output"] == [{"j": '{"a" : 1}', "b": {"a": 1}}]
    assert outcome.output == {"a": 1}


async def test_a_value_from_the_request_is_bound_never_spliced(
    connections: Connections, stock: str, workspace: str, erp: Connection
) -> None:
    workflow = workflow_of(
        query(f"select item from {stock} where item = $1", '["{{ request.body.item }}"]'),
        connections,
        connections=ERP,
    )
    for attack in ("A-100' or '1'='1", f"x'; drop table {stock}; --"):
        outcome = await run(workflow, workspace, {"item": attack})
        assert (outcome.ok, outcome.output) == (True, [])
    assert await erp.fetchval(f"select count(*) from {stock}") == 3


async def test_a_write_with_returning_gives_its_rows(
    connections: Connections, stock: str, workspace: str, erp: Connection
) -> None:
    workflow = workflow_of(
        query(
            f"insert into {stock} (item, warehouse, on_hand) values ($1, $2, $3) returning item, on_hand",
            '["C-300", "Malmo", "{{ request.body.n }}"]',
        ),
        connections,
        connections=ERP,
    )
    outcome = await run(workflow, workspace, {"n": 4})
    assert outcome.output == [{"item": "C-300", "on_hand": 4}]
    assert await erp.fetchval(f"select on_hand from {stock} where item = 'C-300'") == 4


@pytest.mark.parametrize(
    ("sql", "params", "extra", "error"),
    [
        ("select * from {t}", "[]", ", max_rows: 2", "the query returned more than 2 rows (max_rows)"),
        ("select * from nope", "[]", "", 'connection erp: relation "nope" does not exist'),
        (
            "select * from {t} where on_hand > $1",
            '["many"]',
            "",
            "connection erp: invalid input for query argument $1: 'many' "
            "('str' object cannot be interpreted as an integer)",
        ),
        ("select pg_sleep(5)", "[]", ", timeout: 300ms", "timed out after 0.3 s (timeout)"),
    ],
)
async def test_query_failures_name_the_step(
    connections: Connections, stock: str, workspace: str, sql: str, params: str, extra: str, error: str
) -> None:
    workflow = workflow_of(query(sql.format(t=stock), params, extra), connections, connections=ERP)
    outcome = await run(workflow, workspace)
    assert outcome.error == f"step q (sql): {error}"
    # The connection is still usable afterwards (a cancelled query does not poison the pool).
    again = await run(workflow_of(query("select 1 as one"), connections, connections=ERP), workspace)
    assert again.output == [{"one": 1}]


async def test_a_connection_the_workspace_lacks_fails_the_step(connections: Connections) -> None:
    workflow = workflow_of(query("select 1"), connections, connections=ERP)
    outcome = await run(workflow, "other-workspace")
    assert outcome.error == "step q (sql): connection 'erp' does not exist in workspace other-workspace"
