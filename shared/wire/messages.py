"""Wire types between ingress and worker (msgpack on the broker).

They evolve by adding fields with defaults only, and never forbid unknown fields, so old and
new processes can share a queue during a rolling upgrade.
"""

from __future__ import annotations

import base64
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
    # A schedule's tick (method "SCHEDULE"): its time, ISO 8601 in UTC (`2026-03-29T01:00:00Z`).
    scheduled_at: str | None = None


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
    """The answer to a request-response call, exactly as the caller gets it.

    Built once by the worker (`answer()`), then used unchanged for the live reply, the
    execution's record and an idempotent repeat: the body is bytes with its media type, so
    no hop re-encodes it. `headers` never holds `content-type` (that is `media_type`).
    `body` is what workers before `media_type` existed sent (a value the ingress encoded);
    it is read only when `media_type` is missing (a rolling upgrade, an older record).
    """

    execution_id: str
    status: int
    headers: dict[str, str] = {}
    content: bytes = b""
    media_type: str | None = None
    body: Any = None
    failed: bool = False


_json = msgspec.json.Encoder()


def http_body(headers: dict[str, str], value: Any) -> tuple[dict[str, str], bytes, str]:
    """Headers without `content-type`, the body's bytes and its media type.

    Bytes as they are, text as text, no body for null, anything else as JSON; a
    `content-type` header the workflow set wins over the default for the value's type.
    """
    declared = None
    rest: dict[str, str] = {}
    for name, header in headers.items():
        if name.lower() == "content-type":
            declared = header
        else:
            rest[name] = header
    if isinstance(value, bytes):
        content, default = value, "application/octet-stream"
    elif isinstance(value, str):
        content, default = value.encode(), "text/plain; charset=utf-8"
    elif value is None:
        content, default = b"", "text/plain"
    else:
        content, default = _json.encode(value), "application/json"
    return rest, content, declared or default


def answer(
    execution_id: str, status: int, headers: dict[str, str], value: Any, failed: bool = False
) -> Reply:
    """The Reply for a workflow's answer: `value` encoded once, as `http_body` says."""
    rest, content, media_type = http_body(headers, value)
    return Reply(
        execution_id=execution_id,
        status=status,
        headers=rest,
        content=content,
        media_type=media_type,
        failed=failed,
    )


def sent(reply: Reply) -> Reply:
    """`reply` with its body as bytes and media type (an older worker's `body` encoded now)."""
    if reply.media_type is not None:
        return reply
    return answer(reply.execution_id, reply.status, reply.headers, reply.body, reply.failed)


def answer_view(reply: Reply) -> dict[str, Any]:
    """The answer as an operator reads it (status URL, API, console): the body decoded back
    to JSON or text where its media type says so, else base64 under `body_base64`."""
    reply = sent(reply)
    view: dict[str, Any] = {"execution_id": reply.execution_id, "status": reply.status}
    if reply.headers:
        view["headers"] = reply.headers
    if reply.failed:
        view["failed"] = True
    media_type = (reply.media_type or "").split(";", 1)[0].strip().lower()
    if not reply.content:
        return view
    try:
        if media_type == "application/json" or media_type.endswith("+json"):
            view["body"] = msgspec.json.decode(reply.content)
        elif media_type.startswith("text/") or media_type.endswith("+xml") or media_type == "application/xml":
            view["body"] = reply.content.decode()
        else:
            raise ValueError(media_type)
    except (ValueError, msgspec.DecodeError):
        view["body_base64"] = base64.b64encode(reply.content).decode()
        view["media_type"] = reply.media_type
    return view


invocation_encoder = msgspec.msgpack.Encoder()
invocation_decoder = msgspec.msgpack.Decoder(Invocation)
reply_encoder = invocation_encoder
reply_decoder = msgspec.msgpack.Decoder(Reply)
