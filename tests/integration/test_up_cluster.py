"""`hookline up --rabbitmq-nodes 3`: three local RabbitMQ nodes in one cluster, the services
given all three URLs, and `hookline status` listing the nodes and the queues each leads.

PostgreSQL is the session's (a database of this test alone); the cluster is `up`'s own,
under `.hookline/` of a folder the rabbitmq user may enter, and goes with Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from shared.devstack.demo_erp import demo_erp_names, drop_demo_erp
from shared.devstack.localservers import processes_mentioning
from tests.helpers import eventually
from tests.integration.in_process import private_database
from tests.servers import traversable_tmp_dir
from tests.stack import ROOT, free_port

UP = (sys.executable, "-m", "shared.cli", "up")


@pytest.fixture
async def up_database(postgres_server_url: str) -> AsyncIterator[str]:
    async with private_database(postgres_server_url) as url:
        yield url
        await drop_demo_erp(postgres_server_url, **demo_erp_names(url))


@pytest.fixture
def folder() -> Iterator[Path]:
    with traversable_tmp_dir("hookline-up-cluster-") as path:
        yield path


def _banner(log: Path, timeout: float = 150) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if "Press Ctrl-C to stop." in text:
            return text
        time.sleep(0.2)
    raise AssertionError(f"no banner within {timeout} s:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.mark.fault
async def test_up_with_three_rabbitmq_nodes_serves_and_status_shows_each_node_leading_queues(
    up_database: str, folder: Path
) -> None:
    port = free_port()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    env = {
        **base_env,
        "HOOKLINE_DATABASE_URL": up_database,
        "HOOKLINE_PORT": str(port),
        "HOOKLINE_DEMO_TARGET_PORT": str(free_port()),
    }
    log = folder / "up.log"
    with log.open("wb") as out:
        up = subprocess.Popen(
            [*UP, "--rabbitmq-nodes", "3", "--workers", "1", "--examples", str(ROOT / "examples")],
            cwd=folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        banner = _banner(log)
        key_match = re.search(r"API key for workspace demo \(shown once\): (\S+)", banner)
        assert key_match, banner
        stack = json.loads((folder / ".hookline" / "stack.json").read_text())
        urls = stack["amqp_url"].split(",")
        assert len(urls) == 3
        assert len({url.rsplit(":", 1)[1] for url in urls}) == 3, "three nodes, three ports"

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:

            async def routed() -> httpx.Response | None:
                answer = await client.post(
                    "/hooks/demo/echo", json={"a": 1}, headers={"X-API-Key": key_match.group(1)}
                )
                return None if answer.status_code == 503 else answer

            echo = await eventually(routed, timeout=30)
            assert echo.status_code == 200, echo.text

        # A second terminal, no HOOKLINE_* variables: the nodes, and what each leads.
        done = subprocess.run(
            [sys.executable, "-m", "shared.cli", "status", "--json"],
            cwd=folder,
            env=base_env,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        nodes = json.loads(done.stdout)["nodes"]
        assert [n["answers"] for n in nodes] == [True, True, True]
        assert all(n["name"] and n["name"].endswith("@localhost") for n in nodes), nodes
        assert all(":******@" in n["url"] for n in nodes), "no password shown"
        # Leaders are spread: every node leads some of the queues (x-queue-leader-locator).
        assert all(n["leads"] for n in nodes), nodes
        leads = [q for n in nodes for q in n["leads"]]
        assert "hookline.work" in leads
        assert len(leads) == len(set(leads)), "a queue has one leader"

        text = subprocess.run(
            [sys.executable, "-m", "shared.cli", "status"],
            cwd=folder,
            env=base_env,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        ).stdout
        assert "BROKER NODE" in text
        assert text.count("running") >= 3
    finally:
        up.send_signal(signal.SIGINT)
        code = up.wait(timeout=120)
    assert code == 0, log.read_text(errors="replace")[-3000:]
    assert processes_mentioning(folder / ".hookline" / "rabbitmq-cluster") == [], "a node outlived up"
