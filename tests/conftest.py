"""The servers every integration test shares, and a database and broker prefix per session.

`amqp_url` / `database_url` come from HOOKLINE_TEST_AMQP_URL / HOOKLINE_TEST_DATABASE_URL,
else testcontainers when a Docker engine answers, else private server processes started in
a temporary folder (see tests/servers.py). Each session gets its own database and its own
queue-name prefix, so nothing is left in (or read from) servers it did not start.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from shared.db.migrate import migrate
from shared.db.pool import connect
from shared.devstack.demo_erp import drop_demo_erp, prepare_demo_erp
from shared.devstack.demo_target import DemoTarget
from tests import servers
from tests.stack import Services, services

# Secrets the session's services can resolve from `${env:...}` references in trigger files.
TEST_SECRETS = {
    "TEST_HMAC_SECRET": "It's a Secret to Everybody",
    "TEST_WHSEC": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "TEST_BASIC_PASSWORD": "correct horse battery staple",
}
# The stack's key for workspace secrets, and the one workspace allowed an `${env:NAME}` of its own.
TEST_SECRETS_KEY = "2f5NGLb0GMpX0Rk3-0jS2s0rbG0n8eJ3p7Lq4x1Yv5U="
ENV_ALLOWED_WORKSPACE = "env-allowed"


@pytest.fixture(scope="session")
def server_dir() -> Iterator[Path]:
    """A folder the rabbitmq and postgres users may enter (pytest's tmp_path is 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="hookline-tests-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def amqp_server_url(server_dir: Path) -> Iterator[str]:
    with servers.amqp_server(server_dir / "rabbitmq") as url:
        yield url


@pytest.fixture(scope="session")
def postgres_server_url(server_dir: Path) -> Iterator[str]:
    with servers.postgres_server(server_dir / "postgres") as url:
        yield url


@pytest.fixture(scope="session")
def amqp_prefix() -> str:
    """Queue names of this session's main stack start with it (tests/stack.py cleans up)."""
    return f"hltest-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def database_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh, migrated database of this session, dropped at the end."""
    name = f"hookline_test_{uuid.uuid4().hex[:8]}"
    admin_url = postgres_server_url
    asyncio.run(_create_database(admin_url, name))
    url = _with_database(admin_url, name)
    asyncio.run(_migrate(url))
    yield url
    asyncio.run(_drop_database(admin_url, name))


def _with_database(url: str, name: str) -> str:
    # The path only: a query (sslrootcert=/path/ca.pem, target_session_attrs) stays as it is.
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def _create_database(url: str, name: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(f'create database "{name}"')
    finally:
        await connection.close()


async def _drop_database(url: str, name: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(f'drop database if exists "{name}" with (force)')
    finally:
        await connection.close()


async def _migrate(url: str) -> None:
    async with connect(url) as connection:
        await migrate(connection)


@pytest.fixture(scope="session")
def amqp_url(amqp_server_url: str) -> str:
    return amqp_server_url


@pytest.fixture(scope="session")
def log_dir(server_dir: Path) -> Path:
    folder = server_dir / "logs"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def demo_target() -> Iterator[DemoTarget]:
    """The system the examples call (shared/devstack/demo_target.py), served from a thread of the tests."""
    server = DemoTarget(0, "demo-target-key-of-the-tests")
    thread = threading.Thread(target=server.serve_forever, name="demo-target", daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def demo_erp_dsn(postgres_server_url: str) -> Iterator[str]:
    """The demo ERP as `hookline up` makes it (its own database, a read-only role), this session's."""
    suffix = uuid.uuid4().hex[:8]
    names = {"database": f"hookline_demo_erp_{suffix}", "role": f"hookline_demo_erp_{suffix}"}
    yield asyncio.run(prepare_demo_erp(postgres_server_url, **names))
    asyncio.run(drop_demo_erp(postgres_server_url, **names))


@pytest.fixture(scope="session")
def steps_database_url(postgres_server_url: str) -> Iterator[str]:
    """A database of this session for `sql` steps, owned by a login role with no other right.

    Steps refuse hookline's own database and superusers, so they never use `database_url`.
    """
    suffix = uuid.uuid4().hex[:8]
    name = f"hookline_steps_{suffix}"
    asyncio.run(_create_steps_database(postgres_server_url, name))
    parts = urlsplit(postgres_server_url)
    yield f"{parts.scheme}://{name}@{parts.netloc.rpartition('@')[2]}/{name}"
    asyncio.run(drop_demo_erp(postgres_server_url, database=name, role=name))


@pytest.fixture(scope="session")
def step_dsns(steps_database_url: str, database_url: str, postgres_server_url: str) -> dict[str, str]:
    """DSNs a `sql` step must refuse: hookline's own database (as the steps' role), a superuser."""
    steps_role = urlsplit(steps_database_url).username
    own = urlsplit(database_url)
    superuser = urlsplit(postgres_server_url)
    return {
        "TEST_HOOKLINE_DB_DSN": f"{own.scheme}://{steps_role}@{own.netloc.rpartition('@')[2]}{own.path}",
        "TEST_SUPERUSER_DSN": steps_database_url.replace(f"{steps_role}@", f"{superuser.username}@", 1),
    }


async def _create_steps_database(url: str, name: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(f'create role "{name}" login')
        await connection.execute(f'create database "{name}" owner "{name}"')
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def demo_env(demo_target: DemoTarget, demo_erp_dsn: str) -> dict[str, str]:
    """What the connections of examples/*.yaml reference, as `hookline up` sets it."""
    return {
        "DEMO_TARGET_URL": demo_target.url,
        "DEMO_TARGET_KEY": demo_target.api_key,
        "DEMO_ERP_DSN": demo_erp_dsn,
    }


@pytest.fixture(scope="session")
def stack(
    amqp_url: str,
    database_url: str,
    amqp_prefix: str,
    log_dir: Path,
    demo_env: dict[str, str],
    step_dsns: dict[str, str],
) -> Iterator[Services]:
    """Dispatcher, two workers and an ingress, shared by the session's integration tests."""
    env = {
        **TEST_SECRETS,
        **demo_env,
        **step_dsns,
        "HOOKLINE_SECRETS_KEY": TEST_SECRETS_KEY,
        "HOOKLINE_WORKSPACE_ENV": f"{ENV_ALLOWED_WORKSPACE}=TEST_HMAC_SECRET",
    }
    with services(amqp_url, database_url, log_dir, workers=2, prefix=amqp_prefix, extra_env=env) as running:
        yield running


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the session's database."""
    async with connect(database_url) as connection:
        yield connection


@pytest.fixture
def workspace() -> str:
    """A workspace name of this test alone."""
    return f"ws-{uuid.uuid4().hex[:10]}"


# A test that uses any of these needs a real server: it is an integration test wherever it lives.
SERVER_FIXTURES = frozenset({"amqp_server_url", "postgres_server_url"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests under tests/integration, and every test that needs a server, are integration tests.

    So `make unit` (`-m "not integration"`) never starts or needs a server.
    """
    for item in items:
        needs_server = SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))
        if "integration" in Path(str(item.fspath)).parts or needs_server:
            item.add_marker(pytest.mark.integration)
