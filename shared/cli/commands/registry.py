"""`hookline migrate` and `hookline apply -f FILE`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from shared.cli.commands import runs
from shared.db.migrate import migrate
from shared.db.pool import connect
from shared.db.registry import apply_workspace
from shared.db.secrets import cipher_from
from shared.errors import SpecError
from shared.settings import Settings
from shared.spec.checks import check_caps
from shared.spec.loader import load_file


def register(sub: Any) -> None:
    p = sub.add_parser("migrate", help="create or update the database schema")
    p.set_defaults(run=runs(_migrate))

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
    p.set_defaults(run=runs(_apply))


async def _migrate(settings: Settings, _: argparse.Namespace) -> int:
    async with connect(settings.database_url) as connection:
        applied = await migrate(connection)
    print("\n".join(f"applied {name}" for name in applied) or "schema up to date")
    return 0


async def _apply(settings: Settings, ns: argparse.Namespace) -> int:
    workspaces = []  # all valid, or nothing changes
    for path in ns.files:
        for workspace in load_file(path):
            try:
                check_caps(workspace, settings.max_body_bytes)
            except SpecError as exc:
                raise SpecError(f"{path}: {exc}") from None
            workspaces.append(workspace)
    changes = []
    cipher = cipher_from(settings.secrets_key)  # a Basic password may be a ${secret:NAME}
    async with connect(settings.database_url) as connection, connection.transaction():
        for workspace in workspaces:
            changes.extend(await apply_workspace(connection, workspace, author="operator", cipher=cipher))
    print("\n".join(str(change) for change in changes))  # once committed: a refused apply changed nothing
    return 0
