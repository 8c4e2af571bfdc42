"""The integration developer's loop on a real stack: refused calls say what the sender can
fix (and never a secret), `triggers try` calls each kind of trigger as its callers would,
the sample's paths come with their expressions, nested query parameters are typed."""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from shared.db.pool import Connection
from shared.signatures.presets import PRESETS
from shared.signatures.verify import sign
from tests.conftest import TEST_SECRETS
from tests.helpers import apply_yaml, eventually, finished_execution, new_key
from tests.integration.calls import cli, cli_json
from tests.stack import Services

ADMIN = {"Authorization": "Bearer test-admin-token-0123456789"}
HMAC_SECRET = TEST_SECRETS["TEST_HMAC_SECRET"]
STRIPE_EXPECTED = 'Stripe-Signature: t=<timestamp>,v1=<hex hmac-sha256 of "{timestamp}.{body}"> (within 60 s)'

TRIGGERS = """
workspace: {ws}
triggers:
  - name: keyed
    auth: {{type: api_key}}
    mode: request_response
    workflow: [{{respond: {{status: 200, body: {{got: "{{{{ request.body }}}}"}}}}}}]
  - name: signed
    auth: {{type: hmac, preset: stripe, secret: "${{env:TEST_HMAC_SECRET}}", tolerance: 60s}}
    mode: request_response
    workflow: [{{respond: {{status: 200, body: {{got: "{{{{ request.body }}}}"}}}}}}]
  - name: basic
    auth: {{type: basic, username: ops, password: "${{env:TEST_BASIC_PASSWORD}}"}}
    mode: request_response
    workflow: [{{respond: {{status: 200, body: {{got: "{{{{ request.body }}}}"}}}}}}]
  - name: written-out
    auth: {{type: basic, username: ops, password: "written out"}}
    mode: request_response
    workflow: [{{respond: {{status: 200, body: {{got: "{{{{ request.body }}}}"}}}}}}]
  - name: open
    auth: {{type: none}}
    workflow: [{{id: seen, map: {{n: "{{{{ request.body.n }}}}"}}}}]
  - name: orders
    auth: {{type: none}}
    mode: request_response
    query:
      filter: {{type: object, properties: {{status: {{required: true}}, min: {{type: integer}}}}}}
      ids: {{type: array, items: {{type: integer}}}}
    workflow: [{{respond: {{status: 200, body: "{{{{ request.query }}}}"}}}}]
"""


@pytest.fixture(autouse=True)
def _applied_with_the_basic_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """The file is applied in this process, as `hookline apply` on the operator's machine:
    it resolves `${env:TEST_BASIC_PASSWORD}` to hash it (the ingress has it too)."""
    monkeypatch.setenv("TEST_BASIC_PASSWORD", TEST_SECRETS["TEST_BASIC_PASSWORD"])


async def _routable(stack: Services, workspace: str, *names: str) -> None:
    """Until every trigger is in the ingress's registry and routed by the dispatcher."""
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        for name in names:

            async def probe(name: str = name) -> int | None:
                answer = await client.put(f"/hooks/{workspace}/{name}")  # refused (405), but routed
                return answer.status_code if answer.status_code not in (404, 503) else None

            await eventually(probe, timeout=20)


async def _once_routed(call: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response:
    """`call`'s answer once it is not 503 "not ready": a trigger's own queue is bound by the
    dispatcher a moment after the ingress knows the trigger (a 503 published nothing)."""

    async def answered() -> httpx.Response | None:
        answer = await call()
        return None if answer.status_code == 503 else answer

    return await eventually(answered, timeout=20)


async def _rejected(stack: Services, workspace: str, trigger: str, count: int) -> dict[str, Any]:
    """The API's page of refused calls once it holds `count` of them (written in the background)."""
    async with httpx.AsyncClient(base_url=stack.base_url, headers=ADMIN) as client:

        async def probe() -> dict[str, Any] | None:
            answer = await client.get(f"/api/workspaces/{workspace}/triggers/{trigger}/rejected")
            assert answer.status_code == 200, answer.text
            page: dict[str, Any] = answer.json()
            # Only the 401s: finding the trigger routable left 405s (recorded too) behind them.
            page["items"] = [item for item in page["items"] if item["status"] == 401]
            return page if len(page["items"]) >= count else None

        return await eventually(probe)


async def test_a_stale_hmac_call_shows_its_skew_in_the_api_and_the_cli(
    stack: Services, db: Connection, workspace: str
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace))
    await _routable(stack, workspace, "signed")
    body = b'{"order": 1}'
    stale = sign(PRESETS["stripe"], HMAC_SECRET.encode(), body, time.time() - 600)
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        refused = await client.post(f"/hooks/{workspace}/signed", content=body, headers=stale)
        missing = await client.post(f"/hooks/{workspace}/signed", content=body)
    assert (refused.status_code, missing.status_code) == (401, 401)

    page = await _rejected(stack, workspace, "signed", 2)
    newest, oldest = page["items"]
    assert (newest["status"], newest["reason"], newest["detail"]) == (
        401,
        "missing-header",
        {"header": "Stripe-Signature", "expected": STRIPE_EXPECTED},
    )
    assert newest["hint"] == "header Stripe-Signature is missing or empty"
    assert (oldest["reason"], oldest["detail"]["expected"]) == ("timestamp-stale", STRIPE_EXPECTED)
    skew = oldest["detail"]["skew_seconds"]
    assert 600 <= skew <= 630
    assert (
        oldest["hint"]
        == f"the timestamp is {skew} s old, more than the 60 s allowed (a replay or a slow clock)"
    )
    assert oldest["headers"]["stripe-signature"] == "<redacted>"

    table = cli(stack, "triggers", "rejected", f"{workspace}/signed")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["TIME", "STATUS", "REASON", "HINT"]
    assert lines[2].split(None, 4)[2:] == [
        "401",
        "timestamp-stale",
        f"the timestamp is {skew} s old, more than the 60 s allowed (a replay or a slow clock); "
        f"expected {STRIPE_EXPECTED}",
    ]
    listed = [r for r in cli_json(stack, "triggers", "rejected", f"{workspace}/signed") if r["status"] == 401]
    assert [(r["reason"], r["detail"].get("skew_seconds")) for r in listed] == [
        ("missing-header", None),
        ("timestamp-stale", skew),
    ]
    signature = stale["Stripe-Signature"].split("v1=")[1]
    for shown in (json.dumps(page), table.stdout, json.dumps(listed)):
        assert signature not in shown
        assert HMAC_SECRET not in shown

    # Paged, newest first; another trigger's (or an unknown one's) are not these.
    async with httpx.AsyncClient(base_url=stack.base_url, headers=ADMIN) as client:
        first = (await client.get(f"/api/workspaces/{workspace}/triggers/signed/rejected?limit=1")).json()
        second = (
            await client.get(
                f"/api/workspaces/{workspace}/triggers/signed/rejected?limit=1&cursor={first['next_cursor']}"
            )
        ).json()
        unknown = await client.get(f"/api/workspaces/{workspace}/triggers/nothing/rejected")
    assert [first["items"][0]["reason"], second["items"][0]["reason"]] == [
        "missing-header",
        "timestamp-stale",
    ]
    assert unknown.status_code == 404


async def test_a_wrong_api_key_is_an_unknown_key_and_appears_nowhere(
    stack: Services, db: Connection, workspace: str
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace))
    await new_key(db, workspace, "keyed")
    await _routable(stack, workspace, "keyed")
    wrong = "hk_" + secrets.token_urlsafe(24)
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        statuses = [
            (
                await client.post(f"/hooks/{workspace}/keyed", json={}, headers={"X-API-Key": wrong})
            ).status_code,
            (await client.post(f"/hooks/{workspace}/keyed", json={})).status_code,
            (
                await client.post(
                    f"/hooks/{workspace}/keyed", json={}, headers={"Authorization": f"Bearer {wrong}"}
                )
            ).status_code,
        ]
    assert statuses == [401, 401, 401]

    page = await _rejected(stack, workspace, "keyed", 3)
    assert [(r["reason"], r["hint"]) for r in page["items"]] == [
        (
            "unknown-key",
            "unknown key: no live key of this trigger has this value (mistyped, revoked or another trigger's)",
        ),
        ("missing-key", "no API key: send it as X-API-Key or Authorization: Bearer"),
        (
            "unknown-key",
            "unknown key: no live key of this trigger has this value (mistyped, revoked or another trigger's)",
        ),
    ]
    table = cli(stack, "triggers", "rejected", f"{workspace}/keyed")
    listed = cli(stack, "triggers", "rejected", f"{workspace}/keyed", "--json")
    assert table.returncode == listed.returncode == 0
    assert table.stdout.count("unknown-key") == 2
    rows = await db.fetch(
        "select row_to_json(r)::text as row from rejected_calls r where workspace = $1 and status = 401",
        workspace,
    )
    assert len(rows) == 3
    for shown in (json.dumps(page), table.stdout, listed.stdout, *(r["row"] for r in rows)):
        assert wrong not in shown
        assert wrong[3:20] not in shown  # nor a piece of it


async def test_triggers_try_calls_each_kind_of_trigger_and_links_to_its_execution(
    stack: Services, db: Connection, workspace: str
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace))
    await _routable(stack, workspace, "keyed", "signed", "basic", "written-out", "open")

    env = {"TRY_PASSWORD": "written out"}
    for trigger, extra, how in (
        ("keyed", [], "temporary api key"),
        ("signed", [], "hmac signature"),
        ("basic", [], "basic"),  # the configured password: its ${env:} resolved by the ingress
        ("written-out", ["--password-env", "TRY_PASSWORD"], "basic"),  # a literal: kept only hashed
    ):
        done = cli(
            stack, "triggers", "try", f"{workspace}/{trigger}", "-d", '{"n": 1}', "-q", "a=1", *extra, env=env
        )
        assert done.returncode == 0, (trigger, done.stdout, done.stderr)
        lines = done.stdout.splitlines()
        assert lines[0] == (
            f"POST {stack.base_url}/hooks/{workspace}/{trigger}?a=1 (the options, auth: {how})"
        ), trigger
        assert re.fullmatch(r"HTTP 200 in [0-9]+\.[0-9] ms", lines[1]), lines[1]
        assert '{"got":{"n":1}}' in lines
        execution_id = lines[-2].split()[1].rstrip(":")
        assert lines[-2] == f"execution {execution_id}: {stack.base_url}/console/executions/{execution_id}"
        assert lines[-1] == f"  api: {stack.base_url}/api/executions/{execution_id}"
        assert (await finished_execution(db, execution_id)).status == "succeeded"
        assert HMAC_SECRET not in done.stdout
        assert TEST_SECRETS["TEST_BASIC_PASSWORD"] not in done.stdout

    # The temporary key was made for the call and is gone after it.
    assert await db.fetchval("select count(*) from api_keys where workspace = $1", workspace) == 0

    # A trigger without auth: nothing is added; async, so 202 and the execution's link.
    opened = cli_json(stack, "triggers", "try", f"{workspace}/open", "-d", '{"n": 5}', "-H", "X-Trace: t1")
    assert (opened["status"], opened["sent"]["authenticated_with"]) == (202, "none")
    assert opened["sent"]["headers"] == {"content-type": "application/json", "x-trace": "t1"}
    assert (await finished_execution(db, opened["execution_id"])).status == "succeeded"

    # The API: no method, query, headers or body given -> the last sample's (written within a second).
    async with httpx.AsyncClient(base_url=stack.base_url, headers=ADMIN, timeout=30) as client:

        async def from_sample() -> dict[str, Any] | None:
            answer = await client.post(f"/api/workspaces/{workspace}/triggers/signed/try", json={})
            assert answer.status_code == 200, answer.text
            found: dict[str, Any] = answer.json()
            return found if found["sent"]["from_sample"] else None

        again = await eventually(from_sample)
        basic_without_password = await client.post(
            f"/api/workspaces/{workspace}/triggers/written-out/try", json={}
        )
        bad_header = await client.post(
            f"/api/workspaces/{workspace}/triggers/open/try", json={"headers": {"bad name": "x"}}
        )
        bad_method = await client.post(
            f"/api/workspaces/{workspace}/triggers/open/try", json={"method": "GET /x"}
        )
        unknown_field = await client.post(
            f"/api/workspaces/{workspace}/triggers/open/try", json={"secret": "x"}
        )
    assert (again["status"], again["body"]) == (200, '{"got":{"n":1}}')
    assert again["sent"]["url"] == f"{stack.base_url}/hooks/{workspace}/signed?a=1"
    assert again["sent"]["headers"]["stripe-signature"] == "<redacted>"
    assert HMAC_SECRET not in json.dumps(again)
    assert basic_without_password.status_code == 400
    assert (bad_header.status_code, bad_header.json()["detail"]) == (
        400,
        "header 'bad name' cannot be sent: a token name and a printable value, please",
    )
    assert (bad_method.status_code, bad_method.json()["detail"]) == (
        400,
        "method 'GET /X' is not an HTTP method",
    )
    assert unknown_field.status_code == 400
    assert basic_without_password.json()["detail"] == (
        "this trigger's Basic password was written out and is kept only as its hash: give `password`"
    )

    # Bad input: one line, non-zero.
    bad = cli(stack, "triggers", "try", f"{workspace}/open", "-q", "nope")
    assert (bad.returncode, bad.stdout, bad.stderr) == (1, "", "hookline: -q 'nope': write NAME=VALUE\n")
    header = cli(stack, "triggers", "try", f"{workspace}/open", "-H", "no colon")
    assert (header.returncode, header.stderr) == (1, "hookline: -H 'no colon': write 'Name: value'\n")
    missing = cli(stack, "triggers", "try", f"{workspace}/nothing")
    assert (missing.returncode, missing.stderr) == (
        1,
        f"hookline: no trigger 'nothing' in workspace {workspace!r}\n",
    )


async def test_the_sample_lists_every_path_with_its_expression(
    stack: Services, db: Connection, workspace: str
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace))
    await _routable(stack, workspace, "open")
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        sent = await _once_routed(
            lambda: client.post(
                f"/hooks/{workspace}/open?item=5",
                json={"customer": {"name": "Ada"}, "lines": [{"sku": "A-1"}]},
            )
        )
    assert sent.status_code == 202

    async def paths() -> list[dict[str, str]] | None:
        done = cli(stack, "triggers", "sample", f"{workspace}/open", "--paths", "--json")
        return json.loads(done.stdout) if done.returncode == 0 else None

    listed = await eventually(paths)
    by_path = {p["path"]: p for p in listed}
    assert by_path["request.body.customer.name"] == {
        "path": "request.body.customer.name",
        "type": "string",
        "value": '"Ada"',
        "expression": "{{ request.body.customer.name }}",
    }
    assert by_path["request.query.item"]["expression"] == "{{ request.query.item }}"
    assert by_path["request.body.lines[0].sku"]["value"] == '"A-1"'
    assert by_path["request.body.lines"]["type"] == "array"
    assert by_path["request.headers"]["type"] == "object"

    table = cli(stack, "triggers", "sample", f"{workspace}/open", "--paths").stdout.splitlines()
    assert table[0].split() == ["PATH", "TYPE", "VALUE", "EXPRESSION"]
    assert any(
        line.split()
        == ["request.body.customer.name", "string", '"Ada"', "{{", "request.body.customer.name", "}}"]
        for line in table
    )
    async with httpx.AsyncClient(base_url=stack.base_url, headers=ADMIN) as client:
        api = (await client.get(f"/api/workspaces/{workspace}/triggers/open/sample/paths")).json()
    # The same paths (an object's keys may come in another order: jsonb keeps them sorted).
    assert {p["path"]: (p["type"], p["expression"]) for p in api["paths"]} == {
        p["path"]: (p["type"], p["expression"]) for p in listed
    }
    assert api["truncated"] is False


async def test_nested_query_parameters_parse_and_validate(
    stack: Services, db: Connection, workspace: str
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace))
    await _routable(stack, workspace, "orders")
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        good = await _once_routed(
            lambda: client.post(
                f"/hooks/{workspace}/orders?filter[status]=paid&filter[min]=3&ids[]=1&ids[]=22&x=y"
            )
        )
        wrong = await client.post(f"/hooks/{workspace}/orders?filter[status]=paid&ids[]=1&ids[]=two")
        flat = await client.post(f"/hooks/{workspace}/orders?filter=paid")
    assert (good.status_code, good.json()) == (
        200,
        {"filter": {"status": "paid", "min": 3}, "ids": [1, 22], "x": "y"},
    )
    problem = wrong.json()
    assert (wrong.status_code, problem["title"], problem["detail"], problem["parameter"]) == (
        400,
        "Invalid query parameter",
        "query parameter 'ids[1]' must be an integer, got 'two'",
        "ids[1]",
    )
    assert (flat.status_code, flat.json()["detail"]) == (
        400,
        "query parameter 'filter' must be an object: write filter[key]=value",
    )
