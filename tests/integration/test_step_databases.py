"""A `sql` step's database on a real stack: never hookline's own, never a privileged role (security review #1).

A workspace's SQL runs with the full power of its connection's role, so what a workspace
token can reach through `erp` is what that role can: the demo ERP's own database, read-only.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from shared.db.pool import Connection, create_pool
from shared.db.registry import apply_workspace
from shared.devstack.localservers import LocalPostgres
from shared.errors import WorkflowError
from shared.spec.loader import load_file
from tests.helpers import apply_yaml, eventually, finished_execution
from tests.servers import traversable_tmp_dir
from tests.stack import ROOT, Services
from worker.resources import Connections

ADMIN = {"Authorization": "Bearer test-admin-token-0123456789"}


def sql_trigger(name: str, connection: str, query: str) -> dict[str, Any]:
    """A trigger definition as a workspace token would POST it: one sql step, run once."""
    return {
        "name": name,
        "auth": {"type": "none"},
        "retry": {"max_attempts": 1},
        "workflow": [{"id": "q", "sql": {"connection": connection, "query": query}}],
    }


@pytest.fixture
async def demo_token(db: Connection, stack: Services) -> AsyncIterator[httpx.AsyncClient]:
    """The management API as a holder of a `demo` workspace token, with the examples applied."""
    async with db.transaction():
        for workspace in load_file(ROOT / "examples" / "stock-at-hand.yaml"):
            await apply_workspace(db, workspace)
    async with httpx.AsyncClient(base_url=f"{stack.base_url}/api", headers=ADMIN) as admin:
        made = await admin.post(
            "/tokens", json={"label": f"demo-{uuid.uuid4().hex[:6]}", "workspace": "demo"}
        )
    assert made.status_code == 201
    headers = {"Authorization": f"Bearer {made.json()['token']}"}
    async with httpx.AsyncClient(base_url=f"{stack.base_url}/api", headers=headers, timeout=20) as client:
        yield client


async def run_once(
    stack: Services, db: Connection, workspace: str, trigger: str
) -> tuple[str, Any, str | None]:
    """Call the (just defined) trigger until it is routable; its run's status, output and error."""

    async def accepted() -> str | None:
        async with httpx.AsyncClient(base_url=stack.base_url) as client:
            answer = await client.post(f"/hooks/{workspace}/{trigger}", json={})
        return str(answer.json()["execution_id"]) if answer.status_code == 202 else None

    execution = await finished_execution(db, await eventually(accepted), timeout=20)
    return execution.status, execution.output, execution.error


async def test_the_demo_tokens_sql_step_on_erp_cannot_read_hooklines_database(
    stack: Services, db: Connection, demo_token: httpx.AsyncClient
) -> None:
    suffix = uuid.uuid4().hex[:6]
    who = sql_trigger(
        f"who-{suffix}",
        "erp",
        "select current_database() = 'hookline_demo_erp' or current_database() like 'hookline_demo_erp_%' as erp,"
        " (select rolsuper from pg_roles where rolname = current_user) as superuser,"
        " has_table_privilege('demo_erp.stock', 'insert') as may_write",
    )
    assert (await demo_token.post("/workspaces/demo/triggers", json=who)).status_code == 201
    assert await run_once(stack, db, "demo", who["name"]) == (
        "succeeded",
        [{"erp": True, "superuser": False, "may_write": False}],
        None,
    )
    for query, error in [
        ("select count(*) from api_tokens", 'relation "api_tokens" does not exist'),
        ("select count(*) from executions", 'relation "executions" does not exist'),
        ("insert into demo_erp.stock values ('X', 'Y', 'Z', 1)", "permission denied for table stock"),
    ]:
        probe = sql_trigger(f"probe-{uuid.uuid4().hex[:6]}", "erp", query)
        assert (await demo_token.post("/workspaces/demo/triggers", json=probe)).status_code == 201
        assert await run_once(stack, db, "demo", probe["name"]) == (
            "dead",
            None,
            f"step q (sql): connection erp: {error}",
        )


@pytest.mark.parametrize(
    ("variable", "error"),
    [
        (
            "TEST_HOOKLINE_DB_DSN",
            "connection own: refused: it reaches hookline's own database; give the steps a database of their own",
        ),
        (
            "TEST_SUPERUSER_DSN",
            "connection own: refused: its role has superuser; log in as a "
            "role with only the rights the steps need (no superuser, replication, bypassrls, createrole or "
            "pg_* role)",
        ),
    ],
)
async def test_a_connection_to_hooklines_own_database_or_as_a_superuser_is_refused_at_pool_open(
    stack: Services, db: Connection, workspace: str, variable: str, error: str
) -> None:
    await apply_yaml(
        db,
        f"workspace: {workspace}\n"
        f"connections:\n  own: {{type: postgres, dsn: '${{env:{variable}}}'}}\n"
        "triggers:\n"
        "  - name: peek\n    auth: {type: none}\n    retry: {max_attempts: 1}\n"
        "    workflow: [{id: q, sql: {connection: own, query: select count(*) from api_tokens}}]\n",
    )
    assert await run_once(stack, db, workspace, "peek") == ("dead", None, f"step q (sql): {error}")


@pytest.fixture(scope="module")
def password_server() -> Iterator[str]:
    """A private PostgreSQL where role `steps_pw` must give its password (scram); its server URL."""
    with traversable_tmp_dir() as folder:
        server = LocalPostgres(folder / "pg", fast=True)
        url = server.start()
        try:
            asyncio.run(_password_role(url))
            hba = folder / "pg" / "pgdata" / "pg_hba.conf"
            hba.write_text("host all steps_pw 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
            asyncio.run(_reload(url))
            yield url.rsplit("@", 1)[1].split("/")[0]
        finally:
            server.stop()


async def _password_role(url: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(f"create role steps_pw login password '{PASSWORD}'")
        await connection.execute("create database steps_pw owner steps_pw")
    finally:
        await connection.close()


async def _reload(url: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("select pg_reload_conf()")
    finally:
        await connection.close()


PASSWORD = "right-pw-4c1e9a"  # the private server's test role


async def test_a_dsn_without_password_does_not_fall_back_to_pgpassword_or_a_passfile(
    password_server: str,
    database_url: str,
    db: Connection,
    workspace: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # The worker's machine knows the password (as hookline's own often is known there).
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"*:*:*:*:{PASSWORD}\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    await apply_yaml(
        db, f"workspace: {workspace}\nconnections:\n  erp: {{type: postgres, dsn: '${{env:ERP_DSN}}'}}\n"
    )
    environ = {"ERP_DSN": f"postgresql://steps_pw@{password_server}/steps_pw"}
    pool = await create_pool(database_url, max_size=1)
    connections = Connections(pool, environ=environ)
    try:
        with pytest.raises(WorkflowError) as raised:
            await connections.postgres(workspace, "erp")
        assert str(raised.value) == (
            'connection erp: cannot connect: password authentication failed for user "steps_pw"'
        )
        # The same DSN with its password connects: only the fallback was missing.
        environ["ERP_DSN"] = f"postgresql://steps_pw:{PASSWORD}@{password_server}/steps_pw"
        step_pool, _ = await connections.postgres(workspace, "erp")
        async with step_pool.acquire() as step:
            assert await step.fetchval("select current_user") == "steps_pw"
    finally:
        await connections.close()
        await pool.close()
