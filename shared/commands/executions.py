"""`hookline executions ...`: the run log."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec

from shared.commands import runs
from shared.db.executions import get_execution
from shared.db.pool import connect
from shared.settings import Settings


def register(sub: Any) -> None:
    executions = sub.add_parser("executions", help="the run log").add_subparsers(
        metavar="ACTION", required=True
    )
    p = executions.add_parser("show", help="print one execution as JSON")
    p.add_argument("id")
    p.set_defaults(run=runs(_show))


async def _show(settings: Settings, ns: argparse.Namespace) -> int:
    async with connect(settings.database_url) as connection:
        execution = await get_execution(connection, ns.id)
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(execution)).decode() + "\n")
    return 0
