"""`hookline secrets set|list|delete --workspace W`: a workspace's `${secret:NAME}` values.

The value is read from stdin (never from the command line, which other users of the machine
can read in the process list), stored encrypted with HOOKLINE_SECRETS_KEY, and never shown
again; `list` prints names only. `hookline secrets key` prints a new key to configure.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from shared.cli.commands import runs
from shared.cli.commands.output import print_json, print_table, when
from shared.db.pool import connect
from shared.db.secrets import SecretCipher, delete_secret, list_secrets, new_key, set_secret
from shared.errors import ConfigError
from shared.settings import Settings


def register(sub: Any) -> None:
    actions = sub.add_parser("secrets", help="a workspace's secrets (${secret:NAME})").add_subparsers(
        metavar="ACTION", required=True
    )
    p = actions.add_parser("set", help="set a secret; its value is read from stdin")
    p.add_argument("--workspace", required=True)
    p.add_argument("name")
    p.set_defaults(run=runs(_set))
    p = actions.add_parser("list", help="a workspace's secrets: names only, never values")
    p.add_argument("--workspace", required=True)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=runs(_list))
    p = actions.add_parser("delete", help="delete a secret")
    p.add_argument("--workspace", required=True)
    p.add_argument("name")
    p.set_defaults(run=runs(_delete))
    p = actions.add_parser("key", help="print a new random HOOKLINE_SECRETS_KEY")
    p.set_defaults(run=lambda _: _key())


def _cipher(settings: Settings) -> SecretCipher:
    if not settings.secrets_key:
        raise ConfigError("HOOKLINE_SECRETS_KEY is not set; make one with `hookline secrets key`")
    return SecretCipher(settings.secrets_key)


async def _set(settings: Settings, ns: argparse.Namespace) -> int:
    cipher = _cipher(settings)
    value = sys.stdin.read().removesuffix("\n")  # `echo value |` adds one; a value rarely ends with it
    async with connect(settings.database_url) as connection:
        created = await set_secret(connection, cipher, ns.workspace, ns.name, value)
    print(f"secret {ns.workspace}/{ns.name}: {'created' if created else 'updated'}")
    return 0


async def _list(settings: Settings, ns: argparse.Namespace) -> int:
    async with connect(settings.database_url) as connection:
        found = await list_secrets(connection, ns.workspace)
    if ns.json:
        print_json(found)
        return 0
    print_table(
        [("NAME", "CREATED", "UPDATED")] + [(s.name, when(s.created_at), when(s.updated_at)) for s in found]
    )
    return 0


async def _delete(settings: Settings, ns: argparse.Namespace) -> int:
    async with connect(settings.database_url) as connection:
        await delete_secret(connection, ns.workspace, ns.name)
    print("deleted")
    return 0


def _key() -> int:
    print(new_key())
    return 0
