"""`hookline keys ...`: API keys, shown once at creation and stored as digests only."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from shared.commands import runs
from shared.db.pool import connect
from shared.db.registry import create_key
from shared.settings import Settings


def register(sub: Any) -> None:
    keys = sub.add_parser("keys", help="API keys").add_subparsers(metavar="ACTION", required=True)
    p = keys.add_parser("create", help="create (or store a pasted) key; it is shown once")
    p.add_argument("--workspace", required=True)
    p.add_argument("--trigger", action="append", required=True, help="trigger to attach to (repeatable)")
    p.add_argument("--label", required=True)
    p.add_argument("--key", help="store this key instead of generating one")
    p.set_defaults(run=runs(_create))


async def _create(settings: Settings, ns: argparse.Namespace) -> int:
    async with connect(settings.database_url) as connection:
        created = await create_key(connection, ns.workspace, ns.trigger, ns.label, ns.key)
    print(created.key)
    print(
        f"key {created.id} ({created.prefix}..., label {created.label!r}) attached to "
        f"{', '.join(ns.trigger)}; it will not be shown again",
        file=sys.stderr,
    )
    return 0
