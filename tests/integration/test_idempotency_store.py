"""Idempotency claims on PostgreSQL: a repeat waits for the first call's broker verdict; a
claim whose publish went unconfirmed, or whose process died around its publish, is taken
over by the retry under the same execution id (published again, run once)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from ingress.errors import IdempotencyKeyReused
from ingress.idempotency import Claimed, IdempotencyStore
from shared.db.pool import Connection, create_pool
from shared.errors import DatabaseUnavailable


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[IdempotencyStore]:
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        yield IdempotencyStore(pool, settle_within=11)
    finally:
        await pool.close()


async def test_a_repeat_gets_the_first_id_once_it_is_accepted(
    store: IdempotencyStore, workspace: str
) -> None:
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    assert await store.claim(workspace, "t", "k", first, 3600, b"call") == Claimed("new", first)
    waiting = asyncio.create_task(store.claim(workspace, "t", "k", second, 3600, b"call"))
    await asyncio.sleep(0.3)
    assert not waiting.done(), "answered before the broker confirmed the first call"
    await store.accept(workspace, "t", "k", first)
    assert await asyncio.wait_for(waiting, 5) == Claimed("accepted", first)


async def test_a_repeat_takes_the_key_when_the_first_call_is_released(
    store: IdempotencyStore, workspace: str
) -> None:
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    assert await store.claim(workspace, "t", "k", first, 3600, b"call") == Claimed("new", first)
    waiting = asyncio.create_task(store.claim(workspace, "t", "k", second, 3600, b"call"))
    await asyncio.sleep(0.1)
    await store.release(workspace, "t", "k", first)  # the broker refused it
    # The repeat is published in its place, as a new execution.
    assert await asyncio.wait_for(waiting, 5) == Claimed("new", second)


async def test_a_retry_of_an_unconfirmed_call_is_published_again_under_the_first_id(
    store: IdempotencyStore, workspace: str
) -> None:
    first, second, third = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    assert await store.claim(workspace, "t", "k", first, 3600, b"call") == Claimed("new", first)
    waiting = asyncio.create_task(store.claim(workspace, "t", "k", second, 3600, b"call"))
    await asyncio.sleep(0.1)
    await store.unconfirmed(workspace, "t", "k", first)  # sent, never confirmed: maybe enqueued
    assert await asyncio.wait_for(waiting, 5) == Claimed("unconfirmed", first)
    # While that retry publishes, another repeat waits for its verdict, then is a repeat.
    repeat = asyncio.create_task(store.claim(workspace, "t", "k", third, 3600, b"call"))
    await asyncio.sleep(0.3)
    assert not repeat.done(), "a second retry republished (or was answered) while the first one publishes"
    await store.accept(workspace, "t", "k", first)
    assert await asyncio.wait_for(repeat, 5) == Claimed("accepted", first)


async def test_an_unconfirmed_claim_is_never_released_nor_given_to_another_request(
    store: IdempotencyStore, workspace: str
) -> None:
    first = str(uuid.uuid4())
    await store.claim(workspace, "t", "k", first, 3600, b"call")
    await store.unconfirmed(workspace, "t", "k", first)
    with pytest.raises(IdempotencyKeyReused):
        await store.claim(workspace, "t", "k", str(uuid.uuid4()), 3600, b"another call")
    assert await store.claim(workspace, "t", "k", str(uuid.uuid4()), 3600, b"call") == Claimed(
        "unconfirmed", first
    )


async def test_a_claim_neither_accepted_nor_released_is_taken_over(
    store: IdempotencyStore, db: Connection, workspace: str
) -> None:
    dead = uuid.uuid4()
    await db.execute(
        "insert into idempotency_keys (workspace, trigger, key, execution_id, created_at, expires_at, accepted)"
        " values ($1, 't', 'k', $2, now() - interval '1 minute', now() + interval '1 hour', false)",
        workspace,
        dead,
    )
    mine = str(uuid.uuid4())
    # Its call may have been enqueued: taken over under its id, to be published again.
    taken = await asyncio.wait_for(store.claim(workspace, "t", "k", mine, 3600, b"call"), 5)
    assert taken == Claimed("unconfirmed", str(dead))
    holder = await db.fetchval(
        "select execution_id from idempotency_keys where workspace = $1 and key = 'k'", workspace
    )
    assert holder == dead


async def test_keys_cannot_be_checked_without_the_database(workspace: str) -> None:
    # A pool on a server that is not there: the ingress answers 503, not a 2xx without the check.
    pool = await asyncpg.create_pool("postgresql://nobody@127.0.0.1:9/none", min_size=0, timeout=1)
    try:
        with pytest.raises(DatabaseUnavailable):
            await IdempotencyStore(pool).claim(workspace, "t", "k", str(uuid.uuid4()), 60, b"call")
    finally:
        await pool.close()
