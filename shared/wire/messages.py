"""Wire types between ingress and worker (msgpack on the broker).

They evolve by adding fields with defaults only, and never forbid unknown fields, so old and
new processes can share a queue during a rolling upgrade.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

BodyKind = Literal["empty", "json", "form", "text", "bytes"]


class RequestData(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The parsed call as the workflow sees it under `request`."""

    method: str
    path: str
    query: dict[str, Any] = {}
    headers: dict[str, str] = {}
    content_type: str | None = None
    body_kind: BodyKind = "empty"
    body: Any = None


class Invocation(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One accepted call; its id is the execution id."""

    id: str
    workspace: str
    trigger: str
    version: int
    mode: Literal["async", "request_response"]
    received_at: float
    request: RequestData
    replay_of: str | None = None
    caller: str | None = None  # the API key's digest prefix (see ingress.hooks.caller_of)


class Reply(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The answer a worker sends back for a request-response call."""

    execution_id: str
    status: int
    headers: dict[str, str] = {}
    body: Any = None
    failed: bool = False


invocation_encoder = msgspec.msgpack.Encoder()
invocation_decoder = msgspec.msgpack.Decoder(Invocation)
reply_encoder = invocation_encoder
reply_decoder = msgspec.msgpack.Decoder(Reply)
