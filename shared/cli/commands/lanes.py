"""`hookline lanes list|resume`: ordered lanes stopped on a message (`on_exhausted: stop`).

A stopped lane holds its failed message and runs nothing behind it. `resume --retry` runs
the message again in place (a fresh set of attempts); `resume --skip` dead-letters it
(`hookline dlq replay` can bring it back later, at the end of the lane) and the lane goes on.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec

from shared.cli.commands import runs
from shared.cli.commands.dlq import trigger_path
from shared.db.lanes import list_holds, request_resume
from shared.db.pool import connect
from shared.errors import NotFound
from shared.settings import Settings


def register(sub: Any) -> None:
    lanes = sub.add_parser("lanes", help="stopped ordered lanes").add_subparsers(
        metavar="ACTION", required=True
    )
    p = lanes.add_parser("list", help="list stopped lanes and the message each holds")
    p.add_argument("--trigger", metavar="W/T", type=trigger_path, help="only this trigger's")
    p.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    p.set_defaults(run=runs(_list))
    p = lanes.add_parser("resume", help="let a trigger's stopped lanes go on")
    p.add_argument("trigger", metavar="W/T", type=trigger_path)
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument(
        "--retry", dest="resume", action="store_const", const="retry", help="run the message again"
    )
    how.add_argument(
        "--skip", dest="resume", action="store_const", const="skip", help="dead-letter it, go on"
    )
    p.set_defaults(run=runs(_resume))


async def _list(settings: Settings, ns: argparse.Namespace) -> int:
    workspace, trigger = ns.trigger or (None, None)
    async with connect(settings.database_url) as connection:
        holds = await list_holds(connection, workspace, trigger)
    if ns.json:
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(holds)).decode() + "\n")
        return 0
    for hold in holds:
        asked = f" (asked: {hold.resume})" if hold.resume else ""
        print(
            f"{hold.queue}  holds {hold.execution_id} since {hold.held_at:%Y-%m-%d %H:%M:%S}{asked}: {hold.error}"
        )
    print(f"{len(holds)} stopped lane(s)", file=sys.stderr)
    return 0


async def _resume(settings: Settings, ns: argparse.Namespace) -> int:
    workspace, trigger = ns.trigger
    async with connect(settings.database_url) as connection:
        holds = await request_resume(connection, workspace, trigger, ns.resume)
    if not holds:
        raise NotFound(f"no stopped lane of {workspace}/{trigger}")
    for hold in holds:
        print(f"{hold.queue}: {ns.resume} {hold.execution_id} (the worker holding it acts within a second)")
    return 0
