"""Tracing's switch (the standard OTEL_* variables), its reading of a caller's `traceparent`,
and an exporter whose receiver does not answer: it holds up neither the start nor a span,
and a stop waits for it only as long as its deadline."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.errors import ConfigError
from shared.runtime import tracing

CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize(
    ("environ", "wanted"),
    [
        ({}, []),
        ({"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp, console"}, ["otlp", "console"]),
        ({"OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, []),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, []),
        ({"OTEL_SDK_DISABLED": " TRUE ", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, []),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "otlp"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, ["otlp"]),
    ],
)
def test_tracing_is_on_only_when_an_exporter_or_an_otlp_endpoint_is_named(
    environ: dict[str, str], wanted: list[str]
) -> None:
    assert tracing.exporters_wanted(environ) == wanted


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"OTEL_TRACES_EXPORTER": "zipkin,otlp"},
            "OTEL_TRACES_EXPORTER: zipkin is not available (otlp, console or none)",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTLP protocol 'grpc' is not available (http/protobuf only)",
        ),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
            "OTLP protocol 'http/json' is not available (http/protobuf only)",
        ),
    ],
)
def test_an_exporter_this_build_does_not_ship_is_a_configuration_error(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        tracing.exporters_wanted(environ)
    assert str(raised.value) == message


def test_a_valid_traceparent_is_continued() -> None:
    context = tracing.parent_of(CALLER)
    assert context is not None
    parent = trace.get_current_span(context).get_span_context()
    assert (parent.trace_id, parent.span_id, parent.is_remote) == (
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
        True,
    )
    assert tracing.parent_of(CALLER.encode()) is not None  # as an AMQP header may carry it


@pytest.mark.parametrize(
    "hostile",
    [
        None,
        "",
        "garbage",
        17,
        ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"],
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # no trace id
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # no parent id
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # the forbidden version
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",  # 00 has no more fields
        "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",  # upper case
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\nX-Injected: 1",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01," + "x" * 600,
        b"\xff\xfe",
    ],
)
def test_anything_else_a_caller_sends_as_traceparent_is_ignored(hostile: object) -> None:
    assert tracing.parent_of(hostile) is None


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with tracing.installed(provider):
        yield exporter


def test_a_malformed_traceparent_starts_a_new_trace(spans: InMemorySpanExporter) -> None:
    with tracing.serving("POST", "00-nonsense-01", "/hooks/ws/t", "ws", "t", lambda _: 500):
        pass
    [span] = spans.get_finished_spans()
    assert span.parent is None
    assert span.context is not None
    assert span.context.trace_id != 0x0AF7651916CD43DD8448EB211C80319C


def test_a_failure_marks_the_span_by_its_status_or_type_never_its_message(
    spans: InMemorySpanExporter,
) -> None:
    with (
        pytest.raises(RuntimeError),
        tracing.serving("POST", CALLER, "/hooks/ws/t", "ws", "t", lambda _: 503),
    ):
        raise RuntimeError("the body said: secret-7f3a")
    with pytest.raises(ValueError), tracing.stepping("copy", "map"):
        raise ValueError("secret-7f3a")
    served, stepped = spans.get_finished_spans()
    assert served.attributes is not None
    assert stepped.attributes is not None
    assert (served.status.status_code, served.status.description) == (trace.StatusCode.ERROR, None)
    assert served.attributes["http.response.status_code"] == 503
    assert served.attributes["error.type"] == "503"
    assert stepped.attributes["error.type"] == "ValueError"
    assert len(served.events) == len(stepped.events) == 0  # no exception event, no message
    assert "secret-7f3a" not in repr([dict(s.attributes or {}) for s in (served, stepped)])


def test_a_4xx_answer_is_no_server_failure(spans: InMemorySpanExporter) -> None:
    with tracing.serving("POST", None, "/hooks/ws/t", "ws", "t", lambda _: 401) as span:
        tracing.answered(span, 401)
    [served] = spans.get_finished_spans()
    assert served.status.status_code is trace.StatusCode.UNSET


def test_an_http_step_replaces_a_traceparent_it_set_itself(spans: InMemorySpanExporter) -> None:
    headers = {"TraceParent": "00-11111111111111111111111111111111-2222222222222222-01", "X-A": "1"}
    with tracing.stepping("call", "http") as span:
        tracing.calling(headers, "POST", "https", "api.example.test", 443)
    context = span.get_span_context()
    assert headers == {
        "X-A": "1",
        # Sampled, and (W3C level 2) a random trace id: flags 03 on a trace hookline starts.
        "traceparent": f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}",
    }


def _silent_receiver() -> socket.socket:
    """A port that takes connections and never answers (a receiver that hangs)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    return listener


def test_a_receiver_that_never_answers_holds_up_neither_start_nor_spans_and_stop_keeps_its_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with _silent_receiver() as listener:
        port = listener.getsockname()[1]
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "30")  # seconds: longer than any wait here
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "10")
        began = time.monotonic()
        try:
            assert tracing.start("worker")
            assert tracing.on
            for _ in range(200):
                with tracing.stepping("s", "map"):
                    pass
            time.sleep(0.2)  # the export thread is now waiting on the silent receiver
            with tracing.stepping("s", "map"):
                pass
            made = time.monotonic() - began
        finally:
            stopping = time.monotonic()
            tracing.stop(timeout=0.5)
            stopped = time.monotonic() - stopping
    assert not tracing.on
    assert made < 0.2 + 2.0, f"start and spans took {made:.2f} s"
    assert stopped < 0.5 + 1.0, f"stop took {stopped:.2f} s"


def test_stop_without_start_does_nothing() -> None:
    tracing.stop()
    assert not tracing.on
