"""Workspace secrets (`${secret:NAME}`): set, listed by name, deleted; values encrypted at rest.

AES-256-GCM (the `cryptography` package) with a random 96-bit nonce per value and
`workspace NUL name` as associated data, so a value copied to another row (another
workspace, another name) does not decrypt. The key comes from HOOKLINE_SECRETS_KEY and is
never in the database; a value is never shown again once set, only resolved where used.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
from dataclasses import dataclass
from datetime import datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.db.pool import Connection
from shared.errors import ConfigError, HooklineError, NotFound, SpecError

log = logging.getLogger(__name__)

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_VALUE_BYTES = 65536
_NONCE_BYTES = 12


class SecretInvalid(SpecError):
    """Raised when a secret's name or value cannot be stored (the value is never quoted)."""

    problem_type = "secret-invalid"


class SecretsNotConfigured(HooklineError):
    """Raised when a secret is to be stored but HOOKLINE_SECRETS_KEY is not set."""

    problem_type = "secrets-not-configured"


def new_key() -> str:
    """A fresh HOOKLINE_SECRETS_KEY: 32 random bytes, base64url."""
    return base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256)).decode()


class SecretCipher:
    """Encrypts and decrypts workspace secrets with the deployment's key."""

    def __init__(self, key: str) -> None:
        try:
            raw = base64.urlsafe_b64decode(key.encode())
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise ConfigError("HOOKLINE_SECRETS_KEY: expected 32 bytes, base64url (hookline secrets key)")
        self._aead = AESGCM(raw)

    def encrypt(self, workspace: str, name: str, value: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, value.encode(), _associated(workspace, name))

    def decrypt(self, workspace: str, name: str, sealed: bytes) -> str | None:
        """The value, or None when it does not open with this key for this workspace and name."""
        try:
            nonce, body = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
            return self._aead.decrypt(nonce, body, _associated(workspace, name)).decode()
        except (InvalidTag, ValueError):
            return None


def cipher_from(key: str | None) -> SecretCipher | None:
    """The cipher of a configured key; None when secrets are not configured."""
    return SecretCipher(key) if key else None


def require_cipher(cipher: SecretCipher | None) -> SecretCipher:
    """`cipher`, or SecretsNotConfigured."""
    if cipher is None:
        raise SecretsNotConfigured("secrets are not configured here (HOOKLINE_SECRETS_KEY is not set)")
    return cipher


def _associated(workspace: str, name: str) -> bytes:
    return f"{workspace}\x00{name}".encode()


@dataclass(frozen=True)
class SecretInfo:
    """A secret as listed: its name and dates, never its value."""

    name: str
    created_at: datetime
    updated_at: datetime


def _check(name: str, value: str | None = None) -> None:
    if not NAME.match(name):
        raise SecretInvalid(
            "a secret's name is letters, digits and _ (64 at most), not starting with a digit"
        )
    if value is not None and not value:
        raise SecretInvalid("a secret's value cannot be empty")
    if value is not None and len(value.encode()) > MAX_VALUE_BYTES:
        raise SecretInvalid(f"a secret's value is at most {MAX_VALUE_BYTES} bytes")


async def set_secret(db: Connection, cipher: SecretCipher, workspace: str, name: str, value: str) -> bool:
    """Store (or replace) a secret of `workspace`; True when it is new. NotFound without the workspace."""
    _check(name, value)
    if not await db.fetchval("select 1 from workspaces where name = $1", workspace):
        raise NotFound(f"no workspace {workspace!r}")
    created: bool = await db.fetchval(
        "insert into workspace_secrets (workspace, name, ciphertext) values ($1, $2, $3)"
        " on conflict (workspace, name) do update set ciphertext = excluded.ciphertext, updated_at = now()"
        " returning (xmax = 0)",
        workspace,
        name,
        cipher.encrypt(workspace, name, value),
    )
    return created


async def list_secrets(db: Connection, workspace: str) -> list[SecretInfo]:
    """The names of a workspace's secrets (never their values), by name."""
    rows = await db.fetch(
        "select name, created_at, updated_at from workspace_secrets where workspace = $1 order by name",
        workspace,
    )
    return [SecretInfo(r["name"], r["created_at"], r["updated_at"]) for r in rows]


async def delete_secret(db: Connection, workspace: str, name: str) -> None:
    """Remove a secret; NotFound when the workspace has none of that name."""
    result = await db.execute(
        "delete from workspace_secrets where workspace = $1 and name = $2", workspace, name
    )
    if result.endswith(" 0"):
        raise NotFound(f"workspace {workspace} has no secret {name}")


async def load_secrets(
    db: Connection, cipher: SecretCipher | None, workspace: str | None = None
) -> dict[str, dict[str, str]]:
    """{workspace: {name: value}} of every secret (of one workspace) that opens with the key.

    Without a key there is nothing to resolve: `${secret:NAME}` then fails as a missing secret.
    """
    if cipher is None:
        return {}
    rows = await db.fetch(
        "select workspace, name, ciphertext from workspace_secrets where ($1::text is null or workspace = $1)",
        workspace,
    )
    found: dict[str, dict[str, str]] = {}
    for r in rows:
        value = cipher.decrypt(r["workspace"], r["name"], r["ciphertext"])
        if value is None:
            # Another key (a key rotated without re-setting the secrets), or a copied row.
            log.warning("secret %s/%s does not open with HOOKLINE_SECRETS_KEY", r["workspace"], r["name"])
            continue
        found.setdefault(r["workspace"], {})[r["name"]] = value
    return found
