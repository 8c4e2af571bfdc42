"""Where the tests' RabbitMQ and PostgreSQL come from: the environment, Docker, or a process.

In order: a URL in HOOKLINE_TEST_AMQP_URL / HOOKLINE_TEST_DATABASE_URL; else a container
when a Docker engine answers; else a private server process (shared.devstack.localservers) in the
given folder, whose parents the `rabbitmq` and `postgres` users must be able to enter
(`traversable_tmp_dir()` makes one). A server that cannot be had (or a URL that does not
answer) ends the whole run with one line saying which and why: a green `make test` has
always run its integration tests, on CI and on a user's machine alike.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

import pytest

from shared.devstack.localservers import LocalPostgres, LocalRabbitMQ, LocalServerError
from shared.devstack.localservers.rabbitmq import ENABLED_PLUGINS, amqp_answers

RABBITMQ_IMAGE = "rabbitmq:3.10"
POSTGRES_IMAGE = "postgres:15"


@contextlib.contextmanager
def amqp_server(tmp: Path) -> Iterator[str]:
    """Yield an AMQP URL for the session; a server started here is stopped on exit."""
    if url := os.environ.get("HOOKLINE_TEST_AMQP_URL"):
        _answers_or_exit("RabbitMQ", "HOOKLINE_TEST_AMQP_URL", url, 5672)
        yield url
    elif docker_answers():
        with _rabbitmq_container() as url:
            yield url
    else:
        server = LocalRabbitMQ(tmp)
        try:
            url = server.start()
        except LocalServerError as error:
            _unavailable("RabbitMQ", error)
        try:
            yield url
        finally:
            server.stop()


@contextlib.contextmanager
def postgres_server(tmp: Path) -> Iterator[str]:
    """Yield a PostgreSQL URL (a superuser's) for the session; stopped on exit if ours."""
    if url := os.environ.get("HOOKLINE_TEST_DATABASE_URL"):
        _answers_or_exit("PostgreSQL", "HOOKLINE_TEST_DATABASE_URL", url, 5432)
        yield url
    elif docker_answers():
        with _postgres_container() as url:
            yield url
    else:
        # fsync off: the tests' data need not survive a crash of the machine.
        server = LocalPostgres(tmp, fast=True)
        try:
            url = server.start()
        except LocalServerError as error:
            _unavailable("PostgreSQL", error)
        try:
            yield url
        finally:
            server.stop()


@contextlib.contextmanager
def traversable_tmp_dir(prefix: str = "hookline-servers-") -> Iterator[Path]:
    """A fresh folder (mode 755) the server users can enter, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def docker_answers(timeout: float = 2.0) -> bool:
    """True when the Docker engine of DOCKER_HOST (or the local socket) answers a ping.

    A plain HTTP request, so no Docker client library is imported just to find out;
    a TLS-protected tcp:// engine is not probed and counts as absent.
    """
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: str | tuple[str, int] = host.removeprefix("unix://")
        elif host.startswith("tcp://") and os.environ.get("DOCKER_TLS_VERIFY", "") == "":
            name, _, port = host.removeprefix("tcp://").rstrip("/").rpartition(":")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = (name, int(port))
        else:
            return False
        with sock:
            sock.settimeout(timeout)
            sock.connect(address)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            status = sock.recv(64)
    except (OSError, ValueError):
        return False
    return status.startswith(b"HTTP/") and status.split(b" ")[1:2] == [b"200"]


@contextlib.contextmanager
def _rabbitmq_container() -> Iterator[str]:
    from testcontainers.core.container import DockerContainer

    with DockerContainer(RABBITMQ_IMAGE).with_exposed_ports(5672) as container:
        host = container.get_container_host_ip()
        port = int(container.get_exposed_port(5672))
        if not _wait_until(lambda: amqp_answers(port, host=host), timeout=90):
            raise LocalServerError(f"the {RABBITMQ_IMAGE} container did not answer AMQP in 90 s")
        # Enabled on the running node: the image has no setting for it.
        code, output = container.exec(["rabbitmq-plugins", "enable", *ENABLED_PLUGINS])
        if code != 0:
            raise LocalServerError(f"rabbitmq-plugins enable failed in the container: {output!r}")
        yield f"amqp://guest:guest@{host}:{port}/"


@contextlib.contextmanager
def _postgres_container() -> Iterator[str]:
    from testcontainers.community.postgres import PostgresContainer

    container = PostgresContainer(
        POSTGRES_IMAGE, username="hookline", password="hookline", dbname="hookline", driver=None
    )
    with container:
        url: str = container.get_connection_url()
        yield url


def _wait_until(probe: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _unavailable(what: str, error: LocalServerError) -> NoReturn:
    pytest.exit(
        f"the integration tests need {what} and none could be started here: {error} "
        f"(install it, or point HOOKLINE_TEST_{'AMQP' if what == 'RabbitMQ' else 'DATABASE'}_URL at one; "
        "`make unit` runs the tests that need no server)",
        returncode=3,
    )


def _answers_or_exit(what: str, variable: str, url: str, default_port: int) -> None:
    """A server named by URL must at least take TCP connections, or the run ends here."""
    parsed = urlsplit(url)
    # A multi-host URL (h1:5432,h2:5432) is checked at its first host.
    parsed = parsed._replace(netloc=parsed.netloc.split(",")[0])
    host, port = parsed.hostname or "127.0.0.1", parsed.port or default_port
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        pytest.exit(
            f"the integration tests need {what}: {variable} points at {host}:{port}, "
            f"which does not answer ({exc.strerror or type(exc).__name__})",
            returncode=3,
        )
