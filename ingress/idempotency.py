"""Idempotency keys: a repeat within the trigger's window gets the first call's answer.

Claims live in PostgreSQL, so every ingress process sees them. Only calls that carry a key
pay this round trip. A claim whose publish the broker refused (nothing enqueued) is
released, so the caller's retry runs; a claim whose publish was sent but never confirmed
(`Unconfirmed`: maybe enqueued) is kept as *unconfirmed*, bound to its execution id, and the
retry publishes the call again under that id (the worker claims the run of every keyed
call in the run log, so the two copies run once between them). A claim keeps its call's
fingerprint: the key sent again with another request is refused, never answered with the
first call's result while the second call is dropped.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from typing import Literal, NamedTuple

import asyncpg
import msgspec

from ingress.errors import IdempotencyKeyReused
from shared.db.pool import DB_ERRORS
from shared.errors import DatabaseUnavailable
from shared.wire.messages import Reply

_reply_decoder = msgspec.json.Decoder(Reply)

_CLAIM = """
insert into idempotency_keys (workspace, trigger, key, execution_id, expires_at, accepted, fingerprint)
values ($1, $2, $3, $4, now() + make_interval(secs => $5), false, $6)
on conflict (workspace, trigger, key) do update
    set execution_id = excluded.execution_id, created_at = now(), expires_at = excluded.expires_at,
        accepted = false, unconfirmed = false, fingerprint = excluded.fingerprint
    where idempotency_keys.expires_at < now()
returning execution_id
"""
# Taken by a retry, which publishes the call again under the claim's execution id: pending
# again (a repeat meanwhile waits), no longer unconfirmed (one retry republishes at a time).
_TAKE_OVER = """
update idempotency_keys set created_at = now(), unconfirmed = false
where workspace = $1 and trigger = $2 and key = $3 and execution_id = $4 and not accepted
    and (unconfirmed or created_at <= now() - make_interval(secs => $5))
returning execution_id
"""
# What becomes of one claim (the key's, held by this execution id) once its publish ended.
_ACCEPT = """
update idempotency_keys set accepted = true
where workspace = $1 and trigger = $2 and key = $3 and execution_id = $4
"""
_UNCONFIRMED = """
update idempotency_keys set unconfirmed = true
where workspace = $1 and trigger = $2 and key = $3 and execution_id = $4 and not accepted
"""
_RELEASE = """
delete from idempotency_keys
where workspace = $1 and trigger = $2 and key = $3 and execution_id = $4
"""
_FIRST = """
select execution_id, accepted, unconfirmed, fingerprint,
    extract(epoch from now() - created_at)::float8 as age
from idempotency_keys where workspace = $1 and trigger = $2 and key = $3
"""


class Claimed(NamedTuple):
    """What `IdempotencyStore.claim` found for a call's key.

    `new`: the key is this call's, under its own execution id. `accepted`: a first call with
    this key was confirmed; answer as a repeat of `execution_id`. `unconfirmed`: a first
    call's outcome is unknown (its publish was not confirmed, or its process died around
    it); publish this call again under `execution_id`, which runs once whichever copy lands.
    """

    state: Literal["new", "accepted", "unconfirmed"]
    execution_id: str


def fingerprint(method: str, query: bytes, body: bytes) -> bytes:
    """What makes two calls the same call: SHA-256 of the method, the query and the body."""
    digest = hashlib.sha256(method.encode())
    for part in (query, body):
        digest.update(len(part).to_bytes(8, "big"))  # lengths first: parts cannot run together
        digest.update(part)
    return digest.digest()


class IdempotencyStore:
    """Claims (workspace, trigger, key) for an execution id.

    `settle_within`: seconds after which a claim that was neither accepted nor released is
    taken over by the next call with its key (its process died around the publish).
    """

    def __init__(self, pool: asyncpg.Pool, settle_within: float = 11.0) -> None:
        self._pool = pool
        self._settle_within = settle_within

    async def claim(
        self, workspace: str, trigger: str, key: str, execution_id: str, window: float, call: bytes
    ) -> Claimed:
        """Claim the key for `execution_id`, or say what the first call with it became.

        A first call still being published is waited for: accepted, its id is the answer;
        released (the broker refused it), this call claims the key in its place;
        unconfirmed, this call takes the claim over to publish again under the first id.
        `call` is the call's `fingerprint`: IdempotencyKeyReused when the first call's
        differs (so a republished call is the first call, byte for byte).
        """
        delay = 0.01
        try:
            while True:
                async with self._pool.acquire() as connection:
                    claimed = await connection.fetchval(
                        _CLAIM, workspace, trigger, key, uuid.UUID(execution_id), window, call
                    )
                    if claimed is not None:
                        return Claimed("new", execution_id)
                    first = await connection.fetchrow(_FIRST, workspace, trigger, key)
                    if first is not None and first["fingerprint"] not in (None, call):
                        raise IdempotencyKeyReused(
                            "this idempotency key was used for another request (method, query or body) "
                            "within the window; use a new key for a new request"
                        )
                    if (
                        first is not None
                        and not first["accepted"]
                        and (first["unconfirmed"] or first["age"] >= self._settle_within)
                    ):
                        # Unconfirmed, or neither accepted nor released (its process died
                        # around the publish): whether the broker took it is unknown. This
                        # call takes the claim over and publishes the call again under the
                        # same id (never a 202 for a call that may not exist; the worker
                        # runs the id once).
                        taken = await connection.fetchval(
                            _TAKE_OVER, workspace, trigger, key, first["execution_id"], self._settle_within
                        )
                        if taken is not None:
                            return Claimed("unconfirmed", str(taken))
                        continue
                if first is not None and first["accepted"]:
                    return Claimed("accepted", str(first["execution_id"]))
                if first is not None:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.2)
        except DB_ERRORS:
            raise DatabaseUnavailable("idempotency keys cannot be checked right now") from None

    async def accept(self, workspace: str, trigger: str, key: str, execution_id: str) -> None:
        """Mark a claim's call as confirmed by the broker (repeats may now be answered)."""
        # Should this fail, repeats take it as accepted once `settle_within` has passed.
        await self._on_claim(_ACCEPT, workspace, trigger, key, execution_id)

    async def unconfirmed(self, workspace: str, trigger: str, key: str, execution_id: str) -> None:
        """Keep a claim whose call was sent but not confirmed (maybe enqueued) for its retry."""
        # Should this fail, a retry takes the pending claim over once `settle_within` has passed.
        await self._on_claim(_UNCONFIRMED, workspace, trigger, key, execution_id)

    async def release(self, workspace: str, trigger: str, key: str, execution_id: str) -> None:
        """Forget a claim whose call was not accepted (the broker refused it)."""
        # Should this fail, it expires with its window.
        await self._on_claim(_RELEASE, workspace, trigger, key, execution_id)

    async def _on_claim(
        self, statement: str, workspace: str, trigger: str, key: str, execution_id: str
    ) -> None:
        """Run `statement` on the claim of `key` held by `execution_id`, best effort: the call
        is answered already, and each statement says above what covers it when it fails."""
        try:
            async with self._pool.acquire() as connection:
                await connection.execute(statement, workspace, trigger, key, uuid.UUID(execution_id))
        except DB_ERRORS:
            pass

    async def stored_response(self, execution_id: str, wait: float) -> Reply | None:
        """The first call's recorded answer, waiting up to `wait` seconds for it to exist."""
        deadline = time.monotonic() + wait
        delay = 0.02
        while True:
            async with self._pool.acquire() as connection:
                # As text, decoded straight into the typed Reply (bytes come back as bytes).
                response = await connection.fetchval(
                    "select response::text from executions where id = $1", uuid.UUID(execution_id)
                )
            if response is not None:
                return _reply_decoder.decode(response)
            if time.monotonic() + delay > deadline:
                return None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)

    async def purge_expired(self) -> int:
        """Delete claims past their window; returns how many."""
        async with self._pool.acquire() as connection:
            done = await connection.execute("delete from idempotency_keys where expires_at < now()")
        return int(done.split()[-1])
