"""The demo ERP that `examples/stock-at-hand.yaml` queries: a database of its own, read by a role of its own.

`hookline up` creates it on hookline's PostgreSQL server when DEMO_ERP_DSN is not set, and
points the examples' `erp` connection at it as a login role that can only SELECT
`demo_erp.stock`: a workspace's `sql` step has the full power of its connection's role, so
that role must never be hookline's (whose database holds every tenant's tokens and runs).
Kept out of the migrations: production databases have no use for demo tables.
"""

from __future__ import annotations

import re
import secrets
from urllib.parse import parse_qs, urlsplit

import asyncpg

from shared.db.pool import connect
from shared.errors import HooklineError

DATABASE = "hookline_demo_erp"
ROLE = "hookline_demo_erp_reader"
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def demo_erp_names(database_url: str) -> dict[str, str]:
    """The ERP's database and role for hookline's database at `database_url`.

    Named after it, so two stacks sharing one server (each with its own hookline database)
    never share, or race to create, one ERP: `hookline` -> `hookline_demo_erp`.
    """
    own = re.sub(r"[^a-z0-9_]", "_", urlsplit(database_url).path.removeprefix("/").lower()) or "hookline"
    own = own if own[0].isalpha() or own[0] == "_" else f"_{own}"
    return {"database": f"{own[:45]}_demo_erp", "role": f"{own[:45]}_demo_erp_reader"}


_SCHEMA = """
create schema if not exists demo_erp;
create table if not exists demo_erp.stock (
    item        text not null,
    warehouse   text not null,
    description text not null,
    on_hand     integer not null check (on_hand >= 0),
    primary key (item, warehouse)
);
insert into demo_erp.stock (item, warehouse, description, on_hand) values
    ('A-100', 'Gothenburg', 'Hex bolt M8x40', 120),
    ('A-100', 'Malmo', 'Hex bolt M8x40', 35),
    ('B-200', 'Gothenburg', 'Washer M8', 0)
on conflict do nothing;
"""
# {role} and {database} are checked names (_NAME), never text from a file or a caller.
_GRANTS = """
revoke all on database "{database}" from public;
grant connect on database "{database}" to "{role}";
revoke all on schema public from public;
grant usage on schema demo_erp to "{role}";
grant select on all tables in schema demo_erp to "{role}";
"""


async def prepare_demo_erp(server_url: str, database: str = DATABASE, role: str = ROLE) -> str:
    """Create the ERP database, its rows and its read-only role (idempotent); the role's DSN.

    `server_url` is a database URL of a role that may create databases and roles (hookline
    up's own superuser). The role gets a new password each time: the DSN returned is the
    only place it is written.
    """
    if not (_NAME.match(database) and _NAME.match(role)):
        raise ValueError("the demo ERP's database and role are lower-case names")
    password = secrets.token_urlsafe(24)  # letters, digits, - and _: safe inside a literal
    try:
        async with connect(server_url) as server:
            if not await server.fetchval("select 1 from pg_roles where rolname = $1", role):
                await server.execute(f'create role "{role}"')
            await server.execute(
                f'alter role "{role}" with login nosuperuser nocreatedb nocreaterole noreplication'
                f" nobypassrls password '{password}'"
            )
            if not await server.fetchval("select 1 from pg_database where datname = $1", database):
                await server.execute(f'create database "{database}"')
        async with connect(_on_database(server_url, database)) as erp:
            await erp.execute(_SCHEMA + _GRANTS.format(database=database, role=role))
    except asyncpg.PostgresError as exc:
        raise HooklineError(
            f"cannot create the demo ERP database {database} ({exc}); "
            "set DEMO_ERP_DSN to a database and read-only role of your own"
        ) from None
    return _on_database(server_url, database, f"{role}:{password}")


def _on_database(url: str, database: str, userinfo: str | None = None) -> str:
    """`url` on another database (and as another user).

    As hookline's own role (no `userinfo`) every option is kept: a multi-host URL's
    `target_session_attrs`, TLS's `sslmode` and `sslrootcert`. The ERP role's DSN is a step's
    DSN, which may carry `sslmode` only (worker/step_databases.py): the rest name files and
    defaults of the worker's machine.
    """
    parts = urlsplit(url)
    hostspec = parts.netloc.rpartition("@")[2]
    user = userinfo if userinfo is not None else parts.netloc.rpartition("@")[0]
    if userinfo is None:
        query = f"?{parts.query}" if parts.query else ""
    else:
        sslmode = parse_qs(parts.query).get("sslmode")
        query = f"?sslmode={sslmode[-1]}" if sslmode else ""
    return f"{parts.scheme}://{user + '@' if user else ''}{hostspec}/{database}{query}"


async def drop_demo_erp(server_url: str, database: str = DATABASE, role: str = ROLE) -> None:
    """Remove the ERP database and its role (the tests' clean-up)."""
    if not (_NAME.match(database) and _NAME.match(role)):
        raise ValueError("the demo ERP's database and role are lower-case names")
    async with connect(server_url) as server:
        await server.execute(f'drop database if exists "{database}" with (force)')
        await server.execute(f'drop role if exists "{role}"')
