"""The `http` step against a real HTTP server on a local port (http.server in a thread)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import asyncpg
import httpx
import pytest

import worker.steps.http
from shared.broker.publishers import ReplyPublisher
from shared.errors import SpecError
from tests.stack import free_port
from tests.workflow_runs import Recorded, StaticResources, invocation, workflow_of
from worker.execution import Finished, Reporter, reply_for
from worker.recorder import Recorder
from worker.steps.base import HttpTarget


class Handler(BaseHTTPRequestHandler):
    """/echo answers what it received; /status/N, /slow, /text, /mislabelled, /empty, /big, /refuse."""

    def _any(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length).decode()
        path, _, query = self.path.partition("?")
        if path.startswith("/status/"):
            self._send(int(path.split("/")[2]), "application/json", json.dumps({"error": "nope"}))
        elif path == "/slow":
            time.sleep(1.5)
            self._send(200, "text/plain", "late")
        elif path == "/text":
            self._send(200, "text/plain; charset=utf-8", "hello")
        elif path == "/mislabelled":
            self._send(200, "application/json", "not json")
        elif path == "/empty":
            self._send(204, "text/plain", "")
        elif path == "/big":
            self._send(200, "text/plain", "x" * 5000)
        elif path.endswith("/refuse"):  # a 401 quoting the key it refused, as some APIs do
            key = self.headers.get("api-key", "")
            refusal = json.dumps({"error": f"invalid key {key}", "keys": {key: "unknown"}})
            self._send(401, "application/json", refusal, {"X-Refused-Key": key})
        else:
            echo = {
                "method": self.command,
                "path": path,
                "query": query,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body,
            }
            self._send(200, "application/json", json.dumps(echo), {"Set-Cookie": "session=abc"})

    do_GET = do_POST = do_PUT = do_DELETE = _any

    def _send(self, status: int, content_type: str, text: str, extra: dict[str, str] | None = None) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        with contextlib.suppress(BrokenPipeError):  # /slow: the client gave up, as tested
            self.wfile.write(data)

    def log_message(self, *_: Any) -> None:
        return


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
async def resources(server: str) -> AsyncIterator[StaticResources]:
    target = HttpTarget(
        base_url=f"{server}/api",
        headers={"api-key": "k-3f9a7c1e", "X-Tenant": "acme"},
        shown_base_url="${env:TARGET_URL}/api",
        secrets=("k-3f9a7c1e",),
    )
    async with httpx.AsyncClient() as client:
        yield StaticResources(client, {"target": target})


CONNECTION = (
    "target: {type: http, base_url: '${env:TARGET_URL}/api', headers: {api-key: '${env:TARGET_KEY}'}}"
)


async def test_a_json_call_records_status_headers_and_the_parsed_body(
    server: str, resources: StaticResources
) -> None:
    workflow = workflow_of(
        f"""
        - id: call
          http:
            method: POST
            url: "{server}/echo"
            json: {{name: "{{{{ request.body.name }}}}", n: 3}}
        """,
        resources,
    )
    outcome = await workflow.run(invocation({"name": "Gromit"}), 1)
    assert outcome.ok, outcome.error
    output = outcome.output
    assert output["status"] == 200
    assert output["headers"]["content-type"] == "application/json"
    assert output["headers"]["set-cookie"] == "[redacted]"
    echo = output["body"]
    assert (echo["method"], echo["path"], json.loads(echo["body"])) == (
        "POST",
        "/echo",
        {"name": "Gromit", "n": 3},
    )
    assert echo["headers"]["content-type"] == "application/json"


@pytest.mark.parametrize(
    "link",
    ["https://api.example.test/api/items/a%20b?page=2", "/api/items/a%20b?page=2", "/items/a%20b?page=2"],
)
async def test_a_next_link_is_followed_as_given_full_rooted_or_relative(
    resources: StaticResources, link: str
) -> None:
    base = (await resources.http_target("ws", "target")).base_url  # the local server, under /api
    link = link.replace("https://api.example.test", base.removesuffix("/api"))
    workflow = workflow_of(
        "- id: call\n  http: {connection: target, path: '{{ request.body.next }}'}",
        resources,
        connections=CONNECTION,
    )
    outcome = await workflow.run(invocation({"next": link}), 1)
    assert outcome.ok, outcome.error
    assert (outcome.output["body"]["path"], outcome.output["body"]["query"]) == ("/api/items/a%20b", "page=2")


async def test_a_link_to_another_host_is_refused(resources: StaticResources) -> None:
    workflow = workflow_of(
        "- id: call\n  http: {connection: target, path: '{{ request.body.next }}'}",
        resources,
        connections=CONNECTION,
    )
    outcome = await workflow.run(invocation({"next": "https://elsewhere.example/api/items"}), 1)
    assert outcome.error == "step call (http): path: the link leaves the connection's base URL"


@pytest.mark.parametrize(
    ("query", "expected"),
    [("", "a=1&b=x"), ("query: {c: 3}", "a=1&b=x&c=3")],
)
async def test_a_query_written_in_the_url_is_kept_and_merged_with_query(
    server: str, resources: StaticResources, query: str, expected: str
) -> None:
    workflow = workflow_of(
        f"""
        - id: call
          http:
            url: "{server}/echo?a=1&b=x"
            {query}
        """,
        resources,
    )
    outcome = await workflow.run(invocation(), 1)
    assert outcome.ok, outcome.error
    assert outcome.output["body"]["query"] == expected


async def test_a_connection_gives_base_url_and_headers_which_the_record_redacts(
    server: str, resources: StaticResources
) -> None:
    workflow = workflow_of(
        """
        - id: call
          http:
            connection: target
            path: /orders
            query: {page: 2, tags: [a, b], none: null, flag: true}
            headers: {X-Request: "{{ execution.id }}", X-Auth-Token: plain}
        """,
        resources,
        connections=CONNECTION,
    )
    run = invocation()
    outcome = await workflow.run(run, 1)
    assert outcome.ok, outcome.error
    echo = outcome.output["body"]
    assert (echo["path"], echo["query"]) == ("/api/orders", "page=2&tags=a&tags=b&flag=true")
    assert echo["headers"]["api-key"] == "k-3f9a7c1e"  # sent; the run sees the answer as it came
    assert echo["headers"]["x-tenant"] == "acme"
    [record] = outcome.steps
    assert record["output"]["body"]["headers"]["api-key"] == "[redacted]"  # scrubbed in the record
    assert record["request"] == {
        "method": "GET",
        "url": "${env:TARGET_URL}/api/orders",
        "query": [["page", "2"], ["tags", "a"], ["tags", "b"], ["flag", "true"]],
        "headers": {
            "api-key": "[redacted]",
            "X-Tenant": "[redacted]",
            "X-Request": run.id,
            "X-Auth-Token": "[redacted]",
            "Idempotency-Key": f"{run.id}:call",
        },
    }


async def test_values_in_a_path_are_percent_encoded(resources: StaticResources) -> None:
    workflow = workflow_of(
        """
        - id: call
          http: {connection: target, path: "/items/{{ request.body.id }}/stock"}
        """,
        resources,
        connections=CONNECTION,
    )
    outcome = await workflow.run(invocation({"id": "../admin x"}), 1)
    assert outcome.output["body"]["path"] == "/api/items/..%2Fadmin%20x/stock"


async def test_a_target_echoing_the_connections_secret_has_it_scrubbed_from_the_output(
    resources: StaticResources,
) -> None:
    workflow = workflow_of(
        "- id: call\n  http: {connection: target, path: /refuse}", resources, connections=CONNECTION
    )
    outcome = await workflow.run(invocation(), 1)
    assert outcome.error == "step call (http): GET ${env:TARGET_URL}/api/refuse answered 401; expected 2xx"
    [record] = outcome.steps
    assert record["output"]["body"] == {"error": "invalid key [redacted]", "keys": {"[redacted]": "unknown"}}
    assert record["output"]["headers"]["x-refused-key"] == "[redacted]"
    assert "k-3f9a7c1e" not in json.dumps(record)


async def test_the_next_step_reads_the_answer_unscrubbed_while_the_record_is_scrubbed(
    resources: StaticResources,
) -> None:
    workflow = workflow_of(
        """
        - id: call
          http: {connection: target, path: /echo}
        - id: key
          map: '{{ steps.call.output.body.headers."api-key" }}'
        """,
        resources,
        connections=CONNECTION,
    )
    outcome = await workflow.run(invocation(), 1)
    assert outcome.ok, outcome.error
    assert outcome.output == "k-3f9a7c1e"
    call, _ = outcome.steps
    assert call["output"]["body"]["headers"]["api-key"] == "[redacted]"
    assert "k-3f9a7c1e" not in json.dumps(call)


async def test_a_later_step_copying_an_echoed_secret_is_scrubbed_in_its_record_too(
    resources: StaticResources,
) -> None:
    workflow = workflow_of(
        """
        - id: call
          http: {connection: target, path: /echo}
        - id: copy
          map: {seen: '{{ steps.call.output.body.headers."api-key" }}'}
        - respond: {status: 200, body: '{{ steps.copy.output }}'}
        """,
        resources,
        connections=CONNECTION,
    )
    outcome = await workflow.run(invocation(), 1)
    assert outcome.ok, outcome.error
    assert outcome.answer is not None
    assert outcome.answer.body == {"seen": "k-3f9a7c1e"}  # what the caller gets
    assert outcome.steps[1]["output"] == {"seen": "[redacted]"}
    assert "k-3f9a7c1e" not in json.dumps(outcome.steps)
    recorded = Recorded()
    reporter = Reporter(cast(Recorder, recorded), cast(ReplyPublisher, None), cast(asyncpg.Pool, None))
    run = invocation()
    await reporter.record(run, Finished(outcome, 1, 1.0, 2.0), "succeeded", reply_for(run, outcome))
    [record] = recorded.records
    assert "k-3f9a7c1e" not in json.dumps([record.output, record.steps, record.error])
    # The answer is kept as the caller got it: a repeated idempotency key gets the same again.
    assert record.response is not None
    assert json.loads(record.response.content) == {"seen": "k-3f9a7c1e"}


async def test_a_run_ending_on_an_http_step_records_its_output_scrubbed(resources: StaticResources) -> None:
    workflow = workflow_of(
        "- id: call\n  http: {connection: target, path: /echo}", resources, connections=CONNECTION
    )
    outcome = await workflow.run(invocation(), 1)
    assert outcome.ok, outcome.error
    assert outcome.output["body"]["headers"]["api-key"] == "k-3f9a7c1e"  # what a caller would get
    assert outcome.output_to_record["body"]["headers"]["api-key"] == "[redacted]"
    assert "k-3f9a7c1e" not in json.dumps(outcome.output_to_record)


@pytest.mark.parametrize(
    ("path", "value", "sent"),
    [
        ("/items/{{ request.body.id }}", "a..b", "/api/items/a..b"),
        ("/items/{{ request.body.id }}", "a/b?c", "/api/items/a%2Fb%3Fc"),
        ("{{ request.body.id }}", "/orders/7", "/api/orders/7"),
        ("{{ request.body.id }}", "a/b%2Fc", "/api/a/b%2Fc"),  # a link's %XX is kept as it is
    ],
)
async def test_a_value_stays_in_its_segment(
    resources: StaticResources, path: str, value: str, sent: str
) -> None:
    workflow = workflow_of(
        f"- id: call\n  http: {{connection: target, path: '{path}'}}", resources, connections=CONNECTION
    )
    outcome = await workflow.run(invocation({"id": value}), 1)
    assert outcome.ok, outcome.error
    assert (outcome.output["body"]["path"], outcome.output["body"]["query"]) == (sent, "")


@pytest.mark.parametrize(
    ("path", "value", "dots"),
    [
        ("/items/{{ request.body.id }}", "..", ".."),
        ("/items/{{ request.body.id }}/stock", ".", "."),
        ("/items/{{ request.body.id }}{{ request.body.id }}", ".", "."),
        ("/items/.{{ request.body.id }}", ".", "."),
        ("/items/{{ request.body.id }}", "...", "..."),
        ("{{ request.body.id }}", "../../admin", ".."),
        ("{{ request.body.id }}", "/orders/./7?page=1", "."),
        ("{{ request.body.id }}", "a/b%2F..%2Fadmin", ".."),  # an encoded `/` hides no `..`
    ],
)
async def test_a_value_of_only_dots_in_a_path_fails_the_step(
    resources: StaticResources, path: str, value: str, dots: str
) -> None:
    # Encoded as %2E it would still climb: under RFC 3986 a normalising server reads it as `.`.
    workflow = workflow_of(
        f"- id: call\n  http: {{connection: target, path: '{path}'}}", resources, connections=CONNECTION
    )
    outcome = await workflow.run(invocation({"id": value}), 1)
    assert outcome.error == f"step call (http): path: a value may not be `{dots}`"
    assert outcome.steps[0]["status"] == "failed"


async def test_dots_in_a_query_written_in_the_path_are_a_query_value(resources: StaticResources) -> None:
    workflow = workflow_of(
        "- id: call\n  http: {connection: target, path: '/echo?from={{ request.body.id }}'}",
        resources,
        connections=CONNECTION,
    )
    outcome = await workflow.run(invocation({"id": ".."}), 1)
    assert outcome.ok, outcome.error
    assert (outcome.output["body"]["path"], outcome.output["body"]["query"]) == ("/api/echo", "from=..")


@pytest.mark.parametrize(
    ("query", "expected"),
    [("", "page=2&q=a%20b"), ("query: {size: 5}", "page=2&q=a+b&size=5")],
)
async def test_a_path_that_is_one_value_keeps_its_query(
    resources: StaticResources, query: str, expected: str
) -> None:
    # A pagination link from an earlier answer: its query is sent as a query, its fragment dropped.
    workflow = workflow_of(
        f"""
        - id: call
          http:
            connection: target
            path: "{{{{ request.body.next }}}}"
            {query}
        """,
        resources,
        connections=CONNECTION,
    )
    outcome = await workflow.run(invocation({"next": "/items/a%20b?page=2&q=a%20b#top"}), 1)
    assert outcome.ok, outcome.error
    assert (outcome.output["body"]["path"], outcome.output["body"]["query"]) == (
        "/api/items/a%20b",
        expected,
    )


async def test_a_base_url_with_a_query_keeps_it_and_joins_the_path_onto_its_path(server: str) -> None:
    target = HttpTarget(f"{server}/api/v2?tenant=7", {}, "${env:TARGET_URL}/api/v2?tenant=7", ())
    async with httpx.AsyncClient() as client:
        resources = StaticResources(client, {"target": target})
        calls = [
            "{connection: target, path: /orders, query: {page: 2}}",
            "{connection: target, path: '{{ request.body.next }}'}",
            "{connection: target, path: /../admin}",
            "{connection: target}",
        ]
        outcomes = []
        for call in calls:
            workflow = workflow_of(f"- id: call\n  http: {call}", resources, connections=CONNECTION)
            outcomes.append(await workflow.run(invocation({"next": "/orders?page=3"}), 1))
    orders, following, climbing, base = outcomes
    assert (orders.output["body"]["path"], orders.output["body"]["query"]) == (
        "/api/v2/orders",
        "tenant=7&page=2",
    )
    assert orders.steps[0]["request"]["url"] == "${env:TARGET_URL}/api/v2/orders?tenant=7"
    assert following.output["body"]["query"] == "tenant=7&page=3"
    assert climbing.error == (
        "step call (http): GET ${env:TARGET_URL}/api/v2/../admin?tenant=7: "
        "path: the URL leaves the connection's base URL ${env:TARGET_URL}/api/v2?tenant=7"
    )
    assert (base.output["body"]["path"], base.output["body"]["query"]) == ("/api/v2", "tenant=7")


@pytest.mark.parametrize("path", ["/%2E%2E/admin", "/%2e%2E/%2E/admin", "/x/../../admin"])
async def test_a_written_path_that_a_normalising_server_reads_as_leaving_is_refused(
    resources: StaticResources, path: str
) -> None:
    workflow = workflow_of(
        f"- id: call\n  http: {{connection: target, path: '{path}'}}", resources, connections=CONNECTION
    )
    outcome = await workflow.run(invocation(), 1)
    assert outcome.error is not None
    assert outcome.error.endswith("path: the URL leaves the connection's base URL ${env:TARGET_URL}/api")


async def test_a_path_that_leaves_the_base_url_is_refused(resources: StaticResources) -> None:
    workflow = workflow_of(
        "- id: call\n  http: {connection: target, path: /../admin}", resources, connections=CONNECTION
    )
    outcome = await workflow.run(invocation(), 1)
    assert outcome.error == (
        "step call (http): GET ${env:TARGET_URL}/api/../admin: "
        "path: the URL leaves the connection's base URL ${env:TARGET_URL}/api"
    )


async def test_a_value_in_the_query_written_in_the_url_is_encoded_as_a_query_value(
    server: str, resources: StaticResources
) -> None:
    workflow = workflow_of(
        f'- id: call\n  http: {{url: "{server}/echo?q={{{{ request.body.q }}}}&page=1"}}', resources
    )
    outcome = await workflow.run(invocation({"q": "a&admin=1#x"}), 1)
    assert outcome.ok, outcome.error
    assert (outcome.output["body"]["path"], outcome.output["body"]["query"]) == (
        "/echo",
        "q=a%26admin%3D1%23x&page=1",
    )


async def test_a_status_outside_expect_fails_the_step_and_keeps_the_answer(
    server: str, resources: StaticResources
) -> None:
    workflow = workflow_of(f'- id: call\n  http: {{url: "{server}/status/404"}}', resources)
    outcome = await workflow.run(invocation(), 1)
    assert not outcome.ok
    assert outcome.error == f"step call (http): GET {server}/status/404 answered 404; expected 2xx"
    [record] = outcome.steps
    assert record["status"] == "failed"
    assert record["output"]["status"] == 404
    assert record["output"]["body"] == {"error": "nope"}


async def test_expect_takes_codes_and_classes(server: str, resources: StaticResources) -> None:
    workflow = workflow_of(
        f'- id: call\n  http: {{url: "{server}/status/409", expect: [201, 4xx]}}', resources
    )
    outcome = await workflow.run(invocation(), 1)
    assert outcome.ok
    assert outcome.output["status"] == 409


async def test_a_slow_answer_fails_at_the_step_timeout(server: str, resources: StaticResources) -> None:
    workflow = workflow_of(f'- id: call\n  http: {{url: "{server}/slow", timeout: 300ms}}', resources)
    started = time.monotonic()
    outcome = await workflow.run(invocation(), 1)
    assert time.monotonic() - started < 1.2
    assert outcome.error == "step call (http): timed out after 0.3 s (timeout)"


@pytest.mark.parametrize(
    ("path", "body"),
    [("/text", "hello"), ("/mislabelled", "not json"), ("/empty", None)],
)
async def test_an_answer_that_is_not_json_is_kept_as_text(
    server: str, resources: StaticResources, path: str, body: str | None
) -> None:
    workflow = workflow_of(f'- id: call\n  http: {{url: "{server}{path}"}}', resources)
    outcome = await workflow.run(invocation(), 1)
    assert outcome.ok, outcome.error
    assert outcome.output["body"] == body


async def test_a_text_body_is_sent_as_text(server: str, resources: StaticResources) -> None:
    workflow = workflow_of(
        f'- id: call\n  http: {{method: PUT, url: "{server}/echo", body: "name={{{{ request.body.n }}}}"}}',
        resources,
    )
    outcome = await workflow.run(invocation({"n": "Gromit"}), 1)
    echo = outcome.output["body"]
    assert (echo["method"], echo["body"]) == ("PUT", "name=Gromit")
    assert echo["headers"]["content-type"] == "text/plain; charset=utf-8"


async def test_an_answer_too_large_fails_the_step(
    server: str, resources: StaticResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker.steps.http, "MAX_RESPONSE_BYTES", 1000)
    workflow = workflow_of(f'- id: call\n  http: {{url: "{server}/big"}}', resources)
    outcome = await workflow.run(invocation(), 1)
    assert outcome.error == f"step call (http): GET {server}/big: the answer is larger than 1000 bytes"


async def test_an_unreachable_server_fails_the_step_naming_the_call(resources: StaticResources) -> None:
    url = f"http://127.0.0.1:{free_port()}/x"
    workflow = workflow_of(f'- id: call\n  http: {{url: "{url}"}}', resources)
    outcome = await workflow.run(invocation(), 1)
    assert (
        outcome.error
        == f"step call (http): GET {url}: no answer (the address is not allowed, or the connection failed)"
    )


@pytest.mark.parametrize(
    ("host", "problem"),
    [
        ("[::1", "invalid URL: Invalid port: ':1'"),
        ("127.0.0.1:70000", "invalid URL: port 70000 is above 65535"),
    ],
)
async def test_an_invalid_url_fails_the_step_naming_the_problem(
    resources: StaticResources, host: str, problem: str
) -> None:
    workflow = workflow_of('- id: call\n  http: {url: "http://{{ request.body.host }}/x"}', resources)
    outcome = await workflow.run(invocation({"host": host}), 1)
    assert outcome.error == f"step call (http): GET http://{host}/x: {problem}"


async def test_an_invalid_connection_url_fails_the_step_without_its_secret() -> None:
    target = HttpTarget(
        base_url="http://[k-3f9a7c1e]/api",
        headers={},
        shown_base_url="${env:TARGET_URL}/api",
        secrets=("k-3f9a7c1e",),
    )
    async with httpx.AsyncClient() as client:
        workflow = workflow_of(
            "- id: call\n  http: {connection: target, path: /orders}",
            StaticResources(client, {"target": target}),
            connections=CONNECTION,
        )
        outcome = await workflow.run(invocation(), 1)
    assert outcome.error == (
        "step call (http): GET ${env:TARGET_URL}/api/orders: invalid URL: Invalid IPv6 address: '[[redacted]]'"
    )


async def test_every_http_step_sends_the_same_idempotency_key_per_execution_and_step(
    server: str, resources: StaticResources
) -> None:
    workflow = workflow_of(
        f"""
        - id: create
          http: {{method: POST, url: "{server}/echo", json: {{n: 1}}}}
        - id: look
          http: {{url: "{server}/echo"}}
        """,
        resources,
    )
    run = invocation()
    keys = []
    for attempt in (1, 2):
        outcome = await workflow.run(run, attempt)
        assert outcome.ok, outcome.error
        keys.append([r["output"]["body"]["headers"]["idempotency-key"] for r in outcome.steps])
    assert keys == [[f"{run.id}:create", f"{run.id}:look"]] * 2
    other = invocation()
    outcome = await workflow.run(other, 1)
    assert outcome.steps[0]["output"]["body"]["headers"]["idempotency-key"] == f"{other.id}:create"


async def test_a_step_or_its_connection_renames_or_turns_off_the_idempotency_key(server: str) -> None:
    quiet = HttpTarget(f"{server}/api", {}, f"{server}/api", (), idempotency_header=None)
    renamed = HttpTarget(f"{server}/api", {}, f"{server}/api", (), idempotency_header="X-Request-Key")
    async with httpx.AsyncClient() as client:
        resources = StaticResources(client, {"quiet": quiet, "renamed": renamed})
        workflow = workflow_of(
            f"""
            - id: by_connection
              http: {{connection: renamed, path: /echo}}
            - id: off_by_connection
              http: {{connection: quiet, path: /echo}}
            - id: on_by_step
              http: {{connection: quiet, path: /echo, idempotency_header: Request-Id}}
            - id: off_by_step
              http: {{url: "{server}/echo", idempotency_header: null}}
            - id: own_value
              http: {{url: "{server}/echo", headers: {{idempotency-key: mine}}}}
            """,
            resources,
            connections=(
                "renamed: {type: http, base_url: 'http://x', idempotency_header: X-Request-Key}\n"
                "quiet: {type: http, base_url: 'http://x', idempotency_header: null}"
            ),
        )
        run = invocation()
        outcome = await workflow.run(run, 1)
    assert outcome.ok, outcome.error
    sent = {
        r["id"]: {k: v for k, v in r["output"]["body"]["headers"].items() if k.endswith(("-key", "-id"))}
        for r in outcome.steps
    }
    assert sent == {
        "by_connection": {"x-request-key": f"{run.id}:by_connection"},
        "off_by_connection": {},
        "on_by_step": {"request-id": f"{run.id}:on_by_step"},
        "off_by_step": {},
        "own_value": {"idempotency-key": "mine"},
    }


@pytest.mark.parametrize("name", ["Host", "content-length", "Transfer-Encoding", "Content-Type"])
def test_an_idempotency_key_cannot_be_sent_as_a_header_that_frames_or_routes_the_request(name: str) -> None:
    with pytest.raises(SpecError) as step:
        workflow_of(f"- {{id: call, http: {{url: 'http://x', idempotency_header: {name}}}}}")
    assert str(step.value) == (
        f"<input>: trigger t, step call, field http: `idempotency_header` cannot be {name}: "
        "that header frames or routes the request"
    )
    with pytest.raises(SpecError) as connection:
        workflow_of(
            "- {id: call, http: {connection: c, path: /}}",
            connections=f"c: {{type: http, base_url: 'http://x', idempotency_header: {name}}}",
        )
    assert str(connection.value) == (
        f"<input>: connection c: `idempotency_header` cannot be {name}: that header frames or routes the request"
    )
