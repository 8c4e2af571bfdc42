"""The hot path: look the trigger up, authenticate, parse, publish with confirm, answer.

No database query and no new connection per call: the registry is in memory and the
broker channel is shared by the process. Only opt-in features pay a database round trip:
an `Idempotency-Key` the caller sends, and a trigger's `rate_limit`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
from litestar import Request, Response

from ingress import metrics
from ingress.errors import (
    AnswerInvalid,
    MethodNotAllowed,
    ReplyLost,
    ReplyTimeout,
    TriggerNotFound,
    TriggerPaused,
    Unauthorized,
)
from ingress.idempotency import IdempotencyStore, fingerprint
from ingress.parse import check_content_type, media_type, parse_body, parse_query, read_body
from ingress.problems import SANDBOX_HEADERS, status_of
from ingress.publishing import InvocationPublisher
from ingress.ratelimit import RateLimiter
from ingress.registry import TriggerEntry, TriggerRegistry
from ingress.rejections import MAX_BODY, Rejection, RejectionLog, redacted_headers
from ingress.replies import ReplyWaiter
from ingress.samples import Samples
from shared.broker.publishers import Unconfirmed
from shared.errors import HooklineError
from shared.expressions import render
from shared.ids import uuid7
from shared.runtime import tracing
from shared.spec.answers import answer_problem
from shared.wire.messages import Invocation, Reply, RequestData, http_body, sent
from shared.wire.ordering import ordering_key_value

_json = msgspec.json.Encoder()
_to_builtins = msgspec.to_builtins
# Refusals that say something about the caller (kept for the operator); 5xx are ours.
_RECORDED = frozenset({400, 401, 405, 413, 415, 422, 429})
# Headers of a workflow's answer that hookline sets itself (the sandbox ones always win).
_OWN_HEADERS = frozenset({"content-type", *(name.lower() for name in SANDBOX_HEADERS)})


class Hooks:
    """Handles `/hooks/{workspace}/{trigger}` for every trigger in the registry."""

    def __init__(
        self,
        registry: TriggerRegistry,
        publisher: InvocationPublisher,
        waiter: ReplyWaiter,
        idempotency: IdempotencyStore,
        limiter: RateLimiter,
        rejections: RejectionLog,
        samples: Samples,
        *,
        max_body_bytes: int = 10_485_760,
        max_json_depth: int = 128,
    ) -> None:
        self.registry = registry
        self.publisher = publisher
        self.waiter = waiter
        self.idempotency = idempotency
        self.limiter = limiter
        self.rejections = rejections
        self.samples = samples
        # The deployment's caps over what a trigger allows (apply refuses more, this is for
        # triggers applied before the cap was lowered).
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth
        self._accepting: set[asyncio.Task[None]] = set()

    def lookup(self, workspace: str, trigger: str) -> TriggerEntry:
        entry = self.registry.get(workspace, trigger)
        if entry is None:
            metrics.REJECTED.labels("trigger-not-found").inc()
            raise TriggerNotFound(f"no trigger {trigger!r} in workspace {workspace!r}")
        return entry

    async def handle(self, request: Request[Any, Any, Any], workspace: str, trigger: str) -> Response[bytes]:
        entry = self.lookup(workspace, trigger)
        call = Call(request)
        # A server span (tracing on; a call to no trigger has none): a scanner's guesses
        # would each be a trace of their own.
        traced = (
            tracing.serving(
                request.method,
                request.headers.get(tracing.TRACEPARENT),
                request.url.path,
                entry.workspace,
                entry.name,
                answer_status,
            )
            if tracing.on
            else tracing.UNTRACED
        )
        with traced as span:
            try:
                response = await self._handle(entry, call)
            except HooklineError as exc:
                self._refused(entry, call, exc)
                raise
            if span is not None and response.status_code is not None:  # always set here
                tracing.answered(span, response.status_code)
        metrics.CALLS.labels(entry.workspace, entry.name, str(response.status_code)).inc()
        return response

    async def _handle(self, entry: TriggerEntry, call: Call) -> Response[bytes]:
        request = call.request
        if request.method not in entry.methods:
            raise MethodNotAllowed(request.method, entry.allow)
        headers = request.headers
        identity = await entry.auth.before_body(headers)
        spec = entry.spec
        if spec.rate_limit is not None:
            client = request.client.host if request.client else "unknown"
            await self.limiter.take(f"{entry.workspace}/{entry.name}/{identity or client}", spec.rate_limit)
        limit = min(spec.body.max_bytes, self.max_body_bytes)
        call.body = await read_body(request.stream(), headers.get("content-length"), limit)
        entry.auth.after_body(call.body, headers, time.time())
        content_type = headers.get("content-type")
        mtype = media_type(content_type)
        check_content_type(spec.body, mtype, bool(call.body))
        kind, parsed = parse_body(call.body, mtype, content_type, self.max_json_depth)
        data = RequestData(
            method=request.method,
            path=request.url.path,
            query=parse_query(request.scope["query_string"].decode("latin-1"), spec.query, spec.extra_query),
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
            mode=spec.mode,
            received_at=time.time(),
            request=data,
            caller=caller_of(identity),
        )
        if entry.paused and spec.mode == "request_response":
            raise TriggerPaused("the trigger is paused; call again once it is resumed")
        key = idempotency_key(entry, headers, identity)
        if key is not None and spec.idempotency is not None:
            window = spec.idempotency.window
            seen = fingerprint(request.method, request.scope["query_string"], call.body)
            claimed = await self.idempotency.claim(
                entry.workspace, entry.name, key, invocation.id, window, seen
            )
            if claimed.state == "accepted":
                return await self._repeat(entry, invocation, claimed.execution_id)
            if claimed.state == "unconfirmed":
                return await self._publish_again(entry, invocation, call, key, claimed.execution_id)
        try:
            if spec.mode == "async":
                await self._publish(invocation, entry, call, want_reply=False, claim=key)
                return accepted(entry, invocation)
            return await self._request_response(entry, invocation, call, claim=key)
        except BaseException as exc:
            # Refused before the broker could take it (refused, an encoding error, the
            # caller gone before the frames went out): the key is free again at once for the
            # caller's retry. Sent but not confirmed: maybe enqueued, so the claim is kept
            # for the retry to publish again under this id. After the confirm the claim has
            # been accepted, and neither matches it.
            if key is not None and not call.published:
                if isinstance(exc, Unconfirmed) or (call.sending and not isinstance(exc, HooklineError)):
                    keep = self.idempotency.unconfirmed(entry.workspace, entry.name, key, invocation.id)
                    await asyncio.shield(keep)
                else:
                    await asyncio.shield(
                        self.idempotency.release(entry.workspace, entry.name, key, invocation.id)
                    )
            raise

    async def _publish_again(
        self, entry: TriggerEntry, invocation: Invocation, call: Call, key: str, first_id: str
    ) -> Response[bytes]:
        """A retry of a keyed call whose outcome is unknown: the same call under the first id.

        The fingerprint proved it the same request; whichever copy a worker meets first
        claims the run (the claim-run mark), so it runs once whether or not the first copy
        was enqueued. Answered as the first call would have been: 202, or its recorded reply.
        """
        again = msgspec.structs.replace(invocation, id=first_id)
        try:
            await self._publish(again, entry, call, want_reply=False, claim=key)
        except BaseException:
            # Still unknown (and the first copy may be queued): keep the claim for a retry.
            keep = self.idempotency.unconfirmed(entry.workspace, entry.name, key, first_id)
            await asyncio.shield(keep)
            raise
        return await self._repeat(entry, again, first_id)

    async def _publish(
        self, invocation: Invocation, entry: TriggerEntry, call: Call, want_reply: bool, claim: str | None
    ) -> None:
        started = time.perf_counter()
        key = ordering_key_value(entry.ordering_key, invocation.request) if entry.ordering_key else None
        call.sending = True
        try:
            await self.publisher.publish(
                invocation,
                entry.routing_key,
                want_reply=want_reply,
                ordering_key=key,
                claim_run=claim is not None,
            )
        except Unconfirmed as unknown:
            # Sent, not confirmed: it may run; the caller learns under which id to look.
            unknown.execution_id = invocation.id
            unknown.status_url = status_url(entry, invocation.id)
            raise
        call.published = True
        metrics.PUBLISH_SECONDS.observe(time.perf_counter() - started)
        self.samples.keep(invocation)
        if claim is not None:
            # Confirmed: a repeat of this key may now be answered with this execution. Not
            # awaited (the caller need not wait for it); a repeat meanwhile waits for it.
            accept = self.idempotency.accept(entry.workspace, entry.name, claim, invocation.id)
            task = asyncio.create_task(accept)
            self._accepting.add(task)
            task.add_done_callback(self._accepting.discard)

    async def _request_response(
        self, entry: TriggerEntry, invocation: Invocation, call: Call, claim: str | None
    ) -> Response[bytes]:
        future = self.waiter.expect(invocation.id)
        try:
            await self._publish(invocation, entry, call, want_reply=True, claim=claim)
            reply = await asyncio.wait_for(future, entry.spec.timeout)
        except TimeoutError:
            if entry.spec.on_timeout == "accept":
                return accepted(entry, invocation)
            raise ReplyTimeout(invocation.id, status_url(entry, invocation.id)) from None
        except ReplyLost as lost:
            # Published but the answer is gone: the run may still go on; say where to look.
            lost.status_url = status_url(entry, invocation.id)
            raise
        finally:
            future.cancel()
        return reply_response(reply)

    async def _repeat(self, entry: TriggerEntry, invocation: Invocation, first_id: str) -> Response[bytes]:
        """A repeated key: the first call's answer, and no second run."""
        first = msgspec.structs.replace(invocation, id=first_id)
        if entry.spec.mode == "async":
            return accepted(entry, first)
        stored = await self.idempotency.stored_response(first_id, entry.spec.timeout)
        if stored is None:
            if entry.spec.on_timeout == "accept":
                return accepted(entry, first)
            raise ReplyTimeout(first_id, status_url(entry, first_id))
        return reply_response(stored)

    def _refused(self, entry: TriggerEntry, call: Call, exc: HooklineError) -> None:
        status = status_of(exc)
        metrics.REJECTED.labels(exc.problem_type).inc()
        if status not in _RECORDED:
            return
        request = call.request
        body = call.body if entry.spec.keep_rejected_bodies and call.body is not None else None
        self.rejections.add(
            Rejection(
                workspace=entry.workspace,
                trigger=entry.name,
                at=time.time(),
                status=status,
                problem_type=exc.problem_type,
                reason=exc.reason if isinstance(exc, Unauthorized) else str(exc)[:200],
                method=request.method,
                content_type=request.headers.get("content-type"),
                headers=redacted_headers(request.headers, entry.auth.credential_headers - {"authorization"}),
                body=body[:MAX_BODY] if body is not None else None,
                body_size=len(call.body) if call.body is not None else None,
                hint=exc.hint if isinstance(exc, Unauthorized) else None,
            )
        )


class Call:
    """One call as it goes through the hot path (the body once read)."""

    __slots__ = ("body", "published", "request", "sending")

    def __init__(self, request: Request[Any, Any, Any]) -> None:
        self.request = request
        self.body: bytes | None = None
        self.published = False  # the broker confirmed the invocation
        self.sending = False  # handed to the publisher (from then on, maybe enqueued)


def answer_status(exc: BaseException) -> int | None:
    """The status a call that raised `exc` is answered with (None: the caller is gone)."""
    if isinstance(exc, HooklineError):
        return status_of(exc)
    return 500 if isinstance(exc, Exception) else None


def idempotency_key(entry: TriggerEntry, headers: Any, identity: str | None = None) -> str | None:
    """The caller's idempotency key (`Idempotency-Key`, or `webhook-id` as senders use; a
    preset's delivery id, shared/signatures/presets.py `idempotency_headers`).

    Scoped to the caller's credential where it has one (an API key): two consumers that
    happen to send the same key never see each other's calls or answers.
    """
    key = next((value for name in entry.idempotency_headers if (value := headers.get(name))), None)
    if not key:
        return None
    caller = caller_of(identity)
    return f"{caller}:{key[:200]}" if caller else key[:200]


def caller_of(identity: str | None) -> str | None:
    """Who is calling, as recorded: the API key's digest prefix (or Basic's username).

    Not a secret (a digest), and enough to tell one consumer's calls from another's.
    """
    return identity[:32] if identity else None


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
            headers={"Location": location, **SANDBOX_HEADERS},
        )
    data = {
        "execution": {"id": invocation.id, "status_url": location},
        "request": _to_builtins(invocation.request),
    }
    headers = {
        "Location": location,
        **{str(k): str(v) for k, v in render(entry.response_headers, data).items()},
    }
    body = render(entry.response_body, data)
    problem = answer_problem(response.status, headers, body)  # rendered from the caller's request
    if problem is not None:
        raise AnswerInvalid(problem, invocation.id, location)
    return body_response(response.status, headers, body)


def reply_response(reply: Reply) -> Response[bytes]:
    """The worker's answer as an HTTP response: its bytes and media type as built once."""
    reply = sent(reply)
    return Response(
        reply.content,
        status_code=reply.status,
        media_type=reply.media_type,
        headers=_sandboxed({"X-Execution-Id": reply.execution_id, **reply.headers}),
    )


def body_response(status: int, headers: dict[str, str], body: Any) -> Response[bytes]:
    """A configured answer (`response:` of an async trigger) as an HTTP response.

    The sandbox headers are always hookline's own (ingress/problems.py).
    """
    rest, content, media_type = http_body(headers, body)
    return Response(content, status_code=status, media_type=media_type, headers=_sandboxed(rest))


def _sandboxed(headers: dict[str, str]) -> dict[str, str]:
    """`headers` without a workflow's own values of the sandbox headers, and with hookline's."""
    if not _OWN_HEADERS.isdisjoint(name.lower() for name in headers):
        headers = {k: v for k, v in headers.items() if k.lower() not in _OWN_HEADERS}
    headers.update(SANDBOX_HEADERS)
    return headers
