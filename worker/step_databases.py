"""A `sql` step's database: reached with what its DSN says only, refused when it is too close to hookline.

A postgres connection gives the workspace's SQL the full power of its role, so the role must
not be hookline's own database (same server, by `pg_control_system()`'s system identifier,
and same database name), nor a role that can become more: superuser, replication,
BYPASSRLS, CREATEROLE (which may grant itself `pg_*` roles) or any predefined `pg_*` role
(pg_read_server_files, pg_execute_server_program, pg_read_all_data...). Each new connection
of a step pool is checked before a step gets it.

asyncpg fills what a DSN leaves out from libpq's environment and files (PGPASSWORD,
PGPASSFILE and ~/.pgpass, PGHOST, PGUSER, PGDATABASE, PGSERVICEFILE, PGSSLMODE...). Those
belong to the worker's machine (often hookline's own credentials), never to a workspace:
the DSN is taken apart here and every value passed to asyncpg explicitly.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg

from shared.db.pool import Connection, init_step_connection
from shared.errors import WorkflowError

# What a step DSN may say after `?`; anything else (service, passfile, sslcert...) would name
# a file or a default of the worker's machine.
_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_OPTIONS = ("sslmode", "application_name")


class StepDatabaseRefused(WorkflowError):
    """Raised when a step's connection reaches hookline's own database or logs in as a privileged role."""

    problem_type = "step-database-refused"


@dataclass(frozen=True)
class DatabaseIdentity:
    """Which database a connection reached: the server's system identifier and the database name."""

    system_identifier: int
    database: str


_IDENTITY = "select current_database() as database, system_identifier from pg_control_system()"
# Every role the login role is a member of (itself included) and could act as through SET ROLE.
_PRIVILEGES = r"""
select coalesce(bool_or(rolsuper), false) as superuser,
       coalesce(bool_or(rolreplication), false) as replication,
       coalesce(bool_or(rolbypassrls), false) as bypassrls,
       coalesce(bool_or(rolcreaterole), false) as createrole,
       coalesce(array_agg(rolname order by rolname)
                filter (where rolname like 'pg\_%' and rolname <> 'pg_database_owner'), '{}') as predefined
from pg_roles where pg_has_role(session_user, oid, 'member')
"""


async def database_identity(connection: Connection) -> DatabaseIdentity:
    """The identity of the database `connection` is on."""
    row = await connection.fetchrow(_IDENTITY)
    assert row is not None
    return DatabaseIdentity(int(row["system_identifier"]), row["database"])


def connect_arguments(dsn: str) -> dict[str, Any]:
    """asyncpg.connect() keyword arguments for `dsn`, nothing left for asyncpg to look up.

    ValueError (its text free of the DSN's values) when the DSN leaves the host, the user or
    the database to the environment, or names an option that reads the machine's files.
    """
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError("the DSN must be a postgresql://user@host/database URL")
    userinfo, _, hostspec = parts.netloc.rpartition("@")
    user, has_password, password = userinfo.partition(":")
    hosts, ports = _hosts(hostspec)
    database = unquote(parts.path.removeprefix("/"))
    if not user or not database:
        raise ValueError(
            "the DSN must name its user and its database (postgresql://user@host/database): "
            "nothing is taken from the worker's environment"
        )
    options = {key: values[-1] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise ValueError(f"the DSN option {unknown[0]} is not supported (allowed: {', '.join(_OPTIONS)})")
    settings = {"application_name": options["application_name"]} if "application_name" in options else None
    return {
        "host": hosts,
        "port": ports,
        "user": unquote(user),
        # A string, never None: None makes asyncpg read PGPASSWORD and the passfile.
        "password": unquote(password) if has_password else "",
        "database": database,
        "ssl": _ssl(options.get("sslmode", "prefer")),
        "direct_tls": False,
        "server_settings": settings,
        "target_session_attrs": "any",
        "krbsrvname": "postgres",
        "gsslib": "gssapi",
    }


def _hosts(hostspec: str) -> tuple[list[str], list[int]]:
    """The TCP hosts and ports of `h1:5432,h2:5433` (a Unix socket is the worker's machine)."""
    hosts, ports = [], []
    for one in hostspec.split(","):
        parsed = urlsplit(f"//{one}")
        if not parsed.hostname:
            raise ValueError("the DSN must name the database's host: nothing is taken from the environment")
        hosts.append(parsed.hostname)
        ports.append(parsed.port or 5432)
    return hosts, ports


def _ssl(mode: str) -> ssl.SSLContext | str | bool:
    if mode not in _SSL_MODES:
        raise ValueError(f"sslmode must be one of {', '.join(_SSL_MODES)}")
    if mode == "disable":
        return False
    if mode in ("allow", "prefer"):
        return mode  # asyncpg's own try-TLS-then-plain, certificates unverified
    context = ssl.create_default_context()  # the system's CAs, not ~/.postgresql/root.crt
    if mode == "require":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif mode == "verify-ca":
        context.check_hostname = False
    return context


async def check_step_database(connection: Connection, own: DatabaseIdentity) -> None:
    """StepDatabaseRefused when `connection` is on hookline's own database or its role is privileged."""
    try:
        reached = await database_identity(connection)
    except asyncpg.InsufficientPrivilegeError:
        raise StepDatabaseRefused(
            "refused: the server does not let the role read pg_control_system(), "
            "so it cannot be told apart from hookline's own database"
        ) from None
    if reached == own:
        raise StepDatabaseRefused(
            "refused: it reaches hookline's own database; give the steps a database of their own"
        )
    row = await connection.fetchrow(_PRIVILEGES)
    assert row is not None
    # A superuser is a member of every role: saying so is enough.
    reasons = (
        ["superuser"]
        if row["superuser"]
        else [
            *(["replication"] if row["replication"] else []),
            *(["bypassrls"] if row["bypassrls"] else []),
            *(["createrole"] if row["createrole"] else []),
            *row["predefined"],
        ]
    )
    if reasons:
        raise StepDatabaseRefused(
            f"refused: its role has {', '.join(reasons)}; log in as a role with only "
            "the rights the steps need (no superuser, replication, bypassrls, createrole or pg_* role)"
        )


def step_connection_init(own: DatabaseIdentity) -> Any:
    """The `init` of a step pool: check each new connection, then set its codecs."""

    async def init(connection: asyncpg.Connection) -> None:
        await check_step_database(connection, own)
        await init_step_connection(connection)

    return init
