"""Private RabbitMQ and PostgreSQL processes: they serve, keep their data, and leave nothing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import asyncpg
import pytest

from shared.devstack.localservers import (
    LocalPostgres,
    LocalRabbitMQ,
    LocalServerError,
    processes_mentioning,
)
from shared.devstack.localservers.rabbitmq import amqp_answers
from tests.servers import amqp_server, postgres_server, traversable_tmp_dir

pytestmark = pytest.mark.integration

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
def folder() -> Iterator[Path]:
    """A folder the rabbitmq and postgres users may enter; nothing may run from it after."""
    with traversable_tmp_dir("hookline-localservers-") as path:
        try:
            yield path
        finally:
            # A failed test must not leave servers behind: they are ours, started below.
            for pid in processes_mentioning(path):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


async def test_postgres_serves_the_hookline_database_and_leaves_nothing_behind(
    folder: Path,
) -> None:
    server = LocalPostgres(folder / "postgres")
    url = await asyncio.to_thread(server.start)
    try:
        assert url == f"postgresql://hookline@127.0.0.1:{server.port}/hookline"
        assert os.getsid(server.pid or 0) == server.pid  # a session of its own: no Ctrl-C
        connection = await asyncpg.connect(url)
        try:
            assert await connection.fetchval("select 1") == 1
            settings = await connection.fetchrow(
                "select current_database(), current_user, current_setting('max_connections'),"
                " current_setting('fsync'), current_setting('listen_addresses'),"
                " current_setting('unix_socket_directories')"
            )
        finally:
            await connection.close()
        assert tuple(settings or ()) == ("hookline", "hookline", "200", "on", "127.0.0.1", "")
    finally:
        await asyncio.to_thread(server.stop)
    assert server.pid is None
    assert processes_mentioning(folder) == []
    server.stop()  # a second stop is harmless


async def test_rabbitmq_keeps_a_persistent_message_across_a_restart(folder: Path) -> None:
    first = LocalRabbitMQ(folder / "rabbitmq")
    url = await asyncio.to_thread(first.start)
    try:
        assert url == f"amqp://guest:guest@127.0.0.1:{first.port}/"
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()  # publisher confirms: stored when this returns
            await channel.declare_queue("kept", durable=True)
            message = aio_pika.Message(b"survives", delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            await channel.default_exchange.publish(message, routing_key="kept")
            # The one plugin the node enables.
            await channel.declare_exchange("spread", "x-consistent-hash", durable=True)
        listed = await asyncio.to_thread(first.ctl, "list_queues", "--quiet", "name", "messages")
        assert listed.split("\n")[-2:] == ["kept\t1", ""]
        # A delivery left unsettled is taken back after 1 h (workers' watchdogs settle sooner).
        timeout = await asyncio.to_thread(first.ctl, "eval", "application:get_env(rabbit, consumer_timeout).")
        assert timeout.strip() == "{ok,3600000}"
    finally:
        await asyncio.to_thread(first.stop)
    assert first.pid is None
    assert processes_mentioning(folder) == []

    # A new instance on the same folder: the recorded port and node, the same data.
    second = LocalRabbitMQ(folder / "rabbitmq")
    assert (second.port, second.node) == (first.port, first.node)
    url = await asyncio.to_thread(second.start)
    try:
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue("kept", durable=True)
            kept = await queue.get(timeout=5)
            assert kept.body == b"survives"
            await kept.ack()
    finally:
        await asyncio.to_thread(second.stop)
    assert processes_mentioning(folder) == []
    second.stop()


def test_a_second_start_reuses_the_recorded_port_or_moves_when_it_is_taken(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = folder / "postgres"
    first = LocalPostgres(data, fast=True)
    first.start()
    first.stop()
    assert LocalPostgres(data).port == first.port

    with socket.socket() as squatter:
        # SO_REUSEADDR as a server sets it: the first run's connections may still sit in
        # TIME_WAIT on that port, and a plain bind would fail on them, not on a listener.
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", first.port))
        squatter.listen()
        moved = LocalPostgres(data, fast=True)
        with caplog.at_level(logging.WARNING, logger="shared.devstack.localservers"):
            moved.start()
        try:
            assert moved.port != first.port
            assert select_one(moved.port) == 1
        finally:
            moved.stop()
        # Warnings only: an earlier test of the session may have left INFO on (the ready lines).
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
            f"PostgreSQL in {data}: port {first.port} is taken, moving to port {moved.port}"
        ]
        # A port asked for explicitly is a promise: no moving then.
        with pytest.raises(LocalServerError) as refused:
            LocalPostgres(data, port=first.port, fast=True).start()
        assert str(refused.value) == f"PostgreSQL in {data}: port {first.port} is in use"

    assert LocalPostgres(data).port == moved.port  # the move was recorded
    assert processes_mentioning(folder) == []


def test_servers_outlive_their_starting_thread_but_die_with_a_killed_parent(
    folder: Path,
) -> None:
    script = textwrap.dedent(
        """
        import sys, threading, time
        from pathlib import Path
        from shared.devstack.localservers import LocalPostgres, LocalRabbitMQ

        folder = Path(sys.argv[1])
        servers = [LocalRabbitMQ(folder / "rabbitmq"), LocalPostgres(folder / "postgres", fast=True)]
        # Started from a thread that ends at once: the servers must not go with it.
        starter = threading.Thread(target=lambda: [server.start() for server in servers])
        starter.start()
        starter.join()
        print(*[server.port for server in servers], flush=True)
        time.sleep(120)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(folder)], stdout=subprocess.PIPE, text=True, cwd=PROJECT
    )
    assert parent.stdout is not None
    try:
        amqp_port, postgres_port = (int(port) for port in parent.stdout.readline().split())
        # The starting thread has ended; a parent-death signal tied to it would be felt now.
        time.sleep(0.5)
        assert amqp_answers(amqp_port)
        assert select_one(postgres_port) == 1
        assert processes_mentioning(folder) != []
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()

    deadline = time.monotonic() + 20
    while processes_mentioning(folder) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_mentioning(folder) == []


async def test_without_a_url_or_docker_the_test_servers_are_private_processes(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HOOKLINE_TEST_AMQP_URL", raising=False)
    monkeypatch.delenv("HOOKLINE_TEST_DATABASE_URL", raising=False)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{folder}/no-docker.sock")
    with amqp_server(folder / "rabbitmq") as amqp_url, postgres_server(folder / "postgres") as url:
        connection = await aio_pika.connect(amqp_url)
        await connection.close()
        database = await asyncpg.connect(url)
        try:
            assert await database.fetchval("select current_setting('fsync')") == "off"
        finally:
            await database.close()
    assert processes_mentioning(folder) == []


def test_a_process_mentions_a_folder_only_as_a_whole_path_component(folder: Path) -> None:
    sibling = folder / "rabbitmq2"
    sibling.mkdir()
    sleeper = subprocess.Popen(["sleep", "30"], cwd=sibling, env={"HOME": str(sibling / "home")})
    try:
        assert processes_mentioning(folder / "rabbitmq") == []
        assert processes_mentioning(sibling) == [sleeper.pid]
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_url_in_the_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOKLINE_TEST_AMQP_URL", "amqp://elsewhere:5672/")
    monkeypatch.setenv("HOOKLINE_TEST_DATABASE_URL", "postgresql://elsewhere/db")
    # Whether the named server answers is tested in test_suite_servers.py; here only which URL wins.
    monkeypatch.setattr("tests.servers._answers_or_exit", lambda *_: None)
    with amqp_server(tmp_path) as amqp_url, postgres_server(tmp_path) as database_url:
        assert (amqp_url, database_url) == ("amqp://elsewhere:5672/", "postgresql://elsewhere/db")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs servers as another user")
def test_a_folder_the_server_user_cannot_enter_is_refused_with_the_fix(folder: Path) -> None:
    closed = folder / "closed"
    closed.mkdir(mode=0o700)
    with pytest.raises(LocalServerError) as refused:
        LocalPostgres(closed / "postgres").start()
    assert str(refused.value) == (
        f"user 'postgres' cannot enter {closed} (mode drwx------, owner root), so it cannot "
        f"reach {closed / 'postgres'}; run `chmod o+x {closed}` or choose a data folder whose "
        f"parents all allow others to enter (mode o+x)"
    )


def select_one(port: int) -> int:
    """`SELECT 1` through asyncpg against a private cluster."""

    async def query() -> int:
        connection = await asyncpg.connect(f"postgresql://hookline@127.0.0.1:{port}/hookline")
        try:
            return int(await connection.fetchval("SELECT 1"))
        finally:
            await connection.close()

    return asyncio.run(query())


def test_a_missing_server_for_a_user_who_is_not_root_names_the_exact_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shared.devstack.localservers import install

    monkeypatch.setattr(install.os, "geteuid", lambda: 1000)
    ran: list[tuple[str, ...]] = []
    monkeypatch.setattr(install, "_apt", lambda *args: ran.append(args) or 0)
    with pytest.raises(LocalServerError) as missing:
        install._found_or_installed("rabbitmq-server", lambda: None)
    assert "sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y rabbitmq-server" in str(missing.value)
    assert ran == [], "nothing is installed for a user who is not root"
