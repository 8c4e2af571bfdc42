"""README claims about the CLI on a real stack: `hookline triggers try` exits 2 for an answer of
400 or more, and `hookline status` shows each process `up`, `not ready` or `silent N s`."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from shared.db.pool import Connection
from tests.helpers import apply_yaml, eventually
from tests.integration.calls import cli
from tests.stack import Services

TRIGGERS = """
workspace: {ws}
triggers:
  - name: found
    auth: {{type: none}}
    mode: request_response
    workflow: [{{respond: {{status: 200, body: {{ok: true}}}}}}]
  - name: missing
    auth: {{type: none}}
    mode: request_response
    workflow: [{{respond: {{status: 404, body: {{error: "no such order"}}}}}}]
  - name: keyed
    auth: {{type: api_key}}
    workflow: [{{id: seen, map: {{n: 1}}}}]
"""


async def _routable(stack: Services, workspace: str, *names: str) -> None:
    """Until every trigger is in the ingress's registry and routed by the dispatcher."""
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        for name in names:

            async def probe(name: str = name) -> int | None:
                answer = await client.put(f"/hooks/{workspace}/{name}")  # refused (405), but routed
                return answer.status_code if answer.status_code not in (404, 503) else None

            await eventually(probe, timeout=20)


async def test_triggers_try_exits_0_below_400_and_2_for_an_answer_of_400_or_more(
    stack: Services, db: Connection, workspace: str
) -> None:
    # README: "it exits 0 for an answer below 400, 2 for one of 400 or more, 1 with one line for bad input".
    await apply_yaml(db, TRIGGERS.format(ws=workspace))
    await _routable(stack, workspace, "found", "missing")
    found = cli(stack, "triggers", "try", f"{workspace}/found", "-d", "{}")
    missing = cli(stack, "triggers", "try", f"{workspace}/missing", "-d", "{}")
    assert found.returncode == 0, found.stdout + found.stderr
    assert missing.returncode == 2, missing.stdout + missing.stderr
    assert re.fullmatch(r"HTTP 404 in [0-9]+\.[0-9] ms", missing.stdout.splitlines()[1])
    assert '{"error":"no such order"}' in missing.stdout.splitlines()
    assert missing.stderr == ""  # an answer, not an error of the command


async def test_status_shows_a_process_not_ready_and_one_silent_with_its_seconds(
    stack: Services, db: Connection
) -> None:
    # README: "every ingress, worker and dispatcher process with its state, `up`, `not ready` or
    # `silent N s`, from the heartbeat each writes to PostgreSQL every 5 s, metrics port or not".
    tag = uuid.uuid4().hex[:8]
    stuck, gone = f"claims-{tag}:1001", f"claims-{tag}:1002"
    await db.execute(
        "insert into service_heartbeats (instance, service, started_at, seen_at, ready, metrics_port)"
        " values ($1, 'worker', now() - interval '1 hour', now(), false, 9464),"
        " ($2, 'dispatcher', now() - interval '1 hour', now() - interval '40 seconds', true, null)",
        stuck,
        gone,
    )
    try:
        done = cli(stack, "status")
    finally:
        await db.execute("delete from service_heartbeats where instance = any($1::text[])", [stuck, gone])
    assert done.returncode == 0, done.stdout + done.stderr
    lines = {line.split()[1]: line.split() for line in done.stdout.splitlines() if "claims-" in line}
    assert lines[stuck][0] == "worker"
    assert lines[stuck][2:4] == ["not", "ready"]
    assert lines[stuck][-1] == "9464"
    assert lines[gone][0] == "dispatcher"
    silent = re.fullmatch(r"silent (\d+) s", " ".join(lines[gone][2:5]))
    assert silent is not None, lines[gone]
    assert 40 <= int(silent[1]) <= 70  # seconds since its last heartbeat
    assert lines[gone][-1] == "-"  # no metrics port


async def test_every_listing_prints_json_with_json_and_a_table_otherwise(
    stack: Services, db: Connection, workspace: str
) -> None:
    # README (CLI): "`--json` on every listing, tables otherwise".
    await apply_yaml(db, TRIGGERS.format(ws=workspace))
    await _routable(stack, workspace, "found")
    assert cli(stack, "triggers", "try", f"{workspace}/found", "-d", "{}").returncode == 0
    made = cli(stack, "keys", "create", "--workspace", workspace, "--trigger", "keyed", "--label", "listed")
    assert made.returncode == 0, made.stderr
    listings = {
        ("triggers", "list", "--workspace", workspace): "found",
        ("triggers", "versions", f"{workspace}/found"): "1",
        ("triggers", "rejected", f"{workspace}/found"): None,
        ("keys", "list", "--workspace", workspace): "listed",
        ("tokens", "list"): None,
        ("executions", "list", "--workspace", workspace): "succeeded",
        ("dlq", "list", "--workspace", workspace): None,
        ("lanes", "list", "--trigger", f"{workspace}/found"): None,
        ("secrets", "list", "--workspace", workspace): None,
    }
    for args, shown in listings.items():
        as_json = cli(stack, *args, "--json")
        table = cli(stack, *args)
        assert (as_json.returncode, table.returncode) == (0, 0), (args, as_json.stderr, table.stderr)
        parsed = json.loads(as_json.stdout)  # one JSON document, nothing else on stdout
        assert isinstance(parsed, (list, dict)), args
        if shown is not None:
            assert shown in json.dumps(parsed), args
            header = table.stdout.splitlines()[0]
            assert header == header.upper(), (args, table.stdout)  # a table: its header row first
            assert any(shown in line for line in table.stdout.splitlines()[1:]), (args, table.stdout)
        with pytest.raises(json.JSONDecodeError):
            json.loads(table.stdout or "not json")


SCHEDULED = """
workspace: {ws}
triggers:
  - name: ticking
    auth: {{type: none}}
    methods: []
    schedule: {{every: 1s, catch_up: none}}
    workflow: [{{id: seen, map: {{at: "{{{{ request.scheduled_at }}}}"}}}}]
"""


def _shown(stack: Services, trigger: str) -> dict[str, Any]:
    """`hookline triggers show W/T`: one JSON object."""
    done = cli(stack, "triggers", "show", trigger)
    assert done.returncode == 0, done.stderr
    shown: dict[str, Any] = json.loads(done.stdout)
    return shown


async def test_triggers_show_gives_a_scheduled_triggers_next_and_last_tick(
    stack: Services, db: Connection, workspace: str
) -> None:
    # README (Schedules): "`hookline triggers show W/T` shows `next_tick` and `last_tick`".
    await apply_yaml(db, SCHEDULED.format(ws=workspace))
    await apply_yaml(db, TRIGGERS.format(ws=workspace))
    try:

        async def ticked() -> dict[str, Any] | None:
            shown = await asyncio.to_thread(_shown, stack, f"{workspace}/ticking")
            return shown if shown.get("last_tick") else None

        shown = await eventually(ticked, timeout=30, every=0.5)
    finally:
        assert cli(stack, "triggers", "delete", f"{workspace}/ticking").returncode == 0
    last = datetime.fromisoformat(str(shown["last_tick"]))
    following = datetime.fromisoformat(str(shown["next_tick"]))
    assert following - last == timedelta(seconds=1)  # every: 1s, counted from the epoch
    assert last.microsecond == 0
    assert shown["tick_error"] is None

    async def ran() -> int | None:
        count = await db.fetchval(
            "select count(*) from executions where workspace = $1 and trigger = 'ticking'", workspace
        )
        return int(count) or None

    await eventually(ran, timeout=20)  # the ticks it shows were published, and run
    plain = _shown(stack, f"{workspace}/found")
    assert "next_tick" not in plain  # only a scheduled trigger has ticks
