"""`hookline dlq list|replay`: what ran out of attempts, and putting it back."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec

from shared.broker.link import connect_once
from shared.cli.commands import runs
from shared.db.pool import connect
from shared.errors import HooklineError
from shared.ids import is_uuid
from shared.ops.deadletters import DeadLetter, DeadLetters
from shared.settings import Settings


def register(sub: Any) -> None:
    dlq = sub.add_parser("dlq", help="the dead-letter queue").add_subparsers(metavar="ACTION", required=True)
    p = dlq.add_parser("list", help="list dead letters, with their executions' errors")
    p.add_argument("--trigger", metavar="W/T", type=trigger_path, help="only this trigger's")
    p.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    p.set_defaults(run=runs(_list))
    p = dlq.add_parser("replay", help="put dead letters back on their triggers' routes (at least once)")
    p.add_argument("ids", nargs="*", metavar="ID", help="execution ids to replay")
    p.add_argument("--all", action="store_true", help="every dead letter (of --trigger, if given)")
    p.add_argument("--trigger", metavar="W/T", type=trigger_path, help="only this trigger's")
    p.set_defaults(run=runs(_replay))


def trigger_path(text: str) -> tuple[str, str]:
    """`workspace/trigger` -> (workspace, trigger)."""
    workspace, slash, trigger = text.partition("/")
    if not slash or not workspace or not trigger:
        raise argparse.ArgumentTypeError(f"{text!r} is not WORKSPACE/TRIGGER")
    return workspace, trigger


class Row(msgspec.Struct, kw_only=True):
    """One line of `dlq list`."""

    id: str
    workspace: str | None
    trigger: str | None
    reason: str
    queue: str
    died_at: str | None
    status: str | None
    attempts: int | None
    error: str | None


async def _list(settings: Settings, ns: argparse.Namespace) -> int:
    workspace, trigger = ns.trigger or (None, None)
    async with (
        connect_once(settings.amqp_url, "hookline-dlq") as broker,
        connect(settings.database_url) as lock,
        DeadLetters.opened(broker, settings.amqp_prefix, lock) as letters,
    ):
        selected = letters.select(None, workspace, trigger)
    rows = await _rows(settings, selected)
    if ns.json:
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(rows)).decode() + "\n")
        return 0
    print(f"{'ID':36}  {'TRIGGER':30}  {'REASON':14}  {'ATTEMPTS':8}  ERROR")
    for row in rows:
        path = f"{row.workspace}/{row.trigger}" if row.workspace else "(not an invocation)"
        error = (row.error or "").replace("\n", " ")[:80]
        attempts = "" if row.attempts is None else str(row.attempts)
        print(f"{row.id:36}  {path:30}  {row.reason:14}  {attempts:8}  {error}")
    print(f"{len(rows)} dead letter(s)", file=sys.stderr)
    return 0


async def _rows(settings: Settings, letters: list[DeadLetter]) -> list[Row]:
    ids = [x.id for x in letters if is_uuid(x.id)]
    async with connect(settings.database_url) as connection:
        found = {
            str(r["id"]): r
            for r in await connection.fetch(
                "select id, status, attempts, error from executions where id = any($1::uuid[])", ids
            )
        }
    rows = []
    for letter in letters:
        record = found.get(letter.id)
        rows.append(
            Row(
                id=letter.id,
                workspace=letter.workspace,
                trigger=letter.trigger,
                reason=letter.reason,
                queue=letter.queue,
                died_at=letter.died_at.isoformat() if letter.died_at else None,
                status=record["status"] if record else None,
                attempts=record["attempts"] if record else None,
                error=record["error"] if record else None,
            )
        )
    return rows


async def _replay(settings: Settings, ns: argparse.Namespace) -> int:
    if bool(ns.ids) == bool(ns.all):
        raise HooklineError("give execution ids or --all, not both and not neither")
    workspace, trigger = ns.trigger or (None, None)
    wanted = None if ns.all else set(ns.ids)
    failed = 0
    async with (
        connect_once(settings.amqp_url, "hookline-dlq") as broker,
        connect(settings.database_url) as lock,
        DeadLetters.opened(broker, settings.amqp_prefix, lock) as letters,
    ):
        selected = letters.select(wanted, workspace, trigger)
        for letter in selected:
            try:
                await letters.replay(letter)
            except HooklineError as exc:
                failed += 1
                print(f"hookline: {letter.id} not replayed: {exc}", file=sys.stderr)
                continue
            print(f"replayed {letter.id} ({letter.trigger_path})")
    missing = sorted((wanted or set()) - {x.id for x in selected})
    for execution_id in missing:
        print(f"hookline: no dead letter {execution_id}", file=sys.stderr)
    return 1 if failed or missing else 0
