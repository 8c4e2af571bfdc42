"""`hookline tokens create|list|revoke`: management API and console tokens.

A token made with `--workspace W` sees and changes only workspace W through the API and
the console; one made with `--admin` sees every workspace, like HOOKLINE_ADMIN_TOKEN.
Shown once at creation; stored as a SHA-256 digest.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from shared.cli.commands import runs
from shared.cli.commands.output import print_json, print_table, when
from shared.db.pool import connect
from shared.db.tokens import create_token, list_tokens, revoke_token
from shared.errors import HooklineError
from shared.settings import Settings


def register(sub: Any) -> None:
    actions = sub.add_parser("tokens", help="management API and console tokens").add_subparsers(
        metavar="ACTION", required=True
    )
    p = actions.add_parser("create", help="create a token (printed once)")
    p.add_argument("--workspace", help="the one workspace the token sees")
    p.add_argument("--admin", action="store_true", help="a token that sees every workspace")
    p.add_argument("--label", required=True)
    p.set_defaults(run=runs(_create))
    p = actions.add_parser("list", help="tokens: label, prefix and workspace, never the token")
    p.add_argument("--all", action="store_true", help="include revoked tokens")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=runs(_list))
    p = actions.add_parser("revoke", help="revoke a token (refused from the next call on)")
    p.add_argument("id")
    p.set_defaults(run=runs(_revoke))


async def _create(settings: Settings, ns: argparse.Namespace) -> int:
    if bool(ns.workspace) == bool(ns.admin):
        raise HooklineError("give --workspace W or --admin")
    async with connect(settings.database_url) as connection:
        created = await create_token(connection, ns.workspace, ns.label)
    print(created.token)
    scope = f"workspace {created.workspace}" if created.workspace else "every workspace"
    print(f"token {created.id} ({created.prefix}..., {scope}); it will not be shown again", file=sys.stderr)
    return 0


async def _list(settings: Settings, ns: argparse.Namespace) -> int:
    async with connect(settings.database_url) as connection:
        found = await list_tokens(connection, ns.all)
    if ns.json:
        print_json(found)
        return 0
    rows = [("ID", "PREFIX", "WORKSPACE", "LABEL", "CREATED", "REVOKED")]
    rows += [
        (str(t.id), t.prefix + "...", t.workspace or "(all)", t.label, when(t.created_at), when(t.revoked_at))
        for t in found
    ]
    print_table(rows)
    return 0


async def _revoke(settings: Settings, ns: argparse.Namespace) -> int:
    async with connect(settings.database_url) as connection:
        await revoke_token(connection, ns.id)
    print("revoked")
    return 0
