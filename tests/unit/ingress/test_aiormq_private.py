"""The one private aiormq attribute hookline reads: if an aiormq upgrade renames it, this fails.

`ingress.publishing.Publishing._blocked()` looks up aiormq's name-mangled
`connection.unblocked` event to refuse calls at once while the broker blocks publishers
(a memory or disk alarm). The lookup is guarded, so a rename would silently turn the
check off; this test makes it loud instead.
"""

from __future__ import annotations

import asyncio

import aiormq

from ingress.publishing import UNBLOCKED_EVENT


async def test_aiormq_connections_still_keep_their_unblocked_event_where_the_ingress_reads_it() -> None:
    connection = aiormq.Connection("amqp://guest:guest@127.0.0.1:1/")  # never connected
    event = getattr(connection, UNBLOCKED_EVENT, None)
    assert isinstance(event, asyncio.Event)
    # Not yet connected: no connection.unblocked received, so a publish would wait.
    assert not event.is_set()
