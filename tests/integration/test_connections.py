"""Workspace connections: stored as references, resolved by the worker, followed when changed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shared.db.pool import Connection, create_pool
from shared.db.registry import apply_workspace
from shared.db.triggers import delete_trigger
from shared.errors import SpecError, WorkflowError
from shared.spec.loader import load_text
from tests.helpers import eventually
from tests.workflow_runs import invocation, workflow_of
from worker.resources import Connections

FILE = """
workspace: {ws}
connections:
  crm: {{type: http, base_url: "${{env:CRM_URL}}/v2", headers: {{Authorization: "Bearer ${{env:CRM_TOKEN}}", X-Tenant: acme}}}}
  erp: {{type: postgres, dsn: "{dsn}"}}
"""


async def apply(db: Connection, workspace: str, dsn: str = "${env:ERP_DSN}") -> list[str]:
    [document] = load_text(FILE.format(ws=workspace, dsn=dsn))
    return [str(change) for change in await apply_workspace(db, document)]


@pytest.fixture
async def environ(steps_database_url: str) -> dict[str, str]:
    return {"CRM_URL": "https://crm.example.com", "CRM_TOKEN": "tok-8d1e55", "ERP_DSN": steps_database_url}


@pytest.fixture
async def connections(database_url: str, environ: dict[str, str]) -> AsyncIterator[Connections]:
    pool = await create_pool(database_url, max_size=2)
    resources = Connections(pool, environ=environ)
    yield resources
    await resources.close()
    await pool.close()


async def test_the_registry_keeps_references_never_resolved_secrets(db: Connection, workspace: str) -> None:
    assert await apply(db, workspace) == [
        f"workspace {workspace}: created",
        f"connection {workspace}/crm: created",
        f"connection {workspace}/erp: created",
    ]
    stored = await db.fetchval(
        "select spec from connections where workspace = $1 and name = 'crm'", workspace
    )
    assert stored == {
        "type": "http",
        "base_url": "${env:CRM_URL}/v2",
        "headers": {"Authorization": "Bearer ${env:CRM_TOKEN}", "X-Tenant": "acme"},
        "idempotency_header": "Idempotency-Key",
    }
    assert (await apply(db, workspace))[1:] == [
        f"connection {workspace}/crm: unchanged",
        f"connection {workspace}/erp: unchanged",
    ]


async def test_an_http_connection_is_resolved_from_the_workers_environment(
    db: Connection, workspace: str, connections: Connections
) -> None:
    await apply(db, workspace)
    target = await connections.http_target(workspace, "crm")
    assert target.base_url == "https://crm.example.com/v2"
    assert target.headers == {"Authorization": "Bearer tok-8d1e55", "X-Tenant": "acme"}
    assert target.shown_base_url == "${env:CRM_URL}/v2"
    assert sorted(target.secrets) == ["https://crm.example.com", "tok-8d1e55"]


async def test_a_variable_missing_on_the_worker_is_named_not_guessed(
    db: Connection, workspace: str, connections: Connections, environ: dict[str, str]
) -> None:
    await apply(db, workspace)
    del environ["CRM_TOKEN"]
    with pytest.raises(WorkflowError) as raised:
        await connections.http_target(workspace, "crm")
    assert str(raised.value) == "connection crm: environment variable CRM_TOKEN is not set on this worker"


async def test_the_wrong_kind_of_connection_is_refused(
    db: Connection, workspace: str, connections: Connections
) -> None:
    await apply(db, workspace)
    with pytest.raises(WorkflowError) as raised:
        await connections.postgres(workspace, "crm")
    assert str(raised.value) == "connection 'crm' is not a postgres connection"


async def test_a_changed_connection_reaches_a_running_worker_and_secrets_stay_out_of_errors(
    db: Connection,
    workspace: str,
    connections: Connections,
    database_url: str,
    steps_database_url: str,
    environ: dict[str, str],
) -> None:
    await apply(db, workspace)
    connections.start(database_url)
    workflow = workflow_of(
        "- id: q\n  sql: {connection: erp, query: select 1 as one}",
        connections,
        connections="erp: {type: postgres, dsn: '${env:ERP_DSN}'}",
    )
    first = await workflow.run(invocation(workspace=workspace), 1)
    assert first.output == [{"one": 1}]

    # Same server, a database that does not exist, its name a secret from the environment.
    base = steps_database_url.rsplit("/", 1)[0]
    environ["ERP_DB"] = "secret-db-name-4471"
    changes = await apply(db, workspace, dsn=base + "/${env:ERP_DB}")
    assert changes[2] == f"connection {workspace}/erp: updated"

    async def failed() -> str | None:
        outcome = await workflow.run(invocation(workspace=workspace), 1)
        return outcome.error if not outcome.ok else None

    error = await eventually(failed, timeout=10)
    assert error == 'step q (sql): connection erp: cannot connect: database "[redacted]" does not exist'


async def test_the_password_of_a_dsn_is_a_secret_of_its_own(
    db: Connection, workspace: str, connections: Connections, environ: dict[str, str], steps_database_url: str
) -> None:
    await apply(db, workspace)
    dsn = steps_database_url.replace("@", ":pw-5e2c91@", 1)  # the tests' server trusts 127.0.0.1
    environ["ERP_DSN"] = dsn
    _, secrets = await connections.postgres(workspace, "erp")
    assert sorted(secrets) == [dsn, "pw-5e2c91"]


async def test_a_stored_reference_to_hooklines_own_settings_is_not_resolved_by_the_worker(
    db: Connection, workspace: str, connections: Connections, environ: dict[str, str]
) -> None:
    # Stored before apply refused such references: the worker does not resolve it either.
    await apply(db, workspace)
    await db.execute(
        "update connections set spec = jsonb_set(spec, '{headers,Authorization}', $2)"
        " where workspace = $1 and name = 'crm'",
        workspace,
        "Bearer ${env:HOOKLINE_ADMIN_TOKEN}",
    )
    environ["HOOKLINE_ADMIN_TOKEN"] = "adm-77c1"
    with pytest.raises(WorkflowError) as raised:
        await connections.http_target(workspace, "crm")
    assert str(raised.value) == (
        "connection crm: hookline's own settings cannot be referenced from a trigger file "
        "(${env:HOOKLINE_ADMIN_TOKEN}) on this worker"
    )


STOCK = """
workspace: {ws}
triggers:
  - name: stock
    auth: {{type: none}}
    workflow:
      - id: check
        condition:
          if: "{{{{ request.body.item }}}}"
          then: [{{id: q, sql: {{connection: erp, query: select 1}}}}]
"""
ERP_OVER_HTTP = """
workspace: {ws}
connections:
  erp: {{type: http, base_url: "https://erp.example.com"}}
"""


async def apply_text(db: Connection, text: str) -> list[str]:
    """Apply in one transaction, as `hookline apply` does: a refusal changes nothing."""
    [document] = load_text(text)
    async with db.transaction():
        return [str(change) for change in await apply_workspace(db, document)]


async def test_a_file_may_use_the_connections_another_file_of_its_workspace_declared(
    db: Connection, workspace: str
) -> None:
    await apply(db, workspace)
    assert await apply_text(db, STOCK.format(ws=workspace)) == [
        f"workspace {workspace}: unchanged",
        f"trigger {workspace}/stock: created (version 1)",
    ]


async def test_a_connection_no_file_of_the_workspace_declared_is_refused_at_apply(
    db: Connection, workspace: str
) -> None:
    with pytest.raises(SpecError) as raised:
        await apply_text(db, STOCK.format(ws=workspace))
    assert str(raised.value) == (
        f"workspace {workspace}, trigger stock, step check, then, step q, field sql.connection: "
        "unknown connection 'erp' (the workspace has: none)"
    )
    assert await db.fetchval("select count(*) from workspaces where name = $1", workspace) == 0


async def test_a_connection_cannot_change_type_under_a_trigger_another_file_stored(
    db: Connection, workspace: str
) -> None:
    await apply(db, workspace)
    await apply_text(db, STOCK.format(ws=workspace))
    with pytest.raises(SpecError) as raised:
        await apply_text(db, ERP_OVER_HTTP.format(ws=workspace))
    assert str(raised.value) == (
        f"workspace {workspace}, connection erp, field type: cannot change from postgres to http: "
        "trigger stock of the workspace uses it in an sql step"
    )
    stored = await db.fetchval(
        "select spec from connections where workspace = $1 and name = 'erp'", workspace
    )
    assert stored == {"type": "postgres", "dsn": "${env:ERP_DSN}", "pool_size": 4}

    await delete_trigger(db, workspace, "stock")
    assert (await apply_text(db, ERP_OVER_HTTP.format(ws=workspace)))[1:] == [
        f"connection {workspace}/erp: updated"
    ]
