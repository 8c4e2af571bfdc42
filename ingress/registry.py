"""The trigger registry in memory: no database query on the hot path.

Filled from PostgreSQL at start and reloaded on every registry notification (a revoked key
stops working within the notification's round trip, well under a second). HMAC secrets are
resolved here, once per reload: from the workspace's own secrets, and from the environment
as far as the trigger's author may (shared/spec/secrets.py).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from ingress.auth import Authenticator, Misconfigured, Open
from ingress.auth.api_key import ApiKeys
from ingress.auth.basic import BasicCredentials
from ingress.auth.hmac import HmacSignature
from shared.db.registry import RegistryRow, load_registry
from shared.db.secrets import SecretCipher, load_secrets
from shared.expressions import Expr, compile_template
from shared.signatures.presets import idempotency_headers, scheme_from_spec
from shared.signatures.verify import secret_bytes
from shared.spec.model import ApiKeyAuth, Auth, BasicAuth, HmacAuth, OrderingKey, Trigger
from shared.spec.secrets import AuthorKind, MissingSecret, Sources, sources_for
from shared.wire import topology
from shared.wire.ordering import compile_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TriggerEntry:
    """One live trigger, with what the hot path needs already worked out."""

    workspace: str
    name: str
    version: int
    spec: Trigger
    key_digests: frozenset[bytes]
    methods: frozenset[str]
    allow: str
    routing_key: str
    headers: tuple[str, ...]
    response_body: Any
    response_headers: Any
    auth: Authenticator
    ordering_key: Expr | None = None  # a keyed ordered trigger's key, evaluated per call
    paused: bool = False  # async calls are held on the broker; request-response ones refused
    idempotency_headers: tuple[str, ...] = ()  # where the idempotency key is read, first found
    author: AuthorKind = "workspace"  # who wrote this version: what its references may resolve

    @classmethod
    def from_row(cls, row: RegistryRow, sources: Sources) -> TriggerEntry:
        spec = row.spec
        auth = authenticator_for(spec.auth, row.key_digests, sources)
        # Credentials never travel to the workflow, whatever the trigger file lists.
        never = {"authorization", "x-api-key", "cookie", "proxy-authorization", *auth.credential_headers}
        return cls(
            workspace=row.workspace,
            name=row.name,
            version=row.version,
            spec=spec,
            key_digests=row.key_digests,
            methods=frozenset(spec.methods),
            allow=", ".join(spec.methods),
            routing_key=topology.routing_key(row.workspace, row.name),
            headers=tuple(h.lower() for h in spec.headers if h.lower() not in never),
            response_body=compile_template(spec.response.body),
            response_headers=compile_template(spec.response.headers),
            auth=auth,
            ordering_key=compile_key(spec.ordered.key) if isinstance(spec.ordered, OrderingKey) else None,
            paused=row.paused,
            idempotency_headers=idempotency_headers(spec),
            author=row.author,
        )


def authenticator_for(auth: Auth, digests: frozenset[bytes], sources: Sources) -> Authenticator:
    """The verifier a trigger's `auth` asks for, with its secrets resolved from `sources`."""
    if isinstance(auth, ApiKeyAuth):
        return ApiKeys(digests)
    if isinstance(auth, BasicAuth):
        assert auth.password_hash is not None  # sealed at apply
        return BasicCredentials(auth.username, auth.password_hash, auth.realm)
    if isinstance(auth, HmacAuth):
        scheme = scheme_from_spec(auth)
        try:
            secrets = [
                secret_bytes(scheme, sources.resolve(s))
                for s in ([auth.secret] if isinstance(auth.secret, str) else auth.secret)
            ]
        except MissingSecret as exc:
            log.error("hmac secret unavailable: %s", exc)
            return Misconfigured(str(exc))
        return HmacSignature(scheme, secrets)
    return Open()


class TriggerRegistry:
    """(workspace, trigger) -> TriggerEntry, replaced as a whole on every reload."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        environ: Mapping[str, str] | None = None,
        *,
        allowed_env: Mapping[str, frozenset[str]] | None = None,
        cipher: SecretCipher | None = None,
    ) -> None:
        self._pool = pool
        self._environ = os.environ if environ is None else environ
        self._allowed_env = allowed_env or {}
        self._cipher = cipher
        self._entries: dict[tuple[str, str], TriggerEntry] = {}
        self.loaded = False

    def get(self, workspace: str, name: str) -> TriggerEntry | None:
        return self._entries.get((workspace, name))

    async def sources(self, entry: TriggerEntry) -> Sources:
        """What a trigger's references resolve from now (read from the database: not for the hot path)."""
        async with self._pool.acquire() as connection:
            secrets = await load_secrets(connection, self._cipher, entry.workspace)
        return sources_for(
            entry.workspace, entry.author, self._allowed_env, secrets.get(entry.workspace, {}), self._environ
        )

    async def reload(self) -> None:
        """Read every live trigger and swap the table in one assignment."""
        async with self._pool.acquire() as connection:
            rows = await load_registry(connection)
            secrets = await load_secrets(connection, self._cipher)
        entries = {}
        for row in rows:
            sources = sources_for(
                row.workspace, row.author, self._allowed_env, secrets.get(row.workspace, {}), self._environ
            )
            try:
                entries[(row.workspace, row.name)] = TriggerEntry.from_row(row, sources)
            except ValueError:
                # Validated at apply; a stored spec that no longer compiles is skipped, loudly.
                log.exception("trigger %s/%s cannot be loaded", row.workspace, row.name)
        self._entries = entries
        self.loaded = True
        log.debug("registry loaded: %d triggers", len(entries))
