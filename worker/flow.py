"""Flow control per trigger across every worker: `concurrency` (slots) and `throttle` (tokens).

A delivery of a flow-controlled trigger is admitted before its run: it claims a slot of
its trigger's limit (per key value, if the limit has a key) and then a token of its
throttle, both in PostgreSQL (shared/db/flow.py). One that gets neither waits here, with
its delivery held and unsettled, backing off from 50 ms to 1 s between claims (or, for a
token, exactly as long as the bucket needs to refill): it holds a prefetch slot of its own
trigger's queue only, never a run slot of the worker (`FairSlots` is taken after
admission), so other triggers' deliveries go on. The excess stays in the trigger's queue:
callers are never refused for it. A slot is leased and the lease renewed while the run
lasts, so a killed worker's slots free themselves when their leases run out. A worker that
stops while a delivery waits hands it back unsettled (the channel's close returns it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec

from shared.db import flow
from shared.db.pool import DB_ERRORS
from shared.expressions import Expr
from shared.runtime.cancelling import stop_if_cancelled
from shared.wire.messages import invocation_decoder
from shared.wire.ordering import compile_key, ordering_key_value
from worker.deliveries import Delivery
from worker.holds import Abandoned, pause

log = logging.getLogger(__name__)

FIRST_BACKOFF = 0.05
MAX_BACKOFF = 1.0
CLAIM_TRIES = 3  # claimers racing for one free slot: the losers pick again at once


@dataclass(frozen=True)
class Flow:
    """A trigger's limits, as its current definition says."""

    workspace: str
    trigger: str
    limit: int | None = None  # runs at once (per key value when `key` is set)
    key: Expr | None = None
    burst: int = 1  # throttle bucket size; 0 rate: no throttle
    rate: float = 0.0  # tokens a second

    @property
    def throttled(self) -> bool:
        return self.rate > 0

    def prefetch(self, share: int) -> int:
        """How many of its deliveries a worker holds: no more than can start at once, so few
        wait unsettled here (each poll is a query; a wait past the broker's consumer_timeout
        would hand them back), and the rest wait in the queue."""
        held = share
        if self.limit is not None and self.key is None:
            held = min(held, self.limit)
        if self.throttled:
            held = min(held, max(self.burst, 1))
        return max(1, held)


def flow_from_spec(workspace: str, trigger: str, concurrency: Any, throttle: Any) -> Flow | None:
    """`concurrency` and `throttle` as stored in a trigger's spec -> Flow (None: no limits)."""
    if concurrency is None and throttle is None:
        return None
    limit: int | None = None
    key: Expr | None = None
    if isinstance(concurrency, int):
        limit = concurrency
    elif isinstance(concurrency, dict):
        limit, key = int(concurrency["limit"]), compile_key(str(concurrency["key"]))
    burst, rate = 1, 0.0
    if isinstance(throttle, dict):
        per = float(throttle.get("per", 1.0))
        rate = int(throttle["rate"]) / per
        burst = int(throttle.get("burst") or 1)
    return Flow(workspace, trigger, limit, key, burst, rate)


class FlowGate:
    """Admits deliveries of flow-controlled triggers; renews the leases of admitted runs."""

    def __init__(self, pool: asyncpg.Pool, lease: float, stopping: asyncio.Event) -> None:
        self._pool = pool
        self._lease = lease
        self._stopping = stopping
        self._flows: dict[tuple[str, str], Flow] = {}
        self._held: set[uuid.UUID] = set()  # holders of slots whose runs go on
        self._token_waiters: dict[tuple[str, str], int] = {}  # deliveries here waiting for a token

    def update(self, flows: Mapping[tuple[str, str], Flow]) -> None:
        """The triggers' current limits (the worker reloads them on registry changes)."""
        self._flows = dict(flows)

    @property
    def active(self) -> bool:
        """Whether any trigger has limits (else nothing needs decoding to be admitted)."""
        return bool(self._flows)

    def flow_of(self, message: Delivery, trigger: tuple[str, str] | None) -> tuple[Flow | None, str]:
        """The limits a delivery runs under and its key value ('' without a key).

        `trigger` is known from a trigger queue's name; on the shared work queue (retries)
        the message says whose it is. An undecodable message has none: the runner deals with it.
        """
        if not self._flows:
            return None, ""
        decoded = None
        if trigger is None or (trigger in self._flows and self._flows[trigger].key is not None):
            try:
                decoded = invocation_decoder.decode(message.body)
            except (msgspec.DecodeError, RecursionError):
                return None, ""
            trigger = (decoded.workspace, decoded.trigger)
        found = self._flows.get(trigger)
        if found is None or found.key is None or decoded is None:
            return found, ""
        return found, ordering_key_value(found.key, decoded.request)

    @contextlib.asynccontextmanager
    async def admitted(self, found: Flow, key: str) -> AsyncIterator[None]:
        """Hold a slot (and a token) of `found` for the block; raises Abandoned when stopping.

        Only for a trigger with flow limits: one without them has no gate to pass.
        """
        holder = uuid.uuid4()
        if found.limit is not None:
            await self._wait_for_slot(found, key, holder)
        self._held.add(holder)  # renewed from now on, a wait for a token included
        try:
            if found.throttled:
                await self._wait_for_token(found)
            yield
        finally:
            self._held.discard(holder)
            if found.limit is not None:
                await asyncio.shield(self._release(found, key, holder))

    async def _wait_for_slot(self, found: Flow, key: str, holder: uuid.UUID) -> None:
        backoff = FIRST_BACKOFF
        while True:
            if self._stopping.is_set():
                raise Abandoned
            for _ in range(CLAIM_TRIES):
                if await self._claim(found, key, holder):
                    return
            await pause(self._stopping, backoff * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
            backoff = min(MAX_BACKOFF, backoff * 2)

    async def _claim(self, found: Flow, key: str, holder: uuid.UUID) -> bool:
        assert found.limit is not None
        try:
            async with self._pool.acquire() as connection:
                slot = await flow.claim_slot(
                    connection, found.workspace, found.trigger, key, found.limit, holder, self._lease
                )
        except DB_ERRORS as exc:
            log.warning("flow slot not claimed (%s); waiting", type(exc).__name__)
            return False
        return slot is not None

    async def _wait_for_token(self, found: Flow) -> None:
        trigger = (found.workspace, found.trigger)
        self._token_waiters[trigger] = self._token_waiters.get(trigger, 0) + 1
        try:
            await self._take_token(found, trigger)
        finally:
            self._token_waiters[trigger] -= 1
            if not self._token_waiters[trigger]:
                del self._token_waiters[trigger]

    async def _take_token(self, found: Flow, trigger: tuple[str, str]) -> None:
        while True:
            if self._stopping.is_set():
                raise Abandoned
            try:
                async with self._pool.acquire() as connection:
                    args = (connection, found.workspace, found.trigger, found.burst, found.rate)
                    if await flow.take_token(*args) is not None:
                        return
                    wait = await flow.token_wait(*args)
            except DB_ERRORS as exc:
                log.warning("throttle token not taken (%s); waiting", type(exc).__name__)
                wait = MAX_BACKOFF
            # Spread this worker's waiters over the refills (they all wake for one token otherwise).
            turn = max(wait, self._token_waiters[trigger] / found.rate)
            await pause(self._stopping, min(MAX_BACKOFF, turn * random.uniform(0.5, 1.5)))  # noqa: S311

    async def _release(self, found: Flow, key: str, holder: uuid.UUID) -> None:
        try:
            async with self._pool.acquire() as connection:
                await flow.release_slot(connection, found.workspace, found.trigger, key, holder)
        except DB_ERRORS as exc:
            # The lease runs out by itself.
            log.warning("flow slot not released (%s); its lease expires", type(exc).__name__)

    async def renew_forever(self) -> None:
        """Renew the leases of runs going on, every third of a lease."""
        while True:
            await asyncio.sleep(self._lease / 3)
            if not self._held:
                continue
            try:
                async with self._pool.acquire() as connection:
                    await flow.renew_slots(connection, list(self._held), self._lease)
            except DB_ERRORS as exc:
                log.warning("flow leases not renewed (%s)", type(exc).__name__)
            stop_if_cancelled()  # a stop's cancel that came as an outage, or was lost in one
