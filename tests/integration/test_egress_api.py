"""Egress policy on a real stack: what a workspace token defines over the management API
cannot reach hookline's own services or a local server, unless the admin opened it."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from shared.db.pool import Connection
from tests.helpers import apply_yaml, eventually, finished_execution
from tests.integration.calls import cli
from tests.stack import Services
from worker.steps.http import UNREACHABLE

ADMIN = {"Authorization": "Bearer test-admin-token-0123456789"}
PUBLIC_ONLY = (
    "http steps reach public addresses only (an operator's connection or egress allow-list opens others)"
)


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
    seen: list[str] = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (Recorder,), {"seen": seen}))
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1], seen
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
async def tenant(
    db: Connection, workspace: str, stack: Services, admin: httpx.AsyncClient
) -> AsyncIterator[httpx.AsyncClient]:
    """The management API as the test workspace's own token sees it."""
    await apply_yaml(db, f"workspace: {workspace}\ntriggers: []\n")
    token = (await admin.post("/tokens", json={"label": "tenant", "workspace": workspace})).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=f"{stack.base_url}/api", headers=headers, timeout=20) as client:
        yield client


def fetcher(name: str, url: str) -> dict[str, Any]:
    return {
        "name": name,
        "auth": {"type": "none"},
        "retry": {"max_attempts": 1},
        "workflow": [{"id": "fetch", "http": {"url": url, "timeout": "3s"}}],
    }


async def run(stack: Services, db: Connection, path: str, **params: str) -> Any:
    """Call a trigger once it is routable; its finished execution."""

    async def accepted() -> httpx.Response | None:
        async with httpx.AsyncClient(base_url=stack.base_url) as client:
            answer = await client.post(path, params=params)
        return answer if answer.status_code == 202 else None

    answer = await eventually(accepted, timeout=5)
    return await finished_execution(db, answer.json()["execution_id"])


async def test_a_workspace_token_cannot_reach_hookline_services_through_an_http_step(
    stack: Services,
    db: Connection,
    workspace: str,
    tenant: httpx.AsyncClient,
    recorder: tuple[int, list[str]],
) -> None:
    port, seen = recorder
    created = await tenant.post(
        f"/workspaces/{workspace}/triggers", json=fetcher("probe", "{{ request.query.u }}")
    )
    assert created.status_code == 201, created.text
    targets = [
        f"{stack.base_url}/metrics",  # the ingress itself
        f"http://localhost:{stack.port}/api/workspaces",
        f"http://127.0.0.1:{port}/x",  # a local server
        f"http://2130706433:{port}/x",
        f"http://[::ffff:127.0.0.1]:{port}/x",
    ]
    for target in targets:
        execution = await run(stack, db, f"/hooks/{workspace}/probe", u=target)
        assert (execution.status, execution.output) == ("dead", None)
        assert execution.error == f"step fetch (http): GET {target}: {UNREACHABLE}"
    assert seen == []


@pytest.mark.parametrize(
    ("host", "address", "reason"),
    [
        ("127.0.0.1", "127.0.0.1", "loopback"),
        ("127.1", "127.0.0.1", "loopback"),
        ("2130706433", "127.0.0.1", "loopback"),
        ("0.0.0.0", "0.0.0.0", "unspecified"),
        ("[::1]", "::1", "loopback"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1", "loopback (IPv4 inside IPv6)"),
        ("10.0.0.1", "10.0.0.1", "private"),
        ("169.254.169.254", "169.254.169.254", "link-local"),
    ],
)
async def test_a_workspace_token_cannot_define_an_http_step_to_an_internal_address(
    workspace: str, tenant: httpx.AsyncClient, admin: httpx.AsyncClient, host: str, address: str, reason: str
) -> None:
    refused = await tenant.post(
        f"/workspaces/{workspace}/triggers", json=fetcher("meta", f"http://{host}/latest")
    )
    assert refused.status_code == 400
    assert refused.json()["detail"] == (
        f"definition: trigger meta, step fetch, field http.url: {address} port 80 is refused: "
        f"{reason} address; {PUBLIC_ONLY}"
    )
    # The operator (the admin token) writes what it chooses.
    assert (
        await admin.post(f"/workspaces/{workspace}/triggers", json=fetcher("meta", f"http://{host}/latest"))
    ).status_code == 201


async def test_only_the_admin_sets_a_workspace_egress_allow_list_and_workers_follow_it(
    stack: Services,
    db: Connection,
    workspace: str,
    tenant: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    recorder: tuple[int, list[str]],
) -> None:
    port, seen = recorder
    path = f"/workspaces/{workspace}/egress"
    refused = await tenant.put(path, json={"allow": [f"127.0.0.1:{port}"]})
    assert (refused.status_code, refused.json()["detail"]) == (403, "this needs an admin token")
    bad = await admin.put(path, json={"allow": ["localhost"]})
    assert (bad.status_code, bad.json()["detail"]) == (
        400,
        "egress allow entry 'localhost': not an IP address or network (such as 10.1.0.0/16 or 127.0.0.1:8099)",
    )
    assert (await tenant.get(path)).json() == {"allow": []}
    opened = await admin.put(path, json={"allow": [f"127.0.0.1:{port}"]})
    assert opened.json() == {"allow": [f"127.0.0.1:{port}"]}
    assert (await tenant.get(path)).json() == {"allow": [f"127.0.0.1:{port}"]}
    # Written out, it is accepted now; from an expression, the workers let it through.
    literal = await tenant.post(
        f"/workspaces/{workspace}/triggers", json=fetcher("lit", f"http://127.0.0.1:{port}/lit")
    )
    assert literal.status_code == 201, literal.text
    computed = await tenant.post(
        f"/workspaces/{workspace}/triggers", json=fetcher("probe", "{{ request.query.u }}")
    )
    assert computed.status_code == 201, computed.text
    assert (await run(stack, db, f"/hooks/{workspace}/lit")).status == "succeeded"
    execution = await run(stack, db, f"/hooks/{workspace}/probe", u=f"http://localhost:{port}/x")
    assert (execution.status, execution.output["body"]) == ("succeeded", "ok")
    # Another port of the same address stays closed.
    other = await run(stack, db, f"/hooks/{workspace}/probe", u=f"http://127.0.0.1:{stack.port}/metrics")
    assert other.error == f"step fetch (http): GET http://127.0.0.1:{stack.port}/metrics: {UNREACHABLE}"
    assert seen == ["/lit", "/x"]


async def test_an_operator_applying_a_workspace_written_trigger_adopts_it_as_a_new_version(
    db: Connection, workspace: str, tenant: httpx.AsyncClient
) -> None:
    definition = fetcher("probe", "{{ request.query.u }}")
    assert (await tenant.post(f"/workspaces/{workspace}/triggers", json=definition)).status_code == 201
    same = "triggers:\n  - {name: probe, auth: {type: none}, retry: {max_attempts: 1}, workflow: [{id: fetch, http: {url: '{{ request.query.u }}', timeout: 3s}}]}"
    await apply_yaml(db, f"workspace: {workspace}\n{same}\n")
    await apply_yaml(db, f"workspace: {workspace}\n{same}\n")  # once adopted, unchanged
    rows = await db.fetch(
        "select v.version, v.author from trigger_versions v join triggers t on t.id = v.trigger_id"
        " where t.workspace = $1 and t.name = 'probe' order by v.version",
        workspace,
    )
    assert [(r["version"], r["author"]) for r in rows] == [(1, "workspace"), (2, "operator")]
    versions = (await tenant.get(f"/workspaces/{workspace}/triggers/probe/versions")).json()
    assert [(v["version"], v["author"]) for v in versions] == [(2, "operator"), (1, "workspace")]


async def test_the_operator_sets_a_workspace_egress_allow_list_from_the_command_line(
    stack: Services, db: Connection, workspace: str
) -> None:
    await apply_yaml(db, f"workspace: {workspace}\ntriggers: []\n")
    assert cli(stack, "egress", "show", workspace).stdout == "(public addresses only)\n"
    done = cli(stack, "egress", "set", workspace, "10.1.0.0/16", "[fd00::1]:443")
    assert (done.returncode, done.stdout) == (0, "10.1.0.0/16\n[fd00::1]:443\n")
    assert cli(stack, "egress", "show", workspace).stdout == "10.1.0.0/16\n[fd00::1]:443\n"
    bad = cli(stack, "egress", "set", workspace, "10.1.0.0/16:99999")
    assert (bad.returncode, bad.stderr) == (
        1,
        "hookline: egress allow entry '10.1.0.0/16:99999': the port must be a number from 1 to 65535\n",
    )
    assert cli(stack, "egress", "set", workspace).stdout == "(public addresses only)\n"
    assert await db.fetchval("select count(*) from workspace_egress where workspace = $1", workspace) == 0
