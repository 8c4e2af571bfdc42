"""`hookline egress show|set`: the networks a workspace's http steps may reach beyond the
public internet. An operator's command (straight to the database): tenants cannot set it.
"""

from __future__ import annotations

import argparse
from typing import Any

from shared.cli.commands import runs
from shared.db.egress import set_workspace_allow, workspace_allow
from shared.db.pool import connect
from shared.settings import Settings


def register(sub: Any) -> None:
    actions = sub.add_parser("egress", help="a workspace's egress allow-list for http steps").add_subparsers(
        metavar="ACTION", required=True
    )
    p = actions.add_parser("show", help="the networks the workspace's http steps may reach")
    p.add_argument("workspace")
    p.set_defaults(run=runs(_show))
    p = actions.add_parser("set", help="replace the list (no entry: remove it)")
    p.add_argument("workspace")
    p.add_argument("entries", nargs="*", metavar="ENTRY", help="10.1.0.0/16, 127.0.0.1:8099, [fd00::1]:443")
    p.set_defaults(run=runs(_set))


async def _show(settings: Settings, ns: argparse.Namespace) -> int:
    async with connect(settings.database_url) as connection:
        entries = await workspace_allow(connection, ns.workspace)
    print("\n".join(str(entry) for entry in entries) or "(public addresses only)")
    return 0


async def _set(settings: Settings, ns: argparse.Namespace) -> int:
    async with connect(settings.database_url) as connection:
        stored = await set_workspace_allow(connection, ns.workspace, ns.entries)
    print("\n".join(stored) or "(public addresses only)")
    return 0
