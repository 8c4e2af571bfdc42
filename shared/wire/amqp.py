"""AMQP headers of an invocation as it travels again: what the broker adds, and what a re-publish keeps."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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


def republished_headers(headers: Mapping[str, Any] | None, **changes: Any) -> dict[str, Any]:
    """`headers` without the broker's bookkeeping, with `changes` applied (None removes)."""
    out = {k: v for k, v in (headers or {}).items() if k not in BROKER_HEADERS}
    for name, value in changes.items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out
