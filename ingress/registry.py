"""The trigger registry in memory: no database query on the hot path.

Filled from PostgreSQL at start and reloaded on every registry notification (a revoked key
stops working within the notification's round trip, well under a second).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import asyncpg

from shared import topology
from shared.db.registry import RegistryRow, load_registry
from shared.expressions import compile_template
from shared.spec.model import Trigger

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

    @classmethod
    def from_row(cls, row: RegistryRow) -> TriggerEntry:
        spec = row.spec
        # Credentials never travel to the workflow, whatever the trigger file lists.
        never = {"authorization", "x-api-key", "cookie", "proxy-authorization"}
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
        )


class TriggerRegistry:
    """(workspace, trigger) -> TriggerEntry, replaced as a whole on every reload."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._entries: dict[tuple[str, str], TriggerEntry] = {}
        self.loaded = False

    def get(self, workspace: str, name: str) -> TriggerEntry | None:
        return self._entries.get((workspace, name))

    async def reload(self) -> None:
        """Read every live trigger and swap the table in one assignment."""
        async with self._pool.acquire() as connection:
            rows = await load_registry(connection)
        entries = {}
        for row in rows:
            try:
                entries[(row.workspace, row.name)] = TriggerEntry.from_row(row)
            except ValueError:
                # Validated at apply; a stored spec that no longer compiles is skipped, loudly.
                log.exception("trigger %s/%s cannot be loaded", row.workspace, row.name)
        self._entries = entries
        self.loaded = True
        log.debug("registry loaded: %d triggers", len(entries))
