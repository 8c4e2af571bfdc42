"""The trigger contract at the ingress: auth, request handling, responses, refusals."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.db.keys import attach_key, relabel_key, revoke_key
from shared.db.pool import Connection
from tests.helpers import apply_yaml, eventually, finished_execution, marker_run, new_key
from tests.stack import Services

CONTRACT = """
workspace: {ws}
triggers:
  - name: orders
    methods: [POST, PUT]
    auth: {{type: api_key}}
    mode: request_response
    timeout: 10s
    query:
      customerid: {{type: integer, required: true}}
      customername: {{type: string, default: TheCompany}}
      urgent: {{type: boolean, default: false}}
      ratio: {{type: number}}
    extra_query: reject
    headers: [X-Request-Id, Authorization, X-Api-Key]
    body: {{max_bytes: 2048, content_types: [application/json, application/xml, text/plain,
             application/x-www-form-urlencoded, application/octet-stream]}}
    workflow:
      - respond:
          status: 201
          headers: {{X-Customer: "{{{{ request.query.customerid }}}}"}}
          body:
            query: "{{{{ request.query }}}}"
            headers: "{{{{ request.headers }}}}"
            kind: "{{{{ request.body_kind }}}}"
            body: "{{{{ request.body }}}}"
  - name: raw
    methods: [POST]
    auth: {{type: api_key}}
    mode: request_response
    workflow:
      - respond: {{status: 200, headers: {{content-type: application/octet-stream}}, body: "{{{{ request.body }}}}"}}
  - name: output
    methods: [POST]
    auth: {{type: none}}
    mode: request_response
    workflow:
      - id: doubled
        map: {{twice: "{{{{ [request.body.n, request.body.n] }}}}"}}
  - name: broken
    methods: [POST]
    auth: {{type: none}}
    mode: request_response
    workflow:
      - respond: {{status: "{{{{ request.body.status }}}}"}}
  - name: custom-accept
    methods: [POST]
    auth: {{type: none}}
    response:
      status: 200
      headers: {{X-Execution: "{{{{ execution.id }}}}"}}
      body: {{received: true, id: "{{{{ execution.id }}}}", echo: "{{{{ request.body.ref }}}}"}}
  - name: partner
    methods: [POST]
    auth: {{type: basic, username: partner, password: "correct horse battery staple"}}
    workflow: [{{id: ok, map: {{ok: true}}}}]
  - name: github
    methods: [POST]
    auth: {{type: hmac, preset: github, secret: "${{env:TEST_HMAC_SECRET}}"}}
    mode: request_response
    workflow: [{{respond: {{status: 200, body: "{{{{ request.body }}}}"}}}}]
  - name: stripe
    methods: [POST]
    auth: {{type: hmac, preset: stripe, secret: "${{env:TEST_HMAC_SECRET}}", tolerance: 60s}}
    mode: request_response
    workflow: [{{respond: {{status: 200, body: "{{{{ request.body }}}}"}}}}]
  - name: shopify
    methods: [POST]
    auth: {{type: hmac, preset: shopify, secret: "${{env:TEST_HMAC_SECRET}}"}}
    mode: request_response
    workflow: [{{respond: {{status: 200, body: "{{{{ request.body }}}}"}}}}]
  - name: slack
    methods: [POST]
    auth: {{type: hmac, preset: slack, secret: "${{env:TEST_HMAC_SECRET}}", tolerance: 60s}}
    mode: request_response
    workflow: [{{respond: {{status: 200, body: "{{{{ request.body }}}}"}}}}]
  - name: standard
    methods: [POST]
    auth: {{type: hmac, preset: standard-webhooks, secret: "${{env:TEST_WHSEC}}", tolerance: 60s}}
    mode: request_response
    workflow: [{{respond: {{status: 200, body: "{{{{ request.body }}}}"}}}}]
  - name: limited
    methods: [POST]
    auth: {{type: api_key}}
    rate_limit: {{per_key: 2, per: 10s, burst: 3}}
    workflow: [{{id: ok, map: {{ok: true}}}}]
  - name: once
    methods: [POST]
    auth: {{type: api_key}}
    mode: request_response
    workflow: [{{respond: {{status: 201, body: {{id: "{{{{ execution.id }}}}"}}}}}}]
  - name: same-again
    methods: [POST]
    auth: {{type: api_key}}
    mode: request_response
    query:
      ct: {{type: string, default: application/json}}
    body: {{content_types: [application/json, text/plain, application/octet-stream]}}
    workflow:
      - respond:
          status: 203
          headers: {{content-type: "{{{{ request.query.ct }}}}", x-kind: "{{{{ request.body_kind }}}}"}}
          body: "{{{{ request.body }}}}"
  - name: once-async
    methods: [POST]
    auth: {{type: api_key}}
    workflow: [{{id: ok, map: {{ok: true}}}}]
  - name: ready
    auth: {{type: none}}
    mode: request_response
    workflow: [{{respond: {{status: 204}}}}]
"""

GITHUB_SECRET = b"It's a Secret to Everybody"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Contract:
    """The contract triggers in one test's workspace, with a key for the keyed ones."""

    def __init__(self, stack: Services, workspace: str, key: str, warmup: str) -> None:
        self.stack = stack
        self.workspace = workspace
        self.key = key
        self.warmup = warmup  # the fixture's own run of "raw", which proved a worker consumes

    def url(self, trigger: str) -> str:
        return f"{self.stack.base_url}/hooks/{self.workspace}/{trigger}"


@pytest.fixture
async def contract(db: Connection, workspace: str, stack: Services) -> Contract:
    await apply_yaml(db, CONTRACT.format(ws=workspace))
    key = await new_key(db, workspace, "orders", "raw", "limited", "once", "once-async", "same-again")

    async def known() -> bool | None:
        # The whole file is one registry change: once its last trigger routes, all do.
        async with httpx.AsyncClient() as client:
            answer = await client.post(f"{stack.base_url}/hooks/{workspace}/ready")
        return True if answer.status_code == 204 else None

    await eventually(known)

    async def consumed() -> httpx.Response | None:
        # Routed is not yet consumed: a worker takes up a new trigger's queue on its next
        # look (worker/triggerqueues.py). A request-response answer proves it did.
        async with httpx.AsyncClient(timeout=30) as client:
            answer = await client.post(
                f"{stack.base_url}/hooks/{workspace}/raw", content=b"x", headers={"X-API-Key": key.key}
            )
        return answer if answer.status_code == 200 else None

    warmed = await eventually(consumed, timeout=60)
    return Contract(stack, workspace, key.key, warmup=warmed.headers["x-execution-id"])


def github_signature(body: bytes) -> str:
    # As GitHub documents it: HMAC-SHA256 of the payload, hex, prefixed "sha256=".
    return "sha256=" + hmac.new(GITHUB_SECRET, body, hashlib.sha256).hexdigest()


def standard_headers(body: bytes, timestamp: int, msg_id: str = "msg_1") -> dict[str, str]:
    # As the Standard Webhooks spec documents it: base64 HMAC-SHA256 of "id.timestamp.body"
    # with the base64-decoded part of the whsec_ secret, sent as "v1,<sig>".
    key = base64.b64decode(WHSEC.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": f"v1,{signature}"}


async def test_query_headers_and_json_body_reach_the_workflow_typed(contract: Contract) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            contract.url("orders") + "?customerid=42&ratio=0.5",
            json={"a": [1, 2]},
            headers={"X-API-Key": contract.key, "X-Request-Id": "r-1", "X-Other": "dropped"},
        )
    assert answer.status_code == 201
    assert answer.headers["x-customer"] == "42"
    assert answer.json() == {
        "query": {"customerid": 42, "ratio": 0.5, "customername": "TheCompany", "urgent": False},
        # Authorization and X-Api-Key are listed in the file but credentials never travel.
        "headers": {"x-request-id": "r-1"},
        "kind": "json",
        "body": {"a": [1, 2]},
    }


@pytest.mark.parametrize(
    ("content_type", "body", "kind", "seen"),
    [
        ("application/x-www-form-urlencoded", b"a=1&b=2&b=3", "form", {"a": "1", "b": ["2", "3"]}),
        ("text/plain; charset=utf-8", "grüße".encode(), "text", "grüße"),
        ("application/xml", b"<order id='1'/>", "text", "<order id='1'/>"),
    ],
)
async def test_bodies_are_parsed_by_content_type(
    contract: Contract, content_type: str, body: bytes, kind: str, seen: object
) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.put(
            contract.url("orders") + "?customerid=1",
            content=body,
            headers={"X-API-Key": contract.key, "Content-Type": content_type},
        )
    assert answer.status_code == 201
    assert (answer.json()["kind"], answer.json()["body"]) == (kind, seen)


async def test_bytes_are_delivered_exactly(contract: Contract) -> None:
    body = bytes(range(256)) * 3
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            contract.url("raw"),
            content=body,
            headers={"X-API-Key": contract.key, "Content-Type": "image/png"},
        )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/octet-stream"
    assert answer.content == body


async def test_without_a_respond_step_the_answer_is_200_and_the_output(contract: Contract) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.post(contract.url("output"), json={"n": 3})
    assert answer.status_code == 200
    assert answer.json() == {"twice": [3, 3]}


async def test_a_run_whose_answer_is_not_an_http_status_is_502_with_the_execution_id(
    contract: Contract, db: Connection
) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.post(contract.url("broken"), json={"status": "not a status"})
    assert answer.status_code == 502
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    execution_id = problem["execution_id"]
    assert problem == {
        "type": "/problems/answer-invalid",
        "title": "The workflow's answer cannot be sent",
        "status": 502,
        "detail": "step respond_1 (respond): status 'not a status' is not an HTTP status code",
        "execution_id": execution_id,
    }
    execution = await finished_execution(db, execution_id)
    assert execution.status == "failed"
    assert execution.error == problem["detail"]


async def test_async_answer_is_configurable_with_expressions(contract: Contract) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.post(contract.url("custom-accept"), json={"ref": "A-7"})
    assert answer.status_code == 200
    execution_id = answer.headers["x-execution"]
    assert answer.json() == {"received": True, "id": execution_id, "echo": "A-7"}
    assert (
        answer.headers["location"] == f"/hooks/{contract.workspace}/custom-accept/executions/{execution_id}"
    )


async def test_basic_auth(contract: Contract) -> None:
    async with httpx.AsyncClient() as client:
        good = await client.post(
            contract.url("partner"), json={}, auth=("partner", "correct horse battery staple")
        )
        again = await client.post(
            contract.url("partner"), json={}, auth=("partner", "correct horse battery staple")
        )
        wrong = await client.post(contract.url("partner"), json={}, auth=("partner", "wrong"))
        other = await client.post(
            contract.url("partner"), json={}, auth=("someone", "correct horse battery staple")
        )
        none = await client.post(contract.url("partner"), json={})
    assert (good.status_code, again.status_code) == (202, 202)
    for refused in (wrong, none, other):
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == 'Basic realm="hookline", charset="UTF-8"'
        assert refused.json()["detail"] == "missing or invalid credentials"


async def test_basic_password_is_stored_hashed(contract: Contract, db: Connection) -> None:
    spec = await db.fetchval(
        "select spec from triggers where workspace = $1 and name = 'partner'", contract.workspace
    )
    assert "correct horse" not in str(spec)
    assert spec["auth"]["password_hash"].startswith("scrypt$")


async def test_github_signature_as_github_computes_it(contract: Contract) -> None:
    body = b'{"action": "opened"}'
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            contract.url("github"),
            content=body,
            headers={"X-Hub-Signature-256": github_signature(body), "Content-Type": "application/json"},
        )
    assert answer.status_code == 200
    assert answer.json() == {"action": "opened"}


async def test_standard_webhooks_signature_as_the_spec_computes_it(contract: Contract) -> None:
    body = b'{"type": "invoice.paid"}'
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            contract.url("standard"),
            content=body,
            headers={**standard_headers(body, int(time.time())), "Content-Type": "application/json"},
        )
    assert answer.status_code == 200


def _mac(message: bytes) -> bytes:
    return hmac.new(GITHUB_SECRET, message, hashlib.sha256).digest()


def stripe_headers(body: bytes, timestamp: int) -> dict[str, str]:
    # As Stripe documents it: hex HMAC-SHA256 of "timestamp.payload", sent as t=...,v1=...
    return {"Stripe-Signature": f"t={timestamp},v1={_mac(f'{timestamp}.'.encode() + body).hex()}"}


def shopify_headers(body: bytes, timestamp: int) -> dict[str, str]:
    # As Shopify documents it: base64 HMAC-SHA256 of the raw body (no timestamp).
    return {"X-Shopify-Hmac-Sha256": base64.b64encode(_mac(body)).decode()}


def slack_headers(body: bytes, timestamp: int) -> dict[str, str]:
    # As Slack documents it: "v0=" + hex HMAC-SHA256 of "v0:timestamp:body".
    signature = "v0=" + _mac(f"v0:{timestamp}:".encode() + body).hex()
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": signature}


SENDERS = {"stripe": stripe_headers, "shopify": shopify_headers, "slack": slack_headers}


@pytest.mark.parametrize("sender", sorted(SENDERS))
async def test_a_senders_own_signature_opens_its_preset_and_nothing_else_does(
    contract: Contract, db: Connection, sender: str
) -> None:
    sign = SENDERS[sender]
    body = b'{"id": "evt_1", "amount": 100}'
    now = int(time.time())
    sent = {"Content-Type": "application/json"}
    async with httpx.AsyncClient() as client:
        good = await client.post(contract.url(sender), content=body, headers={**sent, **sign(body, now)})
        tampered = await client.post(
            contract.url(sender), content=body.replace(b"100", b"900"), headers={**sent, **sign(body, now)}
        )
        unsigned = await client.post(contract.url(sender), content=body, headers=sent)
        refused = [tampered, unsigned]
        if sender != "shopify":  # Shopify signs no timestamp: nothing to replay-check
            for then in (now - 3600, now + 3600):  # stale (a replay), and from the future
                signed = {**sent, **sign(body, then)}
                refused.append(await client.post(contract.url(sender), content=body, headers=signed))
    assert good.status_code == 200, good.text
    assert good.json() == {"id": "evt_1", "amount": 100}
    for answer in refused:
        assert answer.status_code == 401, answer.text
        assert answer.json()["type"] == "/problems/unauthorized"
    assert {a.json()["detail"] for a in refused} == {refused[0].json()["detail"]}, (
        "says nothing of what was wrong"
    )
    async with httpx.AsyncClient() as client:
        marker = b'{"id": "evt_2", "amount": 100}'
        await marker_run(
            db, client, contract.url(sender), content=marker, headers={**sent, **sign(marker, now)}
        )
    runs = await db.fetchval(
        "select count(*) from executions where workspace = $1 and trigger = $2", contract.workspace, sender
    )
    assert runs == 2  # the good call and the marker


async def test_a_revoked_key_is_refused_by_every_ingress_within_a_second(
    contract: Contract, db: Connection, stack: Services
) -> None:
    second = stack.start("ingress-2", "--port", str(port := _free_port()))
    try:
        urls = [contract.url("once-async"), f"http://127.0.0.1:{port}/hooks/{contract.workspace}/once-async"]
        key = await new_key(db, contract.workspace, "once-async", label="to revoke")

        async def both(status: int) -> bool | None:
            async with httpx.AsyncClient() as client:
                codes = [
                    (await client.post(u, json={}, headers={"X-API-Key": key.key})).status_code for u in urls
                ]
            return True if codes == [status, status] else None

        await eventually(lambda: both(202), timeout=30)
        await revoke_key(db, contract.workspace, str(key.id))
        revoked_at = time.monotonic()
        await eventually(lambda: both(401), timeout=5, every=0.02)
        assert time.monotonic() - revoked_at < 1.0
    finally:
        stack.stop("ingress-2")
        assert second.returncode is not None


async def test_one_key_for_several_triggers_and_never_across_workspaces(
    contract: Contract, db: Connection, workspace: str
) -> None:
    other_ws = f"{workspace}-b"
    await apply_yaml(db, CONTRACT.format(ws=other_ws))
    other = await new_key(db, other_ws, "once-async", label="other workspace")
    shared = await new_key(db, contract.workspace, "once-async", label="consumer")
    await attach_key(db, contract.workspace, shared.key, ["limited"])
    await relabel_key(db, contract.workspace, str(shared.id), "consumer (renamed)")
    label = await db.fetchval("select label from api_keys where id = $1", shared.id)
    assert label == "consumer (renamed)"

    async def status(url: str, key: str) -> int:
        async with httpx.AsyncClient() as client:
            return (await client.post(url, json={}, headers={"X-API-Key": key})).status_code

    await eventually(lambda: _true_if(status(contract.url("limited"), shared.key), 202))
    assert await status(contract.url("once-async"), shared.key) == 202
    assert await status(contract.url("once-async"), other.key) == 401


async def _true_if(status: object, expected: int) -> bool | None:
    return True if await status == expected else None  # type: ignore[misc]


async def test_rate_limit_per_key_answers_429_with_retry_after(contract: Contract, db: Connection) -> None:
    second = await new_key(db, contract.workspace, "limited", label="second consumer")
    await asyncio.sleep(0.3)
    async with httpx.AsyncClient() as client:
        codes = [
            (
                await client.post(contract.url("limited"), json={}, headers={"X-API-Key": contract.key})
            ).status_code
            for _ in range(5)
        ]
        limited = await client.post(contract.url("limited"), json={}, headers={"X-API-Key": contract.key})
        other = await client.post(contract.url("limited"), json={}, headers={"X-API-Key": second.key})
    assert codes == [202, 202, 202, 429, 429]
    assert limited.status_code == 429
    assert limited.json()["type"] == "/problems/rate-limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 5
    assert other.status_code == 202


async def test_a_rate_limit_is_counted_across_ingress_processes(
    contract: Contract, db: Connection, stack: Services
) -> None:
    key = (await new_key(db, contract.workspace, "limited", label="two doors")).key
    stack.start("ingress-3", "--port", str(port := _free_port()))
    try:
        urls = [contract.url("limited"), f"http://127.0.0.1:{port}/hooks/{contract.workspace}/limited"]

        async def known_to_both() -> bool | None:
            # The second process is up and knows the trigger (a keyless call is 401 there).
            async with httpx.AsyncClient() as client:
                answer = await client.post(urls[1], json={})
            return True if answer.status_code == 401 else None

        await eventually(known_to_both, timeout=30)
        async with httpx.AsyncClient() as client:
            # Alternating between the two: the burst of 3 is shared, not 3 per process.
            codes = [
                (await client.post(urls[n % 2], json={}, headers={"X-API-Key": key})).status_code
                for n in range(6)
            ]
    finally:
        stack.stop("ingress-3")
    assert codes == [202, 202, 202, 429, 429, 429]


async def test_idempotency_key_gives_async_callers_the_first_execution(
    contract: Contract, db: Connection
) -> None:
    headers = {"X-API-Key": contract.key, "Idempotency-Key": f"k-{uuid.uuid4()}"}
    async with httpx.AsyncClient() as client:
        first = await client.post(contract.url("once-async"), json={"n": 1}, headers=headers)
        second = await client.post(contract.url("once-async"), json={"n": 1}, headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    await finished_execution(db, first.json()["execution_id"])
    async with httpx.AsyncClient() as client:
        await marker_run(
            db, client, contract.url("once-async"), json={"n": 2}, headers={"X-API-Key": contract.key}
        )
    runs = await db.fetchval(
        "select count(*) from executions where workspace = $1 and trigger = 'once-async'", contract.workspace
    )
    assert runs == 2  # the first call and the marker, no second run of the first


async def test_idempotency_key_replays_the_first_answer_without_a_second_run(
    contract: Contract, db: Connection
) -> None:
    headers = {"X-API-Key": contract.key, "webhook-id": f"evt-{uuid.uuid4()}"}
    async with httpx.AsyncClient() as client:
        first = await client.post(contract.url("once"), json={}, headers=headers)
        second = await client.post(contract.url("once"), json={}, headers=headers)
        fresh = await client.post(contract.url("once"), json={}, headers={"X-API-Key": contract.key})
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["x-execution-id"] == first.headers["x-execution-id"]
    assert fresh.json() != first.json()
    runs = await db.fetchval(
        "select count(*) from executions where workspace = $1 and trigger = 'once'", contract.workspace
    )
    assert runs == 2


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b'{"a": [1, "two"], "b": null}'),
        ("text/plain; charset=utf-8", "caf\u00e9 \u2603".encode()),
        ("application/octet-stream", b"\x00\xffbin"),
        (None, b""),
    ],
    ids=["json", "text", "bytes", "empty"],
)
async def test_a_repeated_idempotency_key_gets_a_byte_identical_answer(
    contract: Contract, db: Connection, content_type: str | None, body: bytes
) -> None:
    headers = {"X-API-Key": contract.key, "Idempotency-Key": f"k-{uuid.uuid4()}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    params = {"ct": content_type} if content_type is not None else {}
    async with httpx.AsyncClient() as client:
        first = await client.post(contract.url("same-again"), content=body, headers=headers, params=params)
        second = await client.post(contract.url("same-again"), content=body, headers=headers, params=params)
    assert first.status_code == 203, first.text

    def seen(answer: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
        kept = [(k, v) for k, v in answer.headers.multi_items() if k.lower() != "date"]
        return answer.status_code, kept, answer.content

    assert seen(second) == seen(first)
    if content_type == "application/octet-stream":
        assert first.content == body  # the bytes themselves, not their base64
    runs = await db.fetchval(
        "select count(*) from executions where id = $1", uuid.UUID(first.headers["x-execution-id"])
    )
    assert runs == 1


async def test_an_idempotency_key_is_scoped_to_the_callers_api_key(
    contract: Contract, db: Connection
) -> None:
    other = (await new_key(db, contract.workspace, "once", label="consumer-b")).key
    event = {"webhook-id": f"evt-{uuid.uuid4()}"}
    async with httpx.AsyncClient() as client:

        async def known() -> httpx.Response | None:
            answer = await client.post(contract.url("once"), json={}, headers={"X-API-Key": other, **event})
            return answer if answer.status_code == 201 else None

        theirs = await eventually(known)  # the new key reaches the ingress within a second
        mine = await client.post(contract.url("once"), json={}, headers={"X-API-Key": contract.key, **event})
        mine_again = await client.post(
            contract.url("once"), json={}, headers={"X-API-Key": contract.key, **event}
        )
    assert mine.status_code == 201
    assert mine.json() != theirs.json(), "another consumer's answer was replayed"
    assert mine_again.json() == mine.json()
    # The status URL, too, shows an execution only to the key that made it.
    status_url = contract.url("once") + f"/executions/{mine.json()['id']}"
    async with httpx.AsyncClient() as client:

        async def recorded() -> httpx.Response | None:
            answer = await client.get(status_url, headers={"X-API-Key": contract.key})
            return answer if answer.status_code == 200 else None

        assert (await eventually(recorded)).json()["status"] == "succeeded"
        foreign = await client.get(status_url, headers={"X-API-Key": other})
    assert foreign.status_code == 404
    assert foreign.json()["type"] == "/problems/not-found"
    runs = await db.fetchval(
        "select count(*) from executions where workspace = $1 and trigger = 'once'", contract.workspace
    )
    assert runs == 2


async def test_rejected_calls_are_kept_per_trigger_without_credentials(
    contract: Contract, db: Connection
) -> None:
    body = b'{"action": "opened"}'
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            contract.url("github"),
            content=body,
            headers={
                "X-Hub-Signature-256": github_signature(b"other"),
                "Authorization": "Bearer secret-token",
            },
        )
    assert answer.status_code == 401

    async def recorded() -> object:
        return await db.fetchrow(
            "select * from rejected_calls where workspace = $1 and trigger = 'github'", contract.workspace
        )

    row = await eventually(recorded)
    assert (row["status"], row["problem_type"], row["reason"]) == (401, "unauthorized", "mismatch")
    assert row["headers"]["authorization"] == "<redacted>"
    assert row["body"] is None  # bodies are off unless the trigger keeps them
    assert row["body_size"] == len(body)


def _free_port() -> int:
    from tests.stack import free_port

    return free_port()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.binary(max_size=4096),
    content_type=st.sampled_from(["application/octet-stream", "image/png", "x/y"]),
)
def test_any_byte_body_reaches_the_workflow_unchanged(
    contract: Contract, body: bytes, content_type: str
) -> None:
    answer = httpx.post(
        contract.url("raw"),
        content=body,
        headers={"X-API-Key": contract.key, "Content-Type": content_type},
        timeout=30,
    )
    assert answer.status_code == 200
    assert answer.content == body


BAD_INPUTS = [
    # (case, trigger, method, query, headers, body, status, problem type)
    (
        "wrong key",
        "orders",
        "POST",
        "?customerid=1",
        {"X-API-Key": "hk_wrong-key-000000000000000000000"},
        b"{}",
        401,
        "unauthorized",
    ),
    (
        "revoked key",
        "orders",
        "POST",
        "?customerid=1",
        {"X-API-Key": "{revoked}"},
        b"{}",
        401,
        "unauthorized",
    ),
    (
        "other workspace's key",
        "orders",
        "POST",
        "?customerid=1",
        {"X-API-Key": "{foreign}"},
        b"{}",
        401,
        "unauthorized",
    ),
    ("stale HMAC timestamp", "standard", "POST", "", {"stale": "1"}, b"{}", 401, "unauthorized"),
    (
        "tampered body",
        "github",
        "POST",
        "",
        {"X-Hub-Signature-256": github_signature(b'{"a":1}')},
        b'{"a":2}',
        401,
        "unauthorized",
    ),
    (
        "wrong method",
        "orders",
        "DELETE",
        "?customerid=1",
        {"X-API-Key": "{key}"},
        b"",
        405,
        "method-not-allowed",
    ),
    (
        "missing required parameter",
        "orders",
        "POST",
        "",
        {"X-API-Key": "{key}"},
        b"{}",
        400,
        "invalid-parameter",
    ),
    (
        "bad integer",
        "orders",
        "POST",
        "?customerid=abc",
        {"X-API-Key": "{key}"},
        b"{}",
        400,
        "invalid-parameter",
    ),
    (
        "undeclared parameter",
        "orders",
        "POST",
        "?customerid=1&x=2",
        {"X-API-Key": "{key}"},
        b"{}",
        400,
        "invalid-parameter",
    ),
    (
        "oversized body",
        "orders",
        "POST",
        "?customerid=1",
        {"X-API-Key": "{key}"},
        b"[" + b"1," * 2000 + b"1]",
        413,
        "body-too-large",
    ),
    (
        "malformed JSON",
        "orders",
        "POST",
        "?customerid=1",
        {"X-API-Key": "{key}"},
        b'{"a": ',
        400,
        "malformed-body",
    ),
    (
        "deeply nested JSON",
        "orders",
        "POST",
        "?customerid=1",
        {"X-API-Key": "{key}"},
        b"[" * 1000 + b"]" * 1000,
        400,
        "malformed-body",
    ),
    (
        "unsupported content type",
        "orders",
        "POST",
        "?customerid=1",
        {"X-API-Key": "{key}", "Content-Type": "text/csv"},
        b"a,b",
        415,
        "unsupported-media-type",
    ),
    (
        # No Content-Length: the limit is enforced while the body streams in.
        "oversized body, streamed",
        "orders",
        "POST",
        "?customerid=1",
        {"X-API-Key": "{key}"},
        b"[" + b"1," * 2000 + b"1]",
        413,
        "body-too-large",
    ),
    ("unknown trigger", "nope", "POST", "", {"X-API-Key": "{key}"}, b"{}", 404, "trigger-not-found"),
    (
        "unknown workspace",
        "/no-such-workspace/orders",
        "POST",
        "",
        {"X-API-Key": "{key}"},
        b"{}",
        404,
        "trigger-not-found",
    ),
]


@pytest.mark.parametrize(
    ("case", "trigger", "method", "query", "headers", "body", "status", "problem"),
    BAD_INPUTS,
    ids=[case[0] for case in BAD_INPUTS],
)
async def test_bad_input_gets_its_status_and_problem_and_runs_nothing(
    contract: Contract,
    db: Connection,
    case: str,
    trigger: str,
    method: str,
    query: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
    problem: str,
) -> None:
    revoked = await new_key(db, contract.workspace, "orders", label="revoked")
    await revoke_key(db, contract.workspace, str(revoked.id))
    foreign_ws = f"{contract.workspace}-x"
    await apply_yaml(db, CONTRACT.format(ws=foreign_ws))
    foreign = await new_key(db, foreign_ws, "orders", label="foreign")
    await asyncio.sleep(0.3)  # the revocation reaches the ingress (it takes well under a second)
    values = {"key": contract.key, "revoked": revoked.key, "foreign": foreign.key}
    sent = {"Content-Type": "application/json", **{k: v.format(**values) for k, v in headers.items()}}
    if sent.pop("stale", None):
        sent.update(standard_headers(body, int(time.time()) - 3600))
    url = contract.stack.base_url + "/hooks" + trigger if trigger.startswith("/") else contract.url(trigger)
    content: bytes | AsyncIterator[bytes] = body
    if case.endswith("streamed"):

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(body), 512):
                yield body[start : start + 512]

        content = chunks()
    async with httpx.AsyncClient() as client:
        answer = await client.request(method, url + query, content=content, headers=sent)
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/problem+json"
    document = answer.json()
    assert document["type"] == f"/problems/{problem}"
    assert document["status"] == status
    assert "Traceback" not in answer.text
    if status == 405:
        assert answer.headers["allow"] == "POST, PUT"
    if problem == "invalid-parameter":
        assert document["parameter"] == ("x" if "x=" in query else "customerid")
    async with httpx.AsyncClient() as client:
        marker = await marker_run(
            db, client, contract.url("once-async"), json={}, headers={"X-API-Key": contract.key}
        )
    runs = await db.fetch(
        "select id from executions where workspace = $1 and trigger <> 'ready' and id <> $2",
        contract.workspace,
        uuid.UUID(contract.warmup),
    )
    assert [str(r["id"]) for r in runs] == [marker]
