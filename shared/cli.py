"""The `hookline` command. Services start as processes (`python -m worker`), never imported."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import msgspec

from shared.db.executions import get_execution
from shared.db.migrate import migrate
from shared.db.pool import connect
from shared.db.registry import apply_workspace, create_key
from shared.errors import HooklineError
from shared.settings import Settings, load_settings
from shared.spec.loader import load_file

SERVICES = {"ingress": "ingress", "dispatcher": "dispatcher", "worker": "worker"}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `hookline` console script."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in SERVICES:
        # Replace this process, so signals reach the service directly.
        os.execv(sys.executable, [sys.executable, "-m", SERVICES[args[0]], *args[1:]])  # noqa: S606
    parser = _parser()
    ns = parser.parse_args(args)
    if not hasattr(ns, "run"):
        parser.print_help()
        return 2
    try:
        result: int = ns.run(ns)
    except HooklineError as exc:
        print(f"hookline: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hookline", description="Webhook integration engine.")
    sub = parser.add_subparsers(metavar="COMMAND")

    p = sub.add_parser("up", help="run everything locally (RabbitMQ and PostgreSQL too, if no URLs are set)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--examples", default="examples", help="folder of trigger files to apply")
    p.set_defaults(run=_up)

    for name in SERVICES:
        sub.add_parser(name, help=f"run the {name} service (see `hookline {name} --help`)")

    p = sub.add_parser("migrate", help="create or update the database schema")
    p.set_defaults(run=_sync(_migrate))

    p = sub.add_parser("apply", help="create or update workspaces and triggers from files")
    p.add_argument(
        "-f",
        "--file",
        dest="files",
        action="append",
        required=True,
        type=Path,
        help="YAML or JSON trigger file (repeatable)",
    )
    p.set_defaults(run=_sync(_apply))

    keys = sub.add_parser("keys", help="API keys").add_subparsers(metavar="ACTION")
    p = keys.add_parser("create", help="create (or store a pasted) key; it is shown once")
    p.add_argument("--workspace", required=True)
    p.add_argument("--trigger", action="append", required=True, help="trigger to attach to (repeatable)")
    p.add_argument("--label", required=True)
    p.add_argument("--key", help="store this key instead of generating one")
    p.set_defaults(run=_sync(_keys_create))

    executions = sub.add_parser("executions", help="the run log").add_subparsers(metavar="ACTION")
    p = executions.add_parser("show", help="print one execution as JSON")
    p.add_argument("id")
    p.set_defaults(run=_sync(_executions_show))
    return parser


Command = Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]


def _sync(command: Command) -> Callable[[argparse.Namespace], int]:
    def run(ns: argparse.Namespace) -> int:
        return asyncio.run(command(load_settings(), ns))

    return run


def _up(ns: argparse.Namespace) -> int:
    from shared.stack import run_stack

    return run_stack(workers=ns.workers, examples=Path(ns.examples))


async def _migrate(settings: Settings, _: argparse.Namespace) -> int:
    async with connect(settings.database_url) as connection:
        applied = await migrate(connection)
    print("\n".join(f"applied {name}" for name in applied) or "schema up to date")
    return 0


async def _apply(settings: Settings, ns: argparse.Namespace) -> int:
    workspaces = [ws for path in ns.files for ws in load_file(path)]  # all valid, or nothing changes
    async with connect(settings.database_url) as connection, connection.transaction():
        for workspace in workspaces:
            for change in await apply_workspace(connection, workspace):
                print(change)
    return 0


async def _keys_create(settings: Settings, ns: argparse.Namespace) -> int:
    async with connect(settings.database_url) as connection:
        created = await create_key(connection, ns.workspace, ns.trigger, ns.label, ns.key)
    print(created.key)
    print(
        f"key {created.id} ({created.prefix}..., label {created.label!r}) attached to "
        f"{', '.join(ns.trigger)}; it will not be shown again",
        file=sys.stderr,
    )
    return 0


async def _executions_show(settings: Settings, ns: argparse.Namespace) -> int:
    async with connect(settings.database_url) as connection:
        execution = await get_execution(connection, ns.id)
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(execution)).decode() + "\n")
    return 0
