"""`hookline dlq list|replay`: what ran out of attempts, and putting it back.

Both page over the `dead_letters` table (shared/ops/deadletters.py), a page in memory at a time.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import Any

import msgspec

from shared.broker.link import connect_once
from shared.cli.commands import runs
from shared.db.deadletters import LetterFilter
from shared.db.pool import connect
from shared.errors import HooklineError
from shared.ops import deadletters
from shared.settings import Settings


def register(sub: Any) -> None:
    dlq = sub.add_parser("dlq", help="the dead letters").add_subparsers(metavar="ACTION", required=True)
    p = dlq.add_parser("list", help="list dead letters, newest first, with their executions' errors")
    _filters(p)
    p.add_argument("--limit", type=int, metavar="N", help="at most N letters")
    p.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    p.set_defaults(run=runs(_list))
    p = dlq.add_parser("replay", help="put dead letters back on their triggers' routes (at least once)")
    p.add_argument("ids", nargs="*", metavar="ID", help="execution ids to replay")
    p.add_argument("--all", action="store_true", help="every dead letter matching the filters")
    _filters(p)
    p.set_defaults(run=runs(_replay))


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trigger", metavar="W/T", type=trigger_path, help="only this trigger's")
    p.add_argument("--workspace", metavar="W", help="only this workspace's")
    p.add_argument("--since", type=datetime.fromisoformat, metavar="TIME", help="died at or after (ISO 8601)")
    p.add_argument("--until", type=datetime.fromisoformat, metavar="TIME", help="died before (ISO 8601)")


def trigger_path(text: str) -> tuple[str, str]:
    """`workspace/trigger` -> (workspace, trigger)."""
    workspace, slash, trigger = text.partition("/")
    if not slash or not workspace or not trigger:
        raise argparse.ArgumentTypeError(f"{text!r} is not WORKSPACE/TRIGGER")
    return workspace, trigger


def _where(ns: argparse.Namespace, ids: list[str] | None = None) -> LetterFilter:
    workspace, trigger = ns.trigger or (ns.workspace, None)
    if ns.trigger and ns.workspace and ns.workspace != workspace:
        raise HooklineError("--workspace and --trigger name different workspaces")
    return LetterFilter(workspace, trigger, ns.since, ns.until, ids)


async def _list(settings: Settings, ns: argparse.Namespace) -> int:
    where = _where(ns)
    shown = 0
    encoder = msgspec.json.Encoder()
    if ns.json:
        sys.stdout.write("[")
    else:
        print(f"{'ID':36}  {'TRIGGER':30}  {'REASON':14}  {'ATTEMPTS':8}  ERROR")
    async with connect(settings.database_url) as database:
        async for row in deadletters.every_letter(database, where):
            if ns.limit is not None and shown >= ns.limit:
                break
            if ns.json:
                sys.stdout.write(("," if shown else "") + "\n  " + encoder.encode(row).decode())
            else:
                path = f"{row.workspace}/{row.trigger}" if row.workspace else "(not an invocation)"
                error = (row.error or "").replace("\n", " ")[:80]
                attempts = "" if row.attempts is None else str(row.attempts)
                print(f"{row.id:36}  {path:30}  {row.reason:14}  {attempts:8}  {error}")
            shown += 1
    if ns.json:
        sys.stdout.write("\n]\n" if shown else "]\n")
    else:
        print(f"{shown} dead letter(s)", file=sys.stderr)
    return 0


async def _replay(settings: Settings, ns: argparse.Namespace) -> int:
    if bool(ns.ids) == bool(ns.all):
        raise HooklineError("give execution ids or --all, not both and not neither")
    where = _where(ns, None if ns.all else list(ns.ids))
    async with (
        connect_once(settings.amqp_url, "hookline-dlq") as broker,
        connect(settings.database_url) as database,
    ):
        outcome = await deadletters.replay(
            database, broker, settings.amqp_prefix, where, settings.publish_timeout
        )
    for letter_id, path in outcome.replayed:
        print(f"replayed {letter_id} ({path})")
    for letter_id, error in outcome.failed:
        print(f"hookline: {letter_id} not replayed: {error}", file=sys.stderr)
    missing = sorted(set(ns.ids) - outcome.found)
    for execution_id in missing:
        print(f"hookline: no dead letter {execution_id}", file=sys.stderr)
    return 1 if outcome.failed or missing else 0
