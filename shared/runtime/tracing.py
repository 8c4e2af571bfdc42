"""Traces (OpenTelemetry): off unless the standard OTEL_* variables ask for an exporter.

While off, the hot path pays one boolean (`on`) per site: no span, no header read. On, the
ingress continues the caller's W3C `traceparent` (or starts a trace) in a server span, the
publish is a producer span whose `traceparent` travels in the invocation's AMQP headers, the
worker's run is a consumer span continuing it, each step is a span (an http step's a client
span, whose `traceparent` goes to the target). Only `traceparent` is carried: a caller's
`tracestate`, and anything else it sends, goes nowhere; a malformed one is ignored (a new
trace). Spans hold names, ids, methods, hosts and statuses: never a body, a header's value,
a query string or a path a step calls (a webhook URL's path can be its secret).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared.errors import ConfigError
from shared.wire.topology import TRACEPARENT_HEADER

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger(__name__)

# Whether spans are made. Read on the hot path, set only by `start`, `stop` and `installed`.
on = False
# What the hot path uses while off: `with tracing.serving(...) if tracing.on else tracing.UNTRACED`.
UNTRACED: contextlib.nullcontext[None] = contextlib.nullcontext()

TRACEPARENT = TRACEPARENT_HEADER  # the same name over HTTP and in AMQP headers
# Longer is not a traceparent (55 characters in version 00; the propagator's own limit logs
# a warning per call, which a caller could use to flood the log).
_MAX_TRACEPARENT = 512
_EXPORTERS = frozenset({"otlp", "console"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_PROTOCOLS = frozenset({"", "http/protobuf"})
_PROPAGATOR = TraceContextTextMapPropagator()
_NO_TRACER: Tracer = trace.NoOpTracer()
_tracer: Tracer = _NO_TRACER
_provider: TracerProvider | None = None
# The HTTP status an exception is answered with (None: not an answer, e.g. a caller gone).
StatusOf = Callable[[BaseException], int | None]
STOP_SECONDS = 2.0  # what a service's stop waits for its last spans to be exported


def exporters_wanted(environ: Mapping[str, str]) -> list[str]:
    """The exporters the standard variables ask for (none: tracing stays off).

    On when OTEL_TRACES_EXPORTER names one (not `none`), or when an OTLP endpoint is set
    without it; OTEL_SDK_DISABLED=true turns it off whatever else is set. ConfigError for an
    exporter or OTLP protocol this build does not ship (OTLP over HTTP/protobuf only).
    """
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    named = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if named:
        names = [n.strip() for n in named.split(",") if n.strip() and n.strip() != "none"]
    elif environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        names = ["otlp"]
    else:
        names = []
    unknown = sorted(set(names) - _EXPORTERS)
    if unknown:
        raise ConfigError(
            f"OTEL_TRACES_EXPORTER: {', '.join(unknown)} is not available (otlp, console or none)"
        )
    if "otlp" in names:
        protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL", ""
        )
        if protocol.strip().lower() not in _PROTOCOLS:
            raise ConfigError(f"OTLP protocol {protocol.strip()!r} is not available (http/protobuf only)")
    return names


def start(service: str) -> bool:
    """Tracing for this process as the OTEL_* variables say (see `exporters_wanted`); True if on.

    Spans are exported from a thread of the SDK's batch processor: neither starting nor a
    slow or absent receiver holds up the service (spans beyond its queue are dropped).
    The sampler, the OTLP endpoint, headers, timeout and the batch sizes are the SDK's own
    OTEL_* variables; the service name is `hookline-<service>` unless OTEL_SERVICE_NAME (or
    OTEL_RESOURCE_ATTRIBUTES) names it.
    """
    names = exporters_wanted(os.environ)
    if not names:
        return False
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({})
    if str((resource.attributes or {}).get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: f"hookline-{service}"}))
    # No exit handler: `stop` flushes with a deadline, where the SDK's would wait up to 30 s.
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    for name in names:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    _install(provider)
    log.info("tracing on: spans exported (%s)", ", ".join(names))
    return True


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def stop(timeout: float = STOP_SECONDS) -> None:
    """Export what is left, waiting `timeout` seconds at most, and turn tracing off."""
    global _provider
    provider, _provider = _provider, None
    _install(None)
    if provider is None:
        return
    # The SDK's shutdown joins its export thread for up to 30 s: a receiver that does not
    # answer must not hold a service's stop that long, so it gets a daemon thread of its own.
    closing = threading.Thread(target=provider.shutdown, name="tracing-stop", daemon=True)
    closing.start()
    closing.join(timeout)
    if closing.is_alive():
        log.warning("tracing: the last spans were not exported within %g s", timeout)


def _install(provider: TracerProvider | None) -> None:
    global on, _tracer, _provider
    _provider = provider
    _tracer = provider.get_tracer("hookline") if provider is not None else _NO_TRACER
    on = provider is not None


@contextlib.contextmanager
def installed(provider: TracerProvider) -> Iterator[None]:
    """Spans to `provider` for the block (tests, and a process that embeds hookline's
    services), then as before; the provider is not shut down."""
    before = _provider
    _install(provider)
    try:
        yield
    finally:
        _install(before)


def parent_of(traceparent: object) -> Context | None:
    """The context a `traceparent` value continues; None (a new trace) unless it is one.

    Any value at all is safe here: the wrong type, too long, or not the W3C format is None.
    """
    if isinstance(traceparent, bytes):
        traceparent = traceparent.decode("latin-1")
    if not isinstance(traceparent, str) or len(traceparent) > _MAX_TRACEPARENT:
        return None
    context = _PROPAGATOR.extract({TRACEPARENT: traceparent})
    span_context = trace.get_current_span(context).get_span_context()
    return context if span_context.is_valid else None


def traceparent() -> str | None:
    """The current span's `traceparent` (None when there is none)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get(TRACEPARENT)


def trace_id() -> str | None:
    """The current trace's id, 32 hex digits (None outside a trace)."""
    span_context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(span_context.trace_id) if span_context.is_valid else None


def _failed(span: Span, kind: str) -> None:
    span.set_attribute("error.type", kind)
    span.set_status(StatusCode.ERROR)


@contextlib.contextmanager
def _current(span: Span, status_of: StatusOf | None = None) -> Iterator[Span]:
    """`span` current for the block, ended after it; an exception is answered with
    `status_of(exc)` where that says, else marks it failed by its type only (a message may
    quote the data being handled)."""
    with trace.use_span(span, end_on_exit=True, record_exception=False, set_status_on_exception=False):
        try:
            yield span
        except BaseException as exc:
            status = status_of(exc) if status_of is not None else None
            if status is not None:
                answered(span, status)
            else:
                _failed(span, type(exc).__name__)
            raise


def serving(
    method: str,
    caller_traceparent: str | None,
    path: str,
    workspace: str,
    trigger: str,
    status_of: StatusOf,
) -> contextlib.AbstractContextManager[Span]:
    """The ingress's server span of a call, continuing the caller's `traceparent` (if valid);
    an exception is answered with `status_of(exc)`. The path has no query string."""
    span = _tracer.start_span(
        f"{method} /hooks/{{workspace}}/{{trigger}}",
        context=parent_of(caller_traceparent),
        kind=SpanKind.SERVER,
        attributes={
            "http.request.method": method,
            "http.route": "/hooks/{workspace}/{trigger}",
            "url.path": path,
            "hookline.workspace": workspace,
            "hookline.trigger": trigger,
        },
    )
    return _current(span, status_of)


def answered(span: Span, status: int) -> None:
    """The HTTP status of a server span's answer (5xx: failed)."""
    span.set_attribute("http.response.status_code", status)
    if status >= 500:  # the server's failures, as the HTTP conventions say
        _failed(span, str(status))


@contextlib.contextmanager
def publishing(exchange: str, routing_key: str, execution_id: str) -> Iterator[str | None]:
    """The producer span of an invocation's publish; yields the `traceparent` its AMQP
    headers carry (so the worker's run is the publish's child)."""
    trace.get_current_span().set_attribute("hookline.execution_id", execution_id)
    span = _tracer.start_span(
        f"publish {exchange}",
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "send",
            "messaging.destination.name": exchange,
            "messaging.rabbitmq.destination.routing_key": routing_key,
            "messaging.message.id": execution_id,
            "hookline.execution_id": execution_id,
        },
    )
    with _current(span):
        yield traceparent()


def running(
    headers: Mapping[str, Any] | None, queue: str, workspace: str, trigger: str, execution_id: str
) -> contextlib.AbstractContextManager[Span]:
    """The worker's consumer span of a delivery, the child of the `traceparent` in its
    headers (a new trace without one: a replay, a call from an ingress tracing nothing)."""
    span = _tracer.start_span(
        f"run {workspace}/{trigger}",
        context=parent_of(headers.get(TRACEPARENT) if headers else None),
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "process",
            "messaging.destination.name": queue,
            "messaging.message.id": execution_id,
            "hookline.workspace": workspace,
            "hookline.trigger": trigger,
            "hookline.execution_id": execution_id,
        },
    )
    return _current(span)


def recorded(status: str) -> str | None:
    """Note a run's recorded status on the current span (failed and dead: failed); the
    trace id the record keeps."""
    span = trace.get_current_span()
    span.set_attribute("hookline.status", status)
    if status in ("failed", "dead"):
        _failed(span, status)
    return trace_id()


def stepping(step_id: str, kind: str) -> contextlib.AbstractContextManager[Span]:
    """A step's span (an http step's is a client span: see `calling`)."""
    span = _tracer.start_span(
        f"step {step_id}",
        kind=SpanKind.CLIENT if kind == "http" else SpanKind.INTERNAL,
        attributes={"hookline.step.id": step_id, "hookline.step.kind": kind},
    )
    return _current(span)


def calling(headers: dict[str, str], method: str, scheme: str, host: str, port: int | None) -> None:
    """An http step's request: what it calls on the current (client) span, and its
    `traceparent` in `headers`, replacing one the step itself set."""
    span = trace.get_current_span()
    span.set_attribute("http.request.method", method)
    span.set_attribute("url.scheme", scheme)
    span.set_attribute("server.address", host)
    port = port if port is not None else _DEFAULT_PORTS.get(scheme)
    if port is not None:
        span.set_attribute("server.port", port)
    for name in [k for k in headers if k.lower() == TRACEPARENT]:
        del headers[name]
    if (value := traceparent()) is not None:
        headers[TRACEPARENT] = value


def called(status: int) -> None:
    """An http step's answer on the current (client) span (4xx and 5xx: failed)."""
    span = trace.get_current_span()
    span.set_attribute("http.response.status_code", status)
    if status >= 400:  # a client span fails on 4xx too (HTTP conventions)
        _failed(span, str(status))
