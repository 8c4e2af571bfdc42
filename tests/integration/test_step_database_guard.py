"""What a step DSN may say, and the roles a step pool refuses short of superuser (security review #1)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg
import pytest

from shared.db.pool import Connection, create_pool
from shared.errors import WorkflowError
from tests.helpers import apply_yaml
from worker.resources import Connections
from worker.step_databases import connect_arguments


@pytest.mark.parametrize(
    ("dsn", "error"),
    [
        (
            "postgresql://db.example.com/erp",
            "the DSN must name its user and its database (postgresql://user@host/database): "
            "nothing is taken from the worker's environment",
        ),
        (
            "postgresql://app@db.example.com",
            "the DSN must name its user and its database (postgresql://user@host/database): "
            "nothing is taken from the worker's environment",
        ),
        (
            "postgresql://app@/erp?host=/var/run/postgresql",
            "the DSN must name the database's host: nothing is taken from the environment",
        ),
        (
            "postgresql://app@db.example.com/erp?service=hookline",
            "the DSN option service is not supported (allowed: sslmode, application_name)",
        ),
        (
            "postgresql://app@db.example.com/erp?passfile=/root/.pgpass",
            "the DSN option passfile is not supported (allowed: sslmode, application_name)",
        ),
        (
            "postgresql://app@db.example.com/erp?sslmode=maybe",
            "sslmode must be one of disable, allow, prefer, require, verify-ca, verify-full",
        ),
    ],
)
def test_a_step_dsn_that_leaves_something_to_the_workers_environment_is_refused(dsn: str, error: str) -> None:
    with pytest.raises(ValueError) as raised:
        connect_arguments(dsn)
    assert str(raised.value) == error


def test_a_step_dsn_without_password_passes_an_empty_one_so_pgpassword_is_never_read() -> None:
    arguments = connect_arguments("postgresql://app@h1:5433,h2/erp%20db?sslmode=disable&application_name=x")
    assert {k: arguments[k] for k in ("host", "port", "user", "password", "database", "ssl")} == {
        "host": ["h1", "h2"],
        "port": [5433, 5432],
        "user": "app",
        "password": "",
        "database": "erp db",
        "ssl": False,
    }
    assert arguments["server_settings"] == {"application_name": "x"}


@pytest.fixture
async def privileged_role(steps_database_url: str, postgres_server_url: str) -> AsyncIterator[str]:
    """A login role of this test on the steps' database; the test grants it what it checks."""
    role = f"hookline_priv_{uuid.uuid4().hex[:8]}"
    server = await asyncpg.connect(postgres_server_url)
    try:
        await server.execute(f'create role "{role}" login')
        parts = urlsplit(steps_database_url)
        yield f"{parts.scheme}://{role}@{parts.netloc.rpartition('@')[2]}{parts.path}"
    finally:
        await server.execute(f'drop role if exists "{role}"')
        await server.close()


@pytest.mark.parametrize(
    ("grant", "reason"),
    [
        ("grant pg_read_server_files to {role}", "pg_read_server_files"),
        ("grant pg_execute_server_program to {role}", "pg_execute_server_program"),
        ("grant pg_write_all_data to {role}", "pg_write_all_data"),
        ("alter role {role} createrole", "createrole"),
        ("alter role {role} bypassrls", "bypassrls"),
        ("alter role {role} replication", "replication"),
    ],
)
async def test_a_role_that_can_read_server_files_or_grant_itself_more_is_refused(
    privileged_role: str,
    postgres_server_url: str,
    database_url: str,
    db: Connection,
    workspace: str,
    grant: str,
    reason: str,
) -> None:
    role = urlsplit(privileged_role).username
    server = await asyncpg.connect(postgres_server_url)
    try:
        await server.execute(grant.format(role=f'"{role}"'))
    finally:
        await server.close()
    await apply_yaml(
        db, f"workspace: {workspace}\nconnections:\n  erp: {{type: postgres, dsn: '${{env:DSN}}'}}\n"
    )
    pool = await create_pool(database_url, max_size=1)
    connections = Connections(pool, environ={"DSN": privileged_role})
    try:
        with pytest.raises(WorkflowError) as raised:
            await connections.postgres(workspace, "erp")
        assert str(raised.value) == (
            f"connection erp: refused: its role has {reason}; log in as a role with only the rights "
            "the steps need (no superuser, replication, bypassrls, createrole or pg_* role)"
        )
    finally:
        await connections.close()
        await pool.close()
