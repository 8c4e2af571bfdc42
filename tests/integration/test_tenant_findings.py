"""The smaller tenant findings of the security review, each as an attacker would check it.

#7 a tenant-chosen scrypt cost, #16 a key-exists oracle across workspaces, #17 a replay that
drops its caller, #18 idempotency keys without a fingerprint and presets that let a captured
delivery run again.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid

import httpx
import pytest

from shared.db.pool import Connection
from tests.helpers import apply_yaml, eventually, finished_execution
from tests.stack import Services

ADMIN = {"Authorization": "Bearer test-admin-token-0123456789"}
GITHUB_SECRET = b"It's a Secret to Everybody"  # TEST_HMAC_SECRET of the stack

TRIGGERS = """
workspace: {ws}
triggers:
  - name: inbox
    auth: {{type: api_key}}
    workflow: [{{id: got, map: {{order: "{{{{ request.body.order }}}}"}}}}]
  - name: github
    auth: {{type: hmac, preset: github, secret: "${{env:TEST_HMAC_SECRET}}"}}
    workflow: [{{id: got, map: "{{{{ request.body }}}}"}}]
  - name: ready
    auth: {{type: none}}
    mode: request_response
    workflow: [{{respond: {{status: 204}}}}]
"""


async def _ready(db: Connection, stack: Services, workspace: str) -> str:
    await apply_yaml(db, TRIGGERS.format(ws=workspace))
    base = f"{stack.base_url}/hooks/{workspace}"

    async def routable() -> bool | None:
        async with httpx.AsyncClient() as client:
            return True if (await client.post(f"{base}/ready")).status_code == 204 else None

    await eventually(routable, timeout=20)
    return base


@pytest.fixture
async def hooks(db: Connection, stack: Services, workspace: str) -> str:
    """The base URL of the test workspace's hooks, its triggers routable."""
    return await _ready(db, stack, workspace)


async def _key(api: httpx.AsyncClient, workspace: str, key: str | None = None) -> str:
    body = {"label": "k", "triggers": ["inbox"], **({"key": key} if key else {})}
    created = await api.post(f"/workspaces/{workspace}/keys", json=body)
    assert created.status_code == 201, created.text
    return str(created.json()["key"])


async def _accepted(url: str, **kwargs: object) -> httpx.Response:
    """The first 202 (a new key reaches the ingress with the registry notification)."""

    async def probe() -> httpx.Response | None:
        async with httpx.AsyncClient() as client:
            answer = await client.post(url, **kwargs)  # type: ignore[arg-type]
        return answer if answer.status_code == 202 else None

    return await eventually(probe, timeout=5)


async def test_a_basic_password_hash_with_a_tenant_chosen_scrypt_cost_is_refused_from_the_api(
    api: httpx.AsyncClient, hooks: str, workspace: str, stack: Services
) -> None:
    token = (await api.post("/tokens", json={"label": "tenant", "workspace": workspace})).json()["token"]
    # As the review's probe: p=64, 2.75 s per guess at the ingress instead of 0.05 s.
    costly = "scrypt$16384$8$64$c2FsdHNhbHRzYWx0c2FsdA==$" + "A" * 43 + "="
    definition = {"name": "costly", "auth": {"type": "basic", "username": "u", "password_hash": costly}}
    async with httpx.AsyncClient(
        base_url=f"{stack.base_url}/api", headers={"Authorization": f"Bearer {token}"}
    ) as tenant:
        answer = await tenant.post(f"/workspaces/{workspace}/triggers", json=definition)
        assert answer.status_code == 400
        assert (answer.json()["type"], answer.json()["detail"]) == (
            "/problems/spec-invalid",
            "definition: trigger costly, field auth.password_hash: cannot be given; write `password` "
            "(literal or ${env:NAME}) and hookline stores its hash",
        )
        assert (await tenant.get(f"/workspaces/{workspace}/triggers/costly")).status_code == 404


async def test_another_workspace_pasting_an_existing_key_is_not_told_that_it_exists(
    api: httpx.AsyncClient, hooks: str, workspace: str, db: Connection, stack: Services
) -> None:
    theirs = await _key(api, workspace)
    other = f"{workspace}-b"
    await _ready(db, stack, other)
    # The same answer as for any new key: nothing says the key is in use elsewhere.
    pasted = await api.post(
        f"/workspaces/{other}/keys", json={"label": "k", "triggers": ["inbox"], "key": theirs}
    )
    assert pasted.status_code == 201
    assert pasted.json()["key"] == theirs
    fresh = await api.post(
        f"/workspaces/{other}/keys",
        json={"label": "k", "triggers": ["inbox"], "key": "a-fresh-key-" + "x" * 32},
    )
    assert fresh.status_code == 201
    # Each opens its own workspace's trigger.
    assert (
        await _accepted(f"{hooks}/inbox", json={"order": 1}, headers={"X-API-Key": theirs})
    ).status_code == 202
    other_url = hooks.replace(f"/hooks/{workspace}", f"/hooks/{other}")
    assert (
        await _accepted(f"{other_url}/inbox", json={"order": 1}, headers={"X-API-Key": theirs})
    ).status_code == 202
    # Within a workspace, its own keys are told apart, as before.
    again = await api.post(
        f"/workspaces/{other}/keys", json={"label": "k", "triggers": ["inbox"], "key": theirs}
    )
    assert (again.status_code, again.json()["detail"]) == (
        400,
        "this key is already in use in this workspace; generate a new one",
    )


async def test_a_replay_keeps_its_caller_so_another_key_of_the_trigger_gets_404(
    api: httpx.AsyncClient, hooks: str, workspace: str, db: Connection
) -> None:
    mine, another = await _key(api, workspace), await _key(api, workspace)
    first = (await _accepted(f"{hooks}/inbox", json={"order": 7}, headers={"X-API-Key": mine})).json()
    await finished_execution(db, first["execution_id"])
    replayed = await api.post(f"/executions/{first['execution_id']}/replay")
    assert replayed.status_code == 202
    replay_id = replayed.json()["execution_id"]
    await finished_execution(db, replay_id)
    status_url = f"{hooks}/inbox/executions/{replay_id}"
    async with httpx.AsyncClient() as client:
        theirs = await client.get(status_url, headers={"X-API-Key": another})
        own = await client.get(status_url, headers={"X-API-Key": mine})
    assert theirs.status_code == 404
    assert (own.status_code, own.json()["status"]) == (200, "succeeded")


async def test_the_same_idempotency_key_with_another_body_is_refused_with_422(
    api: httpx.AsyncClient, hooks: str, workspace: str
) -> None:
    key = await _key(api, workspace)
    headers = {"X-API-Key": key, "Idempotency-Key": f"order-{uuid.uuid4()}"}
    first = await _accepted(f"{hooks}/inbox", json={"order": 1}, headers=headers)
    async with httpx.AsyncClient() as client:
        same = await client.post(f"{hooks}/inbox", json={"order": 1}, headers=headers)
        other_body = await client.post(f"{hooks}/inbox", json={"order": 2}, headers=headers)
        other_query = await client.post(f"{hooks}/inbox?x=1", json={"order": 1}, headers=headers)
    assert (same.status_code, same.json()["execution_id"]) == (202, first.json()["execution_id"])
    for refused in (other_body, other_query):
        assert refused.status_code == 422
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json() == {
            "type": "/problems/idempotency-key-reused",
            "title": "Idempotency key reused",
            "status": 422,
            "detail": "this idempotency key was used for another request (method, query or body) "
            "within the window; use a new key for a new request",
        }


async def test_a_replayed_github_delivery_is_deduplicated_on_x_github_delivery(
    hooks: str, db: Connection
) -> None:
    body = b'{"action": "opened", "number": 1}'
    signature = "sha256=" + hmac.new(GITHUB_SECRET, body, hashlib.sha256).hexdigest()
    delivery = str(uuid.uuid4())
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": signature,
        "X-GitHub-Delivery": delivery,
    }
    async with httpx.AsyncClient() as client:
        first = await client.post(f"{hooks}/github", content=body, headers=headers)
        replayed = await client.post(f"{hooks}/github", content=body, headers=headers)
        # An Idempotency-Key added by whoever replays it does not make it a new delivery.
        dodged = await client.post(
            f"{hooks}/github", content=body, headers={**headers, "Idempotency-Key": "fresh"}
        )
    assert [a.status_code for a in (first, replayed, dodged)] == [202, 202, 202]
    execution_id = first.json()["execution_id"]
    assert {replayed.json()["execution_id"], dodged.json()["execution_id"]} == {execution_id}
    await finished_execution(db, execution_id)
    runs = await db.fetchval(
        "select count(*) from executions where workspace = $1 and trigger = 'github'",
        hooks.rsplit("/", 1)[1],
    )
    assert runs == 1
