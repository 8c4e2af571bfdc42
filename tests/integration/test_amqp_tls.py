"""AMQPS: the services reach a private RabbitMQ over TLS, checking its certificate against a
private CA (`?cafile=`), and refuse a broker whose certificate another CA signed, or that
names another host, saying so in one line without the password."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from shared.db.pool import Connection
from shared.devstack.localservers import LocalRabbitMQ
from shared.devstack.localservers.tls import TlsListener
from tests.helpers import apply_yaml, eventually, finished_execution, new_key
from tests.private_ca import PrivateCA
from tests.stack import ROOT, Services, free_port, services

TRIGGERS = """
workspace: {ws}
triggers:
  - name: inbox
    auth: {{type: api_key}}
    workflow: [{{id: got, map: "{{{{ request.body }}}}"}}]
  - name: echo
    auth: {{type: api_key}}
    mode: request_response
    workflow: [{{respond: {{status: 200, body: "{{{{ request.body }}}}"}}}}]
"""

USER = "hookline-tls"
PASSWORD = "tls-Pa55word-never-logged"
WRONG_CA = "the broker's certificate failed verification: self-signed certificate in certificate chain"


@dataclass(frozen=True)
class TlsBroker:
    """A private node with an AMQPS listener, and URLs to it trusting this CA or that one."""

    server: LocalRabbitMQ
    port: int
    cafile: Path
    impostor_cafile: Path

    def url(self, query: str, host: str = "localhost") -> str:
        return f"amqps://{USER}:{PASSWORD}@{host}:{self.port}/{query}"


@pytest.fixture(scope="module")
def tls_broker() -> Iterator[TlsBroker]:
    """A private RabbitMQ whose certificate (for `localhost` only) a CA made here signed."""
    folder = Path(tempfile.mkdtemp(prefix="hookline-amqps-"))
    folder.chmod(0o755)
    pki = folder / "pki"
    authority = PrivateCA(pki, "hookline-test")
    impostor = PrivateCA(pki, "impostor")  # same kind of CA, not the one that signed
    files = authority.server(names=("localhost",), addresses=())
    server = LocalRabbitMQ(
        folder / "rabbitmq", tls=TlsListener(certfile=files.cert, keyfile=files.key, cafile=authority.cert)
    )
    server.start()
    try:
        server.ctl("add_user", USER, PASSWORD)
        server.ctl("set_permissions", "-p", "/", USER, ".*", ".*", ".*")
        port = int(server.tls_url.rsplit(":", 1)[1].rstrip("/"))
        yield TlsBroker(server, port, authority.cert, impostor.cert)
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def hookline(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# The ingress's lines once Litestar has set its own format up: LEVEL - time - logger - file - message.
_TEXT_LINE = re.compile(r"([A-Z]+) - \S+ \S+ - ([\w.]+) - .*? - (.*)")


def logged(line: str) -> tuple[str, str, str]:
    """A service's log line as (level, logger, message), JSON or text."""
    if line.startswith("{"):
        record = json.loads(line)
        return record["level"], record["logger"], record["msg"]
    match = _TEXT_LINE.fullmatch(line)
    return (match[1].lower(), match[2], match[3]) if match else ("", "", line)


def cli_env(amqp_url: str, database_url: str, port: int | None = None) -> dict[str, str]:
    return {
        **os.environ,
        "HOOKLINE_AMQP_URL": amqp_url,
        "HOOKLINE_DATABASE_URL": database_url,
        "HOOKLINE_PORT": str(port or free_port()),
    }


async def test_services_over_amqps_with_the_private_ca_take_calls_and_run_them(
    tls_broker: TlsBroker, database_url: str, db: Connection, workspace: str, log_dir: Path
) -> None:
    prefix = f"amqps-{uuid.uuid4().hex[:6]}"
    (log_dir / prefix).mkdir()
    url = tls_broker.url(f"?cafile={tls_broker.cafile}")
    with services(url, database_url, log_dir / prefix, workers=1, prefix=prefix) as stack:
        await apply_yaml(db, TRIGGERS.format(ws=workspace))
        key = (await new_key(db, workspace, "inbox", "echo")).key
        headers = {"X-API-Key": key}

        async def accepted() -> str | None:
            async with httpx.AsyncClient(timeout=10) as client:
                answer = await client.post(
                    f"{stack.base_url}/hooks/{workspace}/inbox", json={"n": 1}, headers=headers
                )
            return str(answer.json()["execution_id"]) if answer.status_code == 202 else None

        execution = await finished_execution(db, await eventually(accepted, timeout=20), timeout=20)
        assert execution.status == "succeeded"
        async with httpx.AsyncClient(timeout=10) as client:
            echo = await client.post(
                f"{stack.base_url}/hooks/{workspace}/echo", json={"tls": 1}, headers=headers
            )
        assert (echo.status_code, echo.json()) == (200, {"tls": 1})

        # What the broker says of every connection the services opened: TLS, as our user.
        listed = tls_broker.server.ctl(
            "list_connections", "user", "ssl", "client_properties", "--formatter", "json"
        )
        ours = [c for c in json.loads(listed) if c["user"] == USER]
        # client_properties: [name, type, value] triples
        names = sorted({v for c in ours for k, _, v in c["client_properties"] if k == "connection_name"})
        assert names == ["hookline-dispatcher", "hookline-ingress", "hookline-worker"]
        assert all(c["ssl"] is True for c in ours)

        status = hookline(cli_env(url, database_url, stack.port), "status")
        assert status.returncode == 0, status.stdout + status.stderr
        for name in ("ingress", "dispatcher", "worker-1"):
            assert PASSWORD not in stack.log(name)
        assert PASSWORD not in status.stdout + status.stderr


async def test_a_broker_signed_by_another_ca_is_refused_each_retry_in_one_line_and_never_ready(
    tls_broker: TlsBroker, database_url: str, log_dir: Path
) -> None:
    prefix = f"amqps-bad-{uuid.uuid4().hex[:6]}"
    (log_dir / prefix).mkdir()
    url = tls_broker.url(f"?cafile={tls_broker.impostor_cafile}")
    env = {
        **cli_env(url, database_url),
        "HOOKLINE_AMQP_PREFIX": prefix,
        "HOOKLINE_ADMIN_TOKEN": "test-admin-token-0123456789",
        "HOOKLINE_LOG_JSON": "true",
    }
    stack = Services(env, int(env["HOOKLINE_PORT"]), log_dir / prefix)
    try:
        for name in ("dispatcher", "worker-1", "ingress"):
            stack.start(name)

        def refusals(name: str) -> list[tuple[str, str, str]]:
            """(level, logger, message) of each log line that mentions the certificate."""
            lines = [logged(line) for line in stack.log(name).splitlines()]
            return [line for line in lines if "certificate" in line[2]]

        async def retried_twice_each() -> bool:
            counts = {n: len(refusals(n)) for n in ("dispatcher", "worker-1", "ingress")}
            assert min(counts.values()) >= 2, (
                f"refusals logged so far: {counts}\n{stack.log('ingress')[-2000:]}"
            )
            return True

        await eventually(retried_twice_each, timeout=30, every=0.2)

        async def readiness() -> httpx.Response:
            async with httpx.AsyncClient(timeout=5) as client:
                return await client.get(f"{stack.base_url}/readyz")  # serving once it gave up waiting

        ready = await eventually(readiness, timeout=20, every=0.2)
        assert ready.status_code == 503
        assert ready.json()["checks"]["broker"] is False
        for name in ("dispatcher", "worker-1", "ingress"):
            log = stack.log(name)
            assert PASSWORD not in log
            assert "error when creating transport" not in log  # aiormq's own line: ours is the one
            for level, logger, message in refusals(name):
                assert (level, logger) == ("warning", "shared.broker.link")
                assert re.fullmatch(
                    rf"broker unreachable \({re.escape(WRONG_CA)}\), retrying in [0-9.]+s", message
                )
            assert stack.processes[name].poll() is None, f"{name} must keep trying, not exit"

        replay = hookline(env, "dlq", "replay", "--all")
        assert (replay.returncode, replay.stdout) == (1, "")
        assert replay.stderr == f"hookline: cannot reach RabbitMQ ({WRONG_CA})\n"
        status = hookline(env, "status")
        assert status.returncode == 1
        assert f"broker: cannot reach RabbitMQ ({WRONG_CA})" in status.stdout.splitlines()
        assert PASSWORD not in status.stdout + status.stderr
    finally:
        stack.stop_all()


def test_verification_is_on_without_a_cafile_and_checks_the_host_name(
    tls_broker: TlsBroker, database_url: str
) -> None:
    # No cafile: the system's CAs, which never signed the private broker's certificate.
    system = hookline(cli_env(tls_broker.url(""), database_url), "dlq", "replay", "--all")
    assert (system.returncode, system.stderr) == (1, f"hookline: cannot reach RabbitMQ ({WRONG_CA})\n")
    # The right CA, but the certificate names `localhost`, not the address dialled.
    wrong_host = tls_broker.url(f"?cafile={tls_broker.cafile}", host="127.0.0.1")
    refused = hookline(cli_env(wrong_host, database_url), "dlq", "replay", "--all")
    assert (refused.returncode, refused.stderr) == (
        1,
        "hookline: cannot reach RabbitMQ (the broker's certificate failed verification: "
        "IP address mismatch, certificate is not valid for '127.0.0.1'.)\n",
    )


def test_a_url_that_turns_verification_off_stops_the_service_and_the_cli_in_one_line(
    tls_broker: TlsBroker, database_url: str
) -> None:
    env = cli_env(tls_broker.url(f"?cafile={tls_broker.cafile}&no_verify_ssl=1"), database_url)
    refusal = (
        "HOOKLINE_AMQP_URL: no_verify_ssl turns off the check of the broker's certificate, "
        "which hookline refuses; name the CA that signed it with ?cafile=\n"
    )
    ingress = subprocess.run(
        [sys.executable, "-m", "ingress"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (ingress.returncode, ingress.stderr) == (2, f"hookline ingress: {refusal}")
    cli = hookline(env, "status")
    assert (cli.returncode, cli.stdout, cli.stderr) == (1, "", f"hookline: {refusal}")
