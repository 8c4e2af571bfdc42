"""Egress policy of http steps: the address classification, and the check at connect time
against a real local recorder server that must receive nothing it was not allowed to."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from shared.errors import ConfigError
from shared.spec.egress import EgressPolicy, allow_entry, literal_address, operator_allow, refusal
from tests.stack import free_port
from tests.workflow_runs import StaticResources, invocation, workflow_of
from worker.egress import guarded_client
from worker.steps.http import UNREACHABLE

# The addresses a tenant must not reach, as an attacker writes them.
REFUSED_HOSTS = [
    "127.0.0.1",
    "127.1",
    "2130706433",
    "0x7f.0.0.1",
    "0.0.0.0",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[::]",
    "10.0.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "224.0.0.1",
    "[fd00::1]",
    "[fe80::1]",
    "[64:ff9b::7f00:1]",
    "[2002:7f00:1::1]",
    "localhost",
]


class Recorder(BaseHTTPRequestHandler):
    """Answers 200 and keeps the path of every request it gets."""

    seen: list[str]

    def do_GET(self) -> None:
        self.seen.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_: Any) -> None:
        return


@pytest.fixture
def recorder() -> Iterator[tuple[int, list[str]]]:
    """A local HTTP server on 127.0.0.1 that records the paths it is asked for."""
    seen: list[str] = []
    handler = type("Handler", (Recorder,), {"seen": seen})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1], seen
    httpd.shutdown()
    httpd.server_close()


@contextlib.asynccontextmanager
async def guarded(policy: EgressPolicy) -> AsyncIterator[StaticResources]:
    """Resources whose targets-a-workspace-chose go through the egress-checked client."""
    async with httpx.AsyncClient() as trusted, guarded_client(policy, httpx.Limits()) as checked:
        yield StaticResources(trusted, guarded=checked)


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    return literal_address(host.strip("[]"))


@pytest.mark.parametrize("host", [h for h in REFUSED_HOSTS if h != "localhost"])
def test_every_internal_address_form_is_refused_by_the_classification(host: str) -> None:
    address = _address(host)
    assert address is not None
    assert refusal(address) is not None


@pytest.mark.parametrize("host", ["8.8.8.8", "1.1.1.1", "[2606:4700:4700::1111]", "[64:ff9b::808:808]"])
def test_public_addresses_pass_the_classification(host: str) -> None:
    address = _address(host)
    assert address is not None
    assert refusal(address) is None


def test_multicast_and_mapped_loopback_are_refused_although_python_calls_them_global() -> None:
    assert refusal(ipaddress.ip_address("224.0.0.1")) == "multicast"
    assert refusal(ipaddress.ip_address("::ffff:127.0.0.1")) == "loopback (IPv4 inside IPv6)"


def test_a_name_is_not_a_literal_address() -> None:
    assert literal_address("localhost") is None
    assert literal_address("metadata.google.internal") is None


def test_an_allow_entry_opens_a_network_or_one_port_of_it() -> None:
    policy = EgressPolicy(
        (allow_entry("10.1.0.0/16"), allow_entry("127.0.0.1:8099"), allow_entry("[::1]:80"))
    )
    policy.check(ipaddress.ip_address("10.1.2.3"), 5432)
    policy.check(ipaddress.ip_address("127.0.0.1"), 8099)
    policy.check(ipaddress.ip_address("::1"), 80)
    with pytest.raises(Exception, match=r"^127\.0\.0\.1 port 8100 is refused: loopback address$"):
        policy.check(ipaddress.ip_address("127.0.0.1"), 8100)


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("localhost", "not an IP address or network (such as 10.1.0.0/16 or 127.0.0.1:8099)"),
        ("10.0.0.1:0", "the port must be a number from 1 to 65535"),
        ("10.0.0.1:http", "the port must be a number from 1 to 65535"),
    ],
)
def test_a_malformed_egress_allow_setting_names_the_variable_and_the_entry(entry: str, reason: str) -> None:
    with pytest.raises(ConfigError) as raised:
        operator_allow(f"10.0.0.0/8,{entry}")
    assert str(raised.value) == f"HOOKLINE_EGRESS_ALLOW: egress allow entry {entry!r}: {reason}"


@pytest.mark.parametrize("host", REFUSED_HOSTS)
async def test_an_http_step_cannot_reach_an_internal_address_from_an_expression(
    host: str, recorder: tuple[int, list[str]]
) -> None:
    port, seen = recorder
    async with guarded(EgressPolicy()) as resources:
        workflow = workflow_of(
            f'- id: call\n  http: {{url: "http://{{{{ request.body.host }}}}:{port}/x", timeout: 2s}}',
            resources,
        )
        outcome = await workflow.run(invocation({"host": host}), 1)
    assert outcome.error == f"step call (http): GET http://{host}:{port}/x: {UNREACHABLE}"
    assert seen == []


async def test_a_name_a_workspace_wrote_is_checked_where_it_resolves(recorder: tuple[int, list[str]]) -> None:
    port, seen = recorder
    async with guarded(EgressPolicy()) as resources:
        workflow = workflow_of(
            f'- id: call\n  http: {{url: "http://localhost:{port}/x"}}', resources, operator_written=False
        )
        outcome = await workflow.run(invocation(), 1)
    assert outcome.error == f"step call (http): GET http://localhost:{port}/x: {UNREACHABLE}"
    assert seen == []


async def test_the_operator_allow_list_opens_an_internal_target(recorder: tuple[int, list[str]]) -> None:
    port, seen = recorder
    async with guarded(EgressPolicy((allow_entry(f"127.0.0.1:{port}"),))) as resources:
        workflow = workflow_of(
            f'- id: call\n  http: {{url: "http://{{{{ request.body.host }}}}:{port}/x"}}', resources
        )
        outcome = await workflow.run(invocation({"host": "localhost"}), 1)
    assert outcome.ok, outcome.error
    assert outcome.output["body"] == "ok"
    assert seen == ["/x"]


async def test_an_operators_written_out_url_is_called_as_written(recorder: tuple[int, list[str]]) -> None:
    port, seen = recorder
    async with guarded(EgressPolicy()) as resources:
        workflow = workflow_of(
            f'- id: call\n  http: {{url: "http://127.0.0.1:{port}/x/{{{{ request.body.id }}}}"}}', resources
        )
        outcome = await workflow.run(invocation({"id": "7"}), 1)
    assert outcome.ok, outcome.error
    assert seen == ["/x/7"]


@contextlib.contextmanager
def hanging_up_server() -> Iterator[int]:
    """A TCP port that accepts and closes at once (as an open non-HTTP port may)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                connection, _ = listener.accept()
                connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()


@contextlib.contextmanager
def garbage_server() -> Iterator[int]:
    """A TCP port that answers bytes that are not HTTP (as AMQP and PostgreSQL do)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = listener.accept()
                connection.sendall(b"AMQP\x00\x00\x09\x01")
                connection.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


async def test_a_refusal_a_closed_port_and_a_non_http_port_fail_with_one_text() -> None:
    with hanging_up_server() as hangs_up, garbage_server() as garbage:
        closed = free_port()
        opened = EgressPolicy(tuple(allow_entry(f"127.0.0.1:{p}") for p in (hangs_up, garbage, closed)))
        errors = set()
        async with guarded(opened) as resources:
            workflow = workflow_of(
                '- id: call\n  http: {url: "http://{{ request.body.to }}/x", timeout: 2s}', resources
            )
            for to in (
                f"127.0.0.1:{hangs_up}",
                f"127.0.0.1:{garbage}",
                f"127.0.0.1:{closed}",
                "10.0.0.1:5432",
            ):
                outcome = await workflow.run(invocation({"to": to}), 1)
                assert outcome.error is not None
                errors.add(outcome.error.replace(to, "TARGET"))
    assert errors == {f"step call (http): GET http://TARGET/x: {UNREACHABLE}"}


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ("../../alpha/open", "/hooks/beta/capture/..%2F..%2Falpha%2Fopen"),
        ("%2e%2e", "/hooks/beta/capture/%252e%252e"),
        ("x?admin=1", "/hooks/beta/capture/x%3Fadmin%3D1"),
        ("x#y", "/hooks/beta/capture/x%23y"),
    ],
)
async def test_a_value_in_a_url_path_stays_in_its_segment(
    value: str, path: str, recorder: tuple[int, list[str]]
) -> None:
    port, seen = recorder
    async with guarded(EgressPolicy()) as resources:
        workflow = workflow_of(
            f'- id: call\n  http: {{url: "http://127.0.0.1:{port}/hooks/beta/capture/{{{{ request.query.id }}}}"}}',
            resources,
        )
        outcome = await workflow.run(invocation(query={"id": value}), 1)
    assert outcome.ok, outcome.error
    assert seen == [path]


@pytest.mark.parametrize("value", ["..", ".", "..."])
async def test_a_dot_segment_value_in_a_url_path_fails_the_step(
    value: str, recorder: tuple[int, list[str]]
) -> None:
    port, seen = recorder
    async with guarded(EgressPolicy()) as resources:
        workflow = workflow_of(
            f'- id: call\n  http: {{url: "http://127.0.0.1:{port}/hooks/beta/capture/{{{{ request.query.id }}}}"}}',
            resources,
        )
        outcome = await workflow.run(invocation(query={"id": value}), 1)
    assert outcome.error == f"step call (http): url: a value may not be `{value}`"
    assert seen == []


async def test_a_url_that_is_one_value_is_taken_as_a_link(recorder: tuple[int, list[str]]) -> None:
    port, seen = recorder
    policy = EgressPolicy((allow_entry(f"127.0.0.1:{port}"),))
    async with guarded(policy) as resources:
        workflow = workflow_of('- id: call\n  http: {url: "{{ request.body.next }}"}', resources)
        outcome = await workflow.run(invocation({"next": f"http://127.0.0.1:{port}/items/a%20b?page=2"}), 1)
    assert outcome.ok, outcome.error
    assert seen == ["/items/a%20b?page=2"]


def _resolver(answers: dict[str, list[list[str]]]) -> Any:
    """A stand-in for the loop's getaddrinfo, as a hostile DNS server answers: each lookup of
    a name gets the next of its answers (the last one from then on)."""

    async def getaddrinfo(host: str | bytes, port: int, *_: Any, **__: Any) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else host
        addresses = answers[name][0] if len(answers[name]) == 1 else answers[name].pop(0)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)) for address in addresses]

    return getaddrinfo


async def test_a_name_resolving_to_public_and_internal_addresses_is_refused_before_any_connect(
    recorder: tuple[int, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, seen = recorder
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "getaddrinfo", _resolver({"mixed.test": [["192.0.2.1", "127.0.0.1"]]}))
    async with guarded(EgressPolicy((allow_entry("192.0.2.0/24"),))) as resources:
        workflow = workflow_of(
            f'- id: call\n  http: {{url: "http://{{{{ request.body.h }}}}:{port}/x"}}', resources
        )
        outcome = await workflow.run(invocation({"h": "mixed.test"}), 1)
    assert outcome.error == f"step call (http): GET http://mixed.test:{port}/x: {UNREACHABLE}"
    assert seen == []


async def test_the_connection_goes_to_the_address_that_was_checked(
    recorder: tuple[int, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, seen = recorder
    loop = asyncio.get_running_loop()
    # DNS rebinding: the first answer is allowed, every later one is not (and goes nowhere).
    monkeypatch.setattr(loop, "getaddrinfo", _resolver({"rebind.test": [["127.0.0.1"], ["192.0.2.1"]]}))
    async with guarded(EgressPolicy((allow_entry(f"127.0.0.1:{port}"),))) as resources:
        workflow = workflow_of(
            f'- id: call\n  http: {{url: "http://{{{{ request.body.h }}}}:{port}/x"}}', resources
        )
        outcome = await workflow.run(invocation({"h": "rebind.test"}), 1)
    assert outcome.ok, outcome.error
    assert seen == ["/x"]
