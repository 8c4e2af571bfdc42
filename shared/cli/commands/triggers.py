"""`hookline triggers list|show|versions|pause|resume|delete` (and try|rejected|sample, in
trigger_loop.py): triggers as an operator sees them."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from shared.cli.commands import runs, trigger_loop
from shared.cli.commands.dlq import trigger_path
from shared.cli.commands.output import print_json, print_table, when
from shared.db.pauses import pause_trigger, resume_trigger
from shared.db.pool import connect
from shared.db.schedules import schedule_state
from shared.db.triggers import TriggerInfo, delete_trigger, get_trigger, list_triggers, list_versions
from shared.settings import Settings


def register(sub: Any) -> None:
    actions = sub.add_parser(
        "triggers", help="triggers: list, show, pause, resume, try, rejected, sample"
    ).add_subparsers(metavar="ACTION", required=True)
    p = actions.add_parser("list", help="triggers with their URL, mode, auth, ordering and state")
    p.add_argument("--workspace", help="only this workspace's")
    p.add_argument("--deleted", action="store_true", help="include deleted triggers")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=runs(_list))
    for name, help_text, command in (
        ("show", "one trigger and its current definition (JSON)", _show),
        ("versions", "every version of a trigger", _versions),
        ("pause", "hold async calls on the broker, refuse request-response calls (503)", _pause),
        ("resume", "run what was held (in order, for an ordered trigger) and go on", _resume),
        ("delete", "delete a trigger (its runs and versions are kept)", _delete),
    ):
        p = actions.add_parser(name, help=help_text)
        p.add_argument("trigger", metavar="W/T", type=trigger_path)
        if name == "versions":
            p.add_argument("--json", action="store_true", help="print JSON")
        p.set_defaults(run=runs(command))
    trigger_loop.register_actions(actions)


def _url(settings: Settings, info: TriggerInfo) -> str:
    return settings.public_url + info.path


def _ordering(ordered: Any) -> str:
    if isinstance(ordered, dict):
        return f"by {ordered.get('key')} ({ordered.get('partitions', 4)})"
    return "ordered" if ordered else "-"


async def _list(settings: Settings, ns: argparse.Namespace) -> int:
    async with connect(settings.database_url) as connection:
        found = await list_triggers(connection, ns.workspace, ns.deleted)
    if ns.json:
        print_json([{**vars(t), "url": _url(settings, t)} for t in found])
        return 0
    rows = [("TRIGGER", "VERSION", "MODE", "AUTH", "ORDERING", "STATE", "KEYS", "URL")]
    for t in found:
        state = "deleted" if t.deleted_at else "paused" if t.paused else "running"
        rows.append(
            (
                f"{t.workspace}/{t.name}",
                str(t.version),
                t.mode,
                t.auth,
                _ordering(t.ordered),
                state,
                str(len(t.keys)),
                _url(settings, t),
            )
        )
    print_table(rows)
    return 0


async def _show(settings: Settings, ns: argparse.Namespace) -> int:
    workspace, name = ns.trigger
    async with connect(settings.database_url) as connection:
        info, spec = await get_trigger(connection, workspace, name)
        ticks = await schedule_state(connection, workspace, name)
    shown = {**vars(info), "url": _url(settings, info), "spec": spec}
    if ticks is not None:  # a scheduled trigger the leading dispatcher has picked up
        shown |= {"next_tick": ticks.next_at, "last_tick": ticks.last_tick, "tick_error": ticks.last_error}
    print_json(shown)
    return 0


async def _versions(settings: Settings, ns: argparse.Namespace) -> int:
    workspace, name = ns.trigger
    async with connect(settings.database_url) as connection:
        versions = await list_versions(connection, workspace, name)
    if ns.json:
        print_json(versions)
        return 0
    rows = ((str(v.version), when(v.created_at), v.author) for v in versions)
    print_table([("VERSION", "CREATED", "WRITTEN BY"), *rows])
    return 0


async def _pause(settings: Settings, ns: argparse.Namespace) -> int:
    workspace, name = ns.trigger
    async with connect(settings.database_url) as connection:
        await pause_trigger(connection, workspace, name)
    print(f"{workspace}/{name} paused: async calls are held, request-response calls get 503")
    return 0


async def _resume(settings: Settings, ns: argparse.Namespace) -> int:
    workspace, name = ns.trigger
    async with connect(settings.database_url) as connection:
        was_paused = await resume_trigger(connection, workspace, name)
    print(f"{workspace}/{name} resumed" if was_paused else f"{workspace}/{name} was not paused")
    return 0


async def _delete(settings: Settings, ns: argparse.Namespace) -> int:
    workspace, name = ns.trigger
    async with connect(settings.database_url) as connection:
        await delete_trigger(connection, workspace, name)
    print(f"{workspace}/{name} deleted", file=sys.stderr)
    return 0
