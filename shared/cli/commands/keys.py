"""`hookline keys ...`: API keys, shown once at creation and stored as digests only."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import msgspec

from shared.cli.commands import runs
from shared.db import keys
from shared.db.pool import connect
from shared.settings import Settings


def register(sub: Any) -> None:
    actions = sub.add_parser("keys", help="API keys").add_subparsers(metavar="ACTION", required=True)
    p = actions.add_parser("create", help="create (or store a pasted) key; it is shown once")
    p.add_argument("--workspace", required=True)
    p.add_argument("--trigger", action="append", required=True, help="trigger to attach to (repeatable)")
    p.add_argument("--label", required=True)
    p.add_argument("--key", help="store this key instead of generating one")
    p.add_argument("--json", action="store_true", help="print the new key as JSON")
    p.set_defaults(run=runs(_create))

    p = actions.add_parser("list", help="keys of a workspace: label and prefix, never the key")
    p.add_argument("--workspace", required=True)
    p.add_argument("--trigger", help="only keys that open this trigger")
    p.add_argument("--all", action="store_true", help="include revoked keys")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=runs(_list))

    for name, help_text in (
        ("attach", "let a key open more triggers"),
        ("detach", "stop a key opening triggers"),
    ):
        p = actions.add_parser(name, help=help_text)
        p.add_argument("key", help="key id (or the key itself)")
        p.add_argument("--workspace", required=True)
        p.add_argument("--trigger", action="append", required=True, help="trigger (repeatable)")
        p.set_defaults(run=runs(_attach if name == "attach" else _detach))

    p = actions.add_parser("relabel", help="change a key's label")
    p.add_argument("key", help="key id (or the key itself)")
    p.add_argument("--workspace", required=True)
    p.add_argument("--label", required=True)
    p.set_defaults(run=runs(_relabel))

    p = actions.add_parser("revoke", help="revoke a key (refused everywhere within a second)")
    p.add_argument("key", help="key id (or the key itself)")
    p.add_argument("--workspace", required=True)
    p.set_defaults(run=runs(_revoke))


async def _create(settings: Settings, ns: argparse.Namespace) -> int:
    async with connect(settings.database_url) as connection:
        created = await keys.create_key(connection, ns.workspace, ns.trigger, ns.label, ns.key)
    # A pasted key is the caller's own secret: stored (as a digest), never printed back.
    shown = None if ns.key else created.key
    if ns.json:
        fields = {**vars(created), "key": shown, "id": str(created.id), "triggers": ns.trigger}
        print(msgspec.json.encode(fields).decode())
        return 0
    if shown is not None:
        print(shown)
    print(
        f"key {created.id} ({created.prefix}..., label {created.label!r}) attached to "
        f"{', '.join(ns.trigger)}; " + ("stored as given" if shown is None else "it will not be shown again"),
        file=sys.stderr,
    )
    return 0


async def _list(settings: Settings, ns: argparse.Namespace) -> int:
    async with connect(settings.database_url) as connection:
        found = await keys.list_keys(connection, ns.workspace, ns.trigger, ns.all)
    if ns.json:
        print(msgspec.json.encode(found).decode())
        return 0
    rows = [("ID", "PREFIX", "LABEL", "TRIGGERS", "CREATED", "REVOKED")]
    for k in found:
        rows.append(
            (
                str(k.id),
                k.prefix + "...",
                k.label,
                ",".join(k.triggers),
                k.created_at.strftime("%Y-%m-%d %H:%M"),
                k.revoked_at.strftime("%Y-%m-%d %H:%M") if k.revoked_at else "-",
            )
        )
    print_table(rows)
    return 0


def print_table(rows: Sequence[tuple[str, ...]]) -> None:
    """Columns padded to their widest cell."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


async def _attach(settings: Settings, ns: argparse.Namespace) -> int:
    async with connect(settings.database_url) as connection:
        await keys.attach_key(connection, ns.workspace, ns.key, ns.trigger)
    print(f"attached to {', '.join(ns.trigger)}")
    return 0


async def _detach(settings: Settings, ns: argparse.Namespace) -> int:
    async with connect(settings.database_url) as connection:
        await keys.detach_key(connection, ns.workspace, ns.key, ns.trigger)
    print(f"detached from {', '.join(ns.trigger)}")
    return 0


async def _relabel(settings: Settings, ns: argparse.Namespace) -> int:
    async with connect(settings.database_url) as connection:
        await keys.relabel_key(connection, ns.workspace, ns.key, ns.label)
    print(f"relabelled {ns.label!r}")
    return 0


async def _revoke(settings: Settings, ns: argparse.Namespace) -> int:
    async with connect(settings.database_url) as connection:
        await keys.revoke_key(connection, ns.workspace, ns.key)
    print("revoked")
    return 0
