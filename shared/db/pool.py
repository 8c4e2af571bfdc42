"""The asyncpg pool: JSON codecs through msgspec, errors translated at the boundary."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import parse_qs, urlsplit

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy

from shared.errors import DatabaseUnavailable

# What a lost or refused database connection raises; each becomes DatabaseUnavailable.
DB_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionFailureError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    # A connection that broke in the middle of a query fails its reset (on release to the
    # pool) with "cannot switch to state ...; another operation is in progress".
    asyncpg.exceptions.InternalClientError,
    TimeoutError,
)

# What query functions take: a plain connection or one borrowed from a pool.
Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"

_json_encode = msgspec.json.Encoder().encode
_NUL_ESCAPE = b"\\u0000"
# msgspec writes U+0000 as the escape `\u0000`. One preceded by an odd number of
# backslashes is not one: `\\u0000` is a backslash followed by the text "u0000".
_NUL_ESCAPES = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


def json_text(value: Any) -> str:
    """`value` as JSON text that jsonb accepts.

    jsonb cannot hold U+0000 (a caller may send `"\\u0000"` in a JSON body or `%00` in a
    query string), so it is stored as U+FFFD; the workflow still got the call as sent. The
    escape is replaced in the encoded bytes, without walking the value: a body nested
    hundreds deep would exhaust Python's recursion limit (a poison message).
    """
    encoded = _json_encode(value)
    if _NUL_ESCAPE in encoded:
        encoded = _NUL_ESCAPES.sub(rb"\1\\ufffd", encoded)
    return encoded.decode()


def pg_text(value: str | None) -> str | None:
    """Text that a text column accepts: U+0000 becomes U+FFFD."""
    return None if value is None else value.replace("\x00", "\ufffd")


def _encode_json(value: Any) -> str:
    return json_text(value)


async def init_connection(connection: asyncpg.Connection) -> None:
    """jsonb and json in and out through msgspec (hookline's own database)."""
    for name in ("jsonb", "json"):
        await connection.set_type_codec(
            name, encoder=_encode_json, decoder=msgspec.json.decode, schema="pg_catalog"
        )


async def init_step_connection(connection: asyncpg.Connection) -> None:
    """A `sql` step's connection: jsonb through msgspec; json stays text, as documented
    (`from_json()` reads a json column)."""
    await connection.set_type_codec(
        "jsonb", encoder=_encode_json, decoder=msgspec.json.decode, schema="pg_catalog"
    )


# The options of a database URL that name a file of this machine.
_FILE_OPTIONS = ("sslrootcert", "sslcert", "sslkey", "sslcrl", "passfile")


def unreachable(exc: BaseException, dsn: str) -> DatabaseUnavailable:
    """DatabaseUnavailable saying why, on one line (the CLI and a service's exit say one line).

    asyncpg's messages may add a HINT line; a file the URL names that is not there comes as
    a bare "No such file or directory", so the option and its file are named instead.
    """
    reason = " ".join(str(exc).split())
    if isinstance(exc, FileNotFoundError):
        options = parse_qs(urlsplit(dsn).query)
        missing = [
            f"{name} file {path} does not exist"
            for name in _FILE_OPTIONS
            for path in options.get(name, [])[-1:]
            if not Path(path).expanduser().exists()
        ]
        reason = "; ".join(missing) or reason
    return DatabaseUnavailable(f"cannot reach PostgreSQL: {reason}")


async def create_pool(dsn: str, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """Open a pool, or raise DatabaseUnavailable with the reason."""
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            init=init_connection,
            timeout=10,
            command_timeout=60,
        )
    except DB_ERRORS as exc:
        raise unreachable(exc, dsn) from None
    assert pool is not None
    return pool


@asynccontextmanager
async def open_pool(dsn: str, min_size: int = 1, max_size: int = 10) -> AsyncIterator[asyncpg.Pool]:
    """A service's pool for the length of a `with` block (see `create_pool`)."""
    pool = await create_pool(dsn, min_size, max_size)
    try:
        yield pool
    finally:
        try:
            # A graceful close waits on every connection; with PostgreSQL away that can hang.
            await asyncio.wait_for(pool.close(), 10)
        except TimeoutError:
            pool.terminate()


@asynccontextmanager
async def connect(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """One connection for a CLI command."""
    try:
        connection = await asyncpg.connect(dsn, timeout=10)
    except DB_ERRORS as exc:
        raise unreachable(exc, dsn) from None
    except asyncpg.exceptions.InvalidCatalogNameError as exc:
        raise unreachable(exc, dsn) from None
    try:
        await init_connection(connection)
        yield connection
    finally:
        await connection.close()
