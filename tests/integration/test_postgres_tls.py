"""PostgreSQL over TLS with `sslmode=verify-full`: the services reach a private server whose
certificate a private CA signed, and a URL that trusts another CA is refused, clearly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from shared.db.migrate import migrate
from shared.db.pool import Connection, connect
from shared.devstack.localservers import LocalPostgres
from shared.devstack.localservers.postgres import DATABASE, USER
from tests.helpers import apply_yaml, eventually
from tests.integration.calls import delivery_stack
from tests.private_ca import PrivateCA
from tests.stack import ROOT

TRIGGERS = """
workspace: {ws}
triggers:
  - name: tls
    auth: {{type: none}}
    workflow:
      - id: echo
        map: {{n: "{{{{ request.body.n }}}}"}}
"""


@dataclass(frozen=True)
class TlsServer:
    """A private PostgreSQL with ssl=on, the CA that signed its certificate, and a stranger CA."""

    port: int
    ca: Path
    other_ca: Path

    def url(self, ca: Path, host: str = "127.0.0.1") -> str:
        return f"postgresql://{USER}@{host}:{self.port}/{DATABASE}?sslmode=verify-full&sslrootcert={ca}"


@pytest.fixture(scope="module")
def tls_server() -> Iterator[TlsServer]:
    folder = Path(tempfile.mkdtemp(prefix="hookline-pg-tls-"))
    folder.chmod(0o755)
    data = folder / "postgres"
    # In the data folder: handed over to the server's account with it (the key must be its own).
    files = PrivateCA(data / "tls").server(names=("localhost",), addresses=("127.0.0.1",))
    other = PrivateCA(folder / "other", name="stranger")
    # Also on 127.0.0.2 (loopback too), an address the certificate does not name.
    settings = (
        "listen_addresses=127.0.0.1,127.0.0.2",
        "ssl=on",
        f"ssl_cert_file={files.cert}",
        f"ssl_key_file={files.key}",
    )
    server = LocalPostgres(data, fast=True, settings=settings)
    try:
        server.start()
        yield TlsServer(server.port, data / "tls" / "hookline-test-ca.pem", other.cert)
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


async def test_every_service_reaches_postgres_over_tls_verified_against_the_private_ca(
    tls_server: TlsServer, amqp_url: str, log_dir: Path, workspace: str
) -> None:
    url = tls_server.url(tls_server.ca)
    async with connect(url) as db:
        await migrate(db)
        await apply_yaml(db, TRIGGERS.format(ws=workspace))
    with delivery_stack(amqp_url, url, log_dir, workers=1) as stack:
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.post(f"{stack.base_url}/hooks/{workspace}/tls", json={"n": 7})
        assert answer.status_code == 202, answer.text
        execution = answer.json()["execution_id"]
        async with connect(url) as db:
            status = await eventually(lambda: _status(db, execution), timeout=30)
            # Every connection of the ingress, the dispatcher and the worker is encrypted.
            sessions = await db.fetch(
                "select a.application_name, s.ssl from pg_stat_activity a join pg_stat_ssl s using (pid)"
                " where a.datname = $1 and a.backend_type = 'client backend' and a.pid <> pg_backend_pid()",
                DATABASE,
            )
    assert status == "succeeded"
    assert len(sessions) >= 3  # at least a pool connection and a listener per service
    assert {s["ssl"] for s in sessions} == {True}


def test_the_cli_refuses_a_server_its_ca_does_not_vouch_for_in_one_line(tls_server: TlsServer) -> None:
    done = _run("shared.cli", "triggers", "list", url=tls_server.url(tls_server.other_ca))
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(
        "hookline: cannot reach PostgreSQL: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed:"
        " unable to get local issuer certificate"
    ), lines[0]


def test_verify_full_refuses_a_name_the_certificate_does_not_carry(tls_server: TlsServer) -> None:
    # The CA is right, but the certificate names localhost and 127.0.0.1 only.
    url = tls_server.url(tls_server.ca, host="127.0.0.2")
    done = _run("shared.cli", "triggers", "list", url=url)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "hookline: cannot reach PostgreSQL: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed:"
        " IP address mismatch, certificate is not valid for '127.0.0.2'. (_ssl.c:1006)"
    ]


def test_a_ca_file_that_is_not_there_is_named_in_one_line(tls_server: TlsServer) -> None:
    missing = tls_server.ca.parent / "no-such-ca.pem"
    done = _run("shared.cli", "triggers", "list", url=tls_server.url(missing))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"hookline: cannot reach PostgreSQL: sslrootcert file {missing} does not exist"
    ]


def test_a_worker_given_the_wrong_ca_says_why_and_exits_not_ready(
    tls_server: TlsServer, amqp_url: str
) -> None:
    done = _run("worker", url=tls_server.url(tls_server.other_ca), amqp_url=amqp_url)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert (
        "hookline worker: cannot reach PostgreSQL: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify"
        " failed: unable to get local issuer certificate"
    ) in done.stderr


def test_an_ingress_given_the_wrong_ca_says_why_in_one_line_and_exits(tls_server: TlsServer) -> None:
    done = _run("ingress", url=tls_server.url(tls_server.other_ca))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "hookline ingress: cannot reach PostgreSQL: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify"
        " failed: unable to get local issuer certificate (_ssl.c:1006)"
    ]


def _run(
    module: str, *args: str, url: str, amqp_url: str = "amqp://guest:guest@127.0.0.1:1/"
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HOOKLINE_DATABASE_URL": url,
        "HOOKLINE_AMQP_URL": amqp_url,
        "HOOKLINE_LOG_JSON": "true",
    }
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


async def _status(db: Connection, execution: str) -> str | None:
    status = await db.fetchval("select status from executions where id = $1::uuid", execution)
    return str(status) if status in ("succeeded", "failed", "dead") else None
