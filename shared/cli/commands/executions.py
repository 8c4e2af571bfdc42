"""`hookline executions ...`: the run log."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import Any

import msgspec

from shared.broker.link import connect_once
from shared.cli.commands import runs
from shared.cli.commands.dlq import trigger_path
from shared.cli.commands.output import print_json, print_table, when
from shared.db.executions import get_execution
from shared.db.pool import connect
from shared.db.runlog import STATUSES, RunFilter, list_runs
from shared.ops.replay import publish_invocation, replay_invocation, resume_invocation
from shared.settings import Settings


def register(sub: Any) -> None:
    executions = sub.add_parser("executions", help="the run log").add_subparsers(
        metavar="ACTION", required=True
    )
    p = executions.add_parser("list", help="the run log, newest first (filters combine)")
    p.add_argument("--workspace")
    p.add_argument("--trigger", metavar="W/T", type=trigger_path, help="only this trigger's runs")
    p.add_argument("--status", choices=STATUSES)
    p.add_argument("--since", type=datetime.fromisoformat, help="received at or after (ISO 8601)")
    p.add_argument("--until", type=datetime.fromisoformat, help="received before (ISO 8601)")
    p.add_argument("--cursor", help="the next_cursor of the previous page")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true", help="print JSON (with next_cursor)")
    p.set_defaults(run=runs(_list))
    p = executions.add_parser("show", help="print one execution as JSON")
    p.add_argument("id")
    p.set_defaults(run=runs(_show))
    p = executions.add_parser("replay", help="run an execution's request again, as a new execution")
    p.add_argument("id")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the failed execution itself after its last good step (no effect step repeated)",
    )
    p.set_defaults(run=runs(_replay))


async def _list(settings: Settings, ns: argparse.Namespace) -> int:
    workspace, trigger = ns.trigger or (ns.workspace, None)
    where = RunFilter(workspace, trigger, ns.status, ns.since, ns.until, ns.cursor)
    async with connect(settings.database_url) as connection:
        page = await list_runs(connection, where, max(1, min(ns.limit, 1000)))
    if ns.json:
        print_json(page)
        return 0
    rows = [("ID", "RECEIVED", "TRIGGER", "STATUS", "ATTEMPTS", "MS", "ERROR")]
    for r in page.items:
        duration = f"{r.duration_ms:.1f}" if r.duration_ms is not None else "-"
        error = (r.error or "").replace("\n", " ")[:60]
        trigger_name = f"{r.workspace}/{r.trigger}"
        rows.append((r.id, when(r.received_at), trigger_name, r.status, str(r.attempts), duration, error))
    print_table(rows)
    if page.next_cursor:
        print(f"more: --cursor {page.next_cursor}", file=sys.stderr)
    return 0


async def _show(settings: Settings, ns: argparse.Namespace) -> int:
    async with connect(settings.database_url) as connection:
        execution = await get_execution(connection, ns.id)
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(execution)).decode() + "\n")
    return 0


async def _replay(settings: Settings, ns: argparse.Namespace) -> int:
    async with connect(settings.database_url) as connection:
        invocation, key = await (resume_invocation if ns.resume else replay_invocation)(connection, ns.id)
    async with connect_once(settings.amqp_url, "hookline-replay") as broker:
        await publish_invocation(
            broker, settings.amqp_prefix, invocation, key, settings.publish_timeout, resumed=ns.resume
        )
    print(invocation.id)
    if ns.resume:
        print(f"execution {ns.id} resumes (trigger version {invocation.version})", file=sys.stderr)
        return 0
    print(
        f"execution {invocation.id} replays {ns.id} (trigger version {invocation.version})", file=sys.stderr
    )
    return 0
