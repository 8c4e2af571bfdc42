"""The hot path: look the trigger up, authenticate, parse, publish with confirm, answer.

No database query and no new connection per call: the registry is in memory and the
broker channel is shared by the process.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
from litestar import Request, Response

from ingress.errors import MethodNotAllowed, ReplyTimeout, TriggerNotFound
from ingress.parse import check_content_type, media_type, parse_body, parse_query, read_body
from ingress.publishing import InvocationPublisher
from ingress.registry import TriggerEntry, TriggerRegistry
from ingress.replies import ReplyWaiter
from shared.expressions import render
from shared.ids import uuid7
from shared.messages import Invocation, Reply, RequestData

_json = msgspec.json.Encoder()
_to_builtins = msgspec.to_builtins


class Hooks:
    """Handles `/hooks/{workspace}/{trigger}` for every trigger in the registry."""

    def __init__(
        self, registry: TriggerRegistry, publisher: InvocationPublisher, waiter: ReplyWaiter
    ) -> None:
        self.registry = registry
        self.publisher = publisher
        self.waiter = waiter

    def lookup(self, workspace: str, trigger: str) -> TriggerEntry:
        entry = self.registry.get(workspace, trigger)
        if entry is None:
            raise TriggerNotFound(f"no trigger {trigger!r} in workspace {workspace!r}")
        return entry

    async def handle(self, request: Request[Any, Any, Any], workspace: str, trigger: str) -> Response[bytes]:
        entry = self.lookup(workspace, trigger)
        if request.method not in entry.methods:
            raise MethodNotAllowed(request.method, entry.allow)
        headers = request.headers
        await entry.auth.before_body(headers)
        rules = entry.spec.body
        body = await read_body(request.stream(), headers.get("content-length"), rules.max_bytes)
        entry.auth.after_body(body, headers, time.time())
        content_type = headers.get("content-type")
        mtype = media_type(content_type)
        check_content_type(rules, mtype, bool(body))
        kind, parsed = parse_body(body, mtype, content_type)
        data = RequestData(
            method=request.method,
            path=request.url.path,
            query=parse_query(
                request.scope["query_string"].decode("latin-1"),
                entry.spec.query,
                entry.spec.extra_query,
            ),
            headers={name: value for name in entry.headers if (value := headers.get(name)) is not None},
            content_type=content_type,
            body_kind=kind,
            body=parsed,
        )
        invocation = Invocation(
            id=str(uuid7()),
            workspace=entry.workspace,
            trigger=entry.name,
            version=entry.version,
            mode=entry.spec.mode,
            received_at=time.time(),
            request=data,
        )
        if entry.spec.mode == "async":
            await self.publisher.publish(invocation, entry.routing_key, want_reply=False)
            return accepted(entry, invocation)
        return await self._request_response(entry, invocation)

    async def _request_response(self, entry: TriggerEntry, invocation: Invocation) -> Response[bytes]:
        future = self.waiter.expect(invocation.id)
        try:
            await self.publisher.publish(invocation, entry.routing_key, want_reply=True)
            reply = await asyncio.wait_for(future, entry.spec.timeout)
        except TimeoutError:
            if entry.spec.on_timeout == "accept":
                return accepted(entry, invocation)
            raise ReplyTimeout(invocation.id, status_url(entry, invocation.id)) from None
        finally:
            future.cancel()
        return reply_response(reply)


def status_url(entry: TriggerEntry, execution_id: str) -> str:
    """Where the caller can read the result later (authenticated like the trigger)."""
    return f"/hooks/{entry.workspace}/{entry.name}/executions/{execution_id}"


def accepted(entry: TriggerEntry, invocation: Invocation) -> Response[bytes]:
    """The async answer: the trigger's configured one, by default 202 and the execution id."""
    response = entry.spec.response
    location = status_url(entry, invocation.id)
    if response.body is None and not response.headers:
        return Response(
            _json.encode({"execution_id": invocation.id, "status_url": location}),
            status_code=response.status,
            media_type="application/json",
            headers={"Location": location},
        )
    data = {
        "execution": {"id": invocation.id, "status_url": location},
        "request": _to_builtins(invocation.request),
    }
    headers = {
        "Location": location,
        **{str(k): str(v) for k, v in render(entry.response_headers, data).items()},
    }
    return body_response(response.status, headers, render(entry.response_body, data))


def reply_response(reply: Reply) -> Response[bytes]:
    """The worker's answer as an HTTP response."""
    return body_response(reply.status, {"X-Execution-Id": reply.execution_id, **reply.headers}, reply.body)


def body_response(status: int, headers: dict[str, str], body: Any) -> Response[bytes]:
    """Bytes as they are, text as text, anything else as JSON (unless a header says otherwise)."""
    declared = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
    headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    if isinstance(body, bytes):
        content, default = body, "application/octet-stream"
    elif isinstance(body, str):
        content, default = body.encode(), "text/plain; charset=utf-8"
    elif body is None and status == 204:
        content, default = b"", "text/plain"
    else:
        content, default = _json.encode(body), "application/json"
    return Response(content, status_code=status, media_type=declared or default, headers=headers)
