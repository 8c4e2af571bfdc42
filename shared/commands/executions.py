"""`hookline executions ...`: the run log."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec

from shared.broker import connect_once
from shared.commands import runs
from shared.db.executions import get_execution
from shared.db.pool import connect
from shared.replay import publish_invocation, replay_invocation
from shared.settings import Settings


def register(sub: Any) -> None:
    executions = sub.add_parser("executions", help="the run log").add_subparsers(
        metavar="ACTION", required=True
    )
    p = executions.add_parser("show", help="print one execution as JSON")
    p.add_argument("id")
    p.set_defaults(run=runs(_show))
    p = executions.add_parser("replay", help="run an execution's request again, as a new execution")
    p.add_argument("id")
    p.set_defaults(run=runs(_replay))


async def _show(settings: Settings, ns: argparse.Namespace) -> int:
    async with connect(settings.database_url) as connection:
        execution = await get_execution(connection, ns.id)
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(execution)).decode() + "\n")
    return 0


async def _replay(settings: Settings, ns: argparse.Namespace) -> int:
    async with connect(settings.database_url) as connection:
        invocation, key = await replay_invocation(connection, ns.id)
    async with connect_once(settings.amqp_url, "hookline-replay") as broker:
        await publish_invocation(broker, settings.amqp_prefix, invocation, key, settings.publish_timeout)
    print(invocation.id)
    print(
        f"execution {invocation.id} replays {ns.id} (trigger version {invocation.version})", file=sys.stderr
    )
    return 0
