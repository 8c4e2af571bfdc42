"""`make test` proves the pipeline or says why it could not; `make unit` needs no server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from shared.devstack.localservers.ports import free_port

ROOT = Path(__file__).resolve().parents[3]


def _pytest(*args: str, amqp_port: int, db_port: int) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HOOKLINE_TEST_AMQP_URL": f"amqp://guest:guest@127.0.0.1:{amqp_port}/",
        "HOOKLINE_TEST_DATABASE_URL": f"postgresql://nobody@127.0.0.1:{db_port}/none",
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_integration_tests_without_reachable_servers_fail_the_run_saying_why() -> None:
    amqp_port = free_port()
    db_port = free_port(avoid={amqp_port})
    done = _pytest("tests/integration/test_pipeline.py", amqp_port=amqp_port, db_port=db_port)
    assert done.returncode != 0
    said = done.stdout + done.stderr
    assert (
        f"the integration tests need RabbitMQ: HOOKLINE_TEST_AMQP_URL points at 127.0.0.1:{amqp_port}, "
        "which does not answer"
        in said
        or f"the integration tests need PostgreSQL: HOOKLINE_TEST_DATABASE_URL points at 127.0.0.1:{db_port}, "
        "which does not answer"
        in said
    ), said[-2000:]
    assert " passed" not in said
    assert " skipped" not in said


def test_the_unit_selection_runs_without_any_server() -> None:
    amqp_port = free_port()
    db_port = free_port(avoid={amqp_port})
    # test_step_sql.py needs PostgreSQL: it is left out of the unit run, not failed or skipped.
    done = _pytest(
        "-m",
        "not integration",
        "tests/integration/test_step_sql.py",
        "tests/unit/shared/test_settings.py",
        amqp_port=amqp_port,
        db_port=db_port,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    summary = done.stdout.strip().splitlines()[-1]
    assert " passed" in summary, summary
    assert " deselected" in summary, summary
    assert "skipped" not in summary, summary
