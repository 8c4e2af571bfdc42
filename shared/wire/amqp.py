"""AMQP properties of an invocation: as it is first published, and as it travels again.

Every publish of an invocation (the ingress, an operator's replay or resume, a retry into a
delay queue, a paused trigger's call sent on to its hold queue, a dead letter put back)
builds its properties here and goes out through `shared.broker.publishers.ConfirmedPublisher`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiormq

from shared.wire import topology

INVOCATION_CONTENT_TYPE = "application/msgpack"
INVOCATION_TYPE = "hookline.invocation"
_PERSISTENT = 2  # delivery_mode: written to disk (quorum queues keep everything anyway)
_Properties = aiormq.spec.Basic.Properties

# Headers the broker adds as a message is dead-lettered or redelivered. A message published
# again (a retry, a replay) starts without them: x-death would otherwise grow with every trip.
BROKER_HEADERS = frozenset(
    {
        "x-death",
        "x-delivery-count",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
    }
)


def invocation_properties(
    invocation_id: str,
    *,
    reply_to: str | None = None,
    ordering_key: str | None = None,
    replayed: bool = False,
    traceparent: str | None = None,
    claim_run: bool = False,
) -> aiormq.spec.Basic.Properties:
    """A new invocation's properties: persistent, its id; `reply_to` where a waiting caller's
    answer goes (correlated by the id); `ordering_key` for a keyed ordered trigger's
    consistent-hash exchange; `replayed`, put back by an operator (the worker counts on from
    the record); `traceparent`, the publish's trace context (tracing on); `claim_run`, it may be
    published twice under its id (a keyed call): its worker claims the run first."""
    headers: dict[str, Any] | None = None
    if ordering_key is not None:
        headers = {topology.ORDERING_KEY_HEADER: ordering_key}
    if replayed:
        headers = {**(headers or {}), topology.REPLAYED_HEADER: True}
    if traceparent is not None:
        headers = {**(headers or {}), topology.TRACEPARENT_HEADER: traceparent}
    if claim_run:
        headers = {**(headers or {}), topology.CLAIM_RUN_HEADER: True}
    return _Properties(
        delivery_mode=_PERSISTENT,
        message_id=invocation_id,
        correlation_id=invocation_id if reply_to is not None else None,
        reply_to=reply_to,
        content_type=INVOCATION_CONTENT_TYPE,
        message_type=INVOCATION_TYPE,
        headers=headers,
    )


def republished(
    message_id: str | None,
    headers: Mapping[str, Any] | None,
    *,
    content_type: str | None,
    message_type: str | None,
    **changes: Any,
) -> aiormq.spec.Basic.Properties:
    """An invocation's properties as it is published again: persistent, the same id and
    type, its headers without the broker's bookkeeping and with `changes` (None removes).
    No `reply_to`: only calls no one waits for are published again."""
    return _Properties(
        delivery_mode=_PERSISTENT,
        message_id=message_id,
        content_type=content_type,
        message_type=message_type,
        headers=republished_headers(headers, **changes),
    )


def republished_headers(headers: Mapping[str, Any] | None, **changes: Any) -> dict[str, Any]:
    """`headers` without the broker's bookkeeping, with `changes` applied (None removes)."""
    out = {k: v for k, v in (headers or {}).items() if k not in BROKER_HEADERS}
    for name, value in changes.items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out
