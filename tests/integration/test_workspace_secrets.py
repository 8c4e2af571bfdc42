"""Secrets per workspace on a real stack (security review #5): `${secret:NAME}` and `${env:NAME}`.

A workspace token's definitions resolve only their own workspace's secrets, and of the
environment only the names the operator allowed that workspace; anything else is answered
as an unset name would be, so a tenant learns nothing of what the others use.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.db.pool import Connection
from shared.db.secrets import SecretCipher
from tests.conftest import ENV_ALLOWED_WORKSPACE, TEST_SECRETS, TEST_SECRETS_KEY
from tests.helpers import apply_yaml, eventually, finished_execution
from tests.stack import ROOT, Services

ADMIN = {"Authorization": "Bearer test-admin-token-0123456789"}
Client = Callable[[str], Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def token_of(admin: httpx.AsyncClient, stack: Services) -> AsyncIterator[Client]:
    """The management API as a workspace token of the workspace named (created if need be)."""
    clients: list[httpx.AsyncClient] = []

    async def make(workspace: str) -> httpx.AsyncClient:
        assert (await admin.post("/workspaces", json={"name": workspace})).status_code in (200, 201)
        made = await admin.post("/tokens", json={"label": "tenant", "workspace": workspace})
        headers = {"Authorization": f"Bearer {made.json()['token']}"}
        client = httpx.AsyncClient(base_url=f"{stack.base_url}/api", headers=headers, timeout=20)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


def hmac_trigger(name: str, secret: str) -> dict[str, Any]:
    return {
        "name": name,
        "auth": {"type": "hmac", "preset": "github", "secret": secret},
        "workflow": [{"id": "seen", "map": {"ok": True}}],
    }


def github_signature(secret: str, body: bytes) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


async def signed_call(stack: Services, workspace: str, trigger: str, secret: str) -> int:
    """The status of a call signed with `secret`, once the trigger is routable (not 404/503)."""
    body = b'{"n": 1}'

    async def answered() -> int | None:
        async with httpx.AsyncClient(base_url=stack.base_url) as client:
            answer = await client.post(
                f"/hooks/{workspace}/{trigger}", content=body, headers=github_signature(secret, body)
            )
        return answer.status_code if answer.status_code not in (404, 503) else None

    return await eventually(answered)


async def test_another_workspace_binding_env_demo_target_key_gets_the_same_answer_as_an_unset_name(
    token_of: Client, admin: httpx.AsyncClient, stack: Services
) -> None:
    beta = f"beta-{uuid.uuid4().hex[:8]}"
    tenant = await token_of(beta)
    for variable in ("DEMO_TARGET_KEY", "NOPE_NOT_SET_4711"):
        for field, auth in [
            ("auth.secret", {"type": "hmac", "preset": "github", "secret": f"${{env:{variable}}}"}),
            ("auth.password", {"type": "basic", "username": "u", "password": f"${{env:{variable}}}"}),
        ]:
            definition = {"name": "grab", "auth": auth, "workflow": [{"id": "m", "map": {}}]}
            answer = await tenant.post(f"/workspaces/{beta}/triggers", json=definition)
            assert (answer.status_code, answer.json()["detail"]) == (
                400,
                f"trigger grab, field {field}: ${{env:{variable}}} is not available to workspace {beta}",
            )
    # The operator (admin token) writes what it chooses; a workspace may use what it was given.
    operator = hmac_trigger(f"ops-{uuid.uuid4().hex[:6]}", "${env:DEMO_TARGET_KEY}")
    assert (await admin.post(f"/workspaces/{beta}/triggers", json=operator)).status_code == 201
    allowed = await token_of(ENV_ALLOWED_WORKSPACE)
    given = hmac_trigger(f"given-{uuid.uuid4().hex[:6]}", "${env:TEST_HMAC_SECRET}")
    assert (
        await allowed.post(f"/workspaces/{ENV_ALLOWED_WORKSPACE}/triggers", json=given)
    ).status_code == 201
    status = await signed_call(stack, ENV_ALLOWED_WORKSPACE, given["name"], TEST_SECRETS["TEST_HMAC_SECRET"])
    assert status == 202
    # Who wrote each version is recorded with it.
    for workspace, name, author in [
        (beta, operator["name"], "operator"),
        (ENV_ALLOWED_WORKSPACE, given["name"], "workspace"),
    ]:
        versions = (await admin.get(f"/workspaces/{workspace}/triggers/{name}/versions")).json()
        assert [(v["version"], v["author"]) for v in versions] == [(1, author)]


async def test_a_secret_of_workspace_a_cannot_be_resolved_by_workspace_b(
    token_of: Client, stack: Services, db: Connection
) -> None:
    alpha, beta = f"alpha-{uuid.uuid4().hex[:8]}", f"beta-{uuid.uuid4().hex[:8]}"
    tenant_a, tenant_b = await token_of(alpha), await token_of(beta)
    value = f"alpha-signing-{uuid.uuid4().hex}"
    assert (
        await tenant_a.put(f"/workspaces/{alpha}/secrets/SIGNING", json={"value": value})
    ).status_code == 201
    # B can neither set, list nor delete A's secrets...
    assert (
        await tenant_b.put(f"/workspaces/{alpha}/secrets/SIGNING", json={"value": "x"})
    ).status_code == 403
    assert (await tenant_b.get(f"/workspaces/{alpha}/secrets")).status_code == 403
    assert (await tenant_b.delete(f"/workspaces/{alpha}/secrets/SIGNING")).status_code == 403
    # ...nor bind them: the same answer as for a name no workspace has.
    for name in ("SIGNING", "NEVER_SET"):
        answer = await tenant_b.post(
            f"/workspaces/{beta}/triggers", json=hmac_trigger("grab", f"${{secret:{name}}}")
        )
        assert (answer.status_code, answer.json()["detail"]) == (
            400,
            f"trigger grab, field auth.secret: workspace {beta} has no secret {name}",
        )
    # An operator's connection in B naming the secret does not reach A's either (the worker).
    await apply_yaml(
        db,
        f"workspace: {beta}\n"
        "connections:\n  crm: {type: http, base_url: 'http://127.0.0.1:9', "
        "headers: {Authorization: 'Bearer ${secret:SIGNING}'}}\n"
        "triggers:\n  - name: lookup\n    auth: {type: none}\n    retry: {max_attempts: 1}\n"
        "    workflow: [{id: get, http: {connection: crm, path: /x}}]\n",
    )

    async def accepted() -> str | None:
        async with httpx.AsyncClient(base_url=stack.base_url) as client:
            answer = await client.post(f"/hooks/{beta}/lookup", json={})
        return str(answer.json()["execution_id"]) if answer.status_code == 202 else None

    run = await finished_execution(db, await eventually(accepted), timeout=20)
    assert (run.status, run.error) == (
        "dead",
        f"step get (http): connection crm: workspace {beta} has no secret SIGNING on this worker",
    )
    # A's own trigger resolves it: a call signed with the value is accepted, another is not.
    assert (
        await tenant_a.post(f"/workspaces/{alpha}/triggers", json=hmac_trigger("in", "${secret:SIGNING}"))
    ).status_code == 201
    assert await signed_call(stack, alpha, "in", value) == 202
    assert await signed_call(stack, alpha, "in", "a-guess") == 401


async def test_the_stored_ciphertext_does_not_contain_the_value_and_is_never_shown_again(
    token_of: Client, admin: httpx.AsyncClient, db: Connection
) -> None:
    alpha = f"alpha-{uuid.uuid4().hex[:8]}"
    tenant = await token_of(alpha)
    value = f"sk_live_{uuid.uuid4().hex}"
    assert (
        await tenant.put(f"/workspaces/{alpha}/secrets/STRIPE_KEY", json={"value": value})
    ).status_code == 201
    assert (
        await tenant.put(f"/workspaces/{alpha}/secrets/STRIPE_KEY", json={"value": value})
    ).status_code == 204
    listed = await tenant.get(f"/workspaces/{alpha}/secrets")
    assert [s["name"] for s in listed.json()] == ["STRIPE_KEY"]
    assert set(listed.json()[0]) == {"name", "created_at", "updated_at"}
    assert value not in listed.text
    sealed = await db.fetchval(
        "select ciphertext from workspace_secrets where workspace = $1 and name = 'STRIPE_KEY'", alpha
    )
    for form in (value.encode(), value.encode().hex().encode(), value[8:].encode()):
        assert form not in sealed
    cipher = SecretCipher(TEST_SECRETS_KEY)
    assert cipher.decrypt(alpha, "STRIPE_KEY", sealed) == value
    # Bound to its workspace and name: the same bytes under another row do not open.
    assert cipher.decrypt("beta", "STRIPE_KEY", sealed) is None
    assert cipher.decrypt(alpha, "OTHER", sealed) is None
    assert (await tenant.delete(f"/workspaces/{alpha}/secrets/STRIPE_KEY")).status_code == 204
    assert (await tenant.get(f"/workspaces/{alpha}/secrets")).json() == []


def hookline(stack: Services, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """`hookline ARGS` against the stack, with `stdin` as its input."""
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", *args],
        env={**os.environ, **stack.env},
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


async def test_the_cli_reads_a_secret_from_stdin_lists_names_only_and_a_basic_password_uses_it(
    stack: Services, db: Connection, workspace: str, tmp_path: Path
) -> None:
    await apply_yaml(db, f"workspace: {workspace}\n")
    value = f"partner-pw-{uuid.uuid4().hex}"
    made = hookline(stack, "secrets", "set", "--workspace", workspace, "PARTNER_PW", stdin=value + "\n")
    assert (made.returncode, made.stdout, made.stderr) == (0, f"secret {workspace}/PARTNER_PW: created\n", "")
    listed = hookline(stack, "secrets", "list", "--workspace", workspace)
    assert listed.returncode == 0
    assert [line.split()[0] for line in listed.stdout.splitlines()] == ["NAME", "PARTNER_PW"]
    assert value not in listed.stdout
    file = tmp_path / "partner.yaml"
    file.write_text(
        f"workspace: {workspace}\ntriggers:\n  - name: partner\n"
        "    auth: {type: basic, username: partner, password: '${secret:PARTNER_PW}'}\n"
        "    workflow: [{id: seen, map: {ok: true}}]\n"
    )
    applied = hookline(stack, "apply", "-f", str(file))
    assert applied.returncode == 0, applied.stderr

    async def status(password: str) -> int | None:
        async with httpx.AsyncClient(base_url=stack.base_url) as client:
            answer = await client.post(f"/hooks/{workspace}/partner", json={}, auth=("partner", password))
        # 404 / 503: the ingress or the dispatcher has not caught up with the new trigger yet.
        return answer.status_code if answer.status_code not in (404, 503) else None

    assert await eventually(lambda: status(value)) == 202
    assert await status(value + "x") == 401
    assert hookline(stack, "secrets", "delete", "--workspace", workspace, "PARTNER_PW").stdout == "deleted\n"
    gone = hookline(stack, "secrets", "delete", "--workspace", workspace, "PARTNER_PW")
    assert (gone.returncode, gone.stderr) == (
        1,
        f"hookline: workspace {workspace} has no secret PARTNER_PW\n",
    )


async def test_a_stored_workspace_definition_naming_another_tenants_variable_is_not_resolved_by_the_ingress(
    stack: Services, db: Connection, workspace: str, demo_env: dict[str, str]
) -> None:
    # Stored before definitions were checked (or the operator allowed it once, then no more):
    # the ingress still resolves a workspace's ${env:...} only as far as HOOKLINE_WORKSPACE_ENV says.
    await apply_yaml(
        db,
        f"workspace: {workspace}\ntriggers:\n  - name: in\n"
        "    auth: {type: hmac, preset: github, secret: '${env:TEST_HMAC_SECRET}'}\n"
        "    workflow: [{id: seen, map: {ok: true}}]\n",
    )
    assert await signed_call(stack, workspace, "in", TEST_SECRETS["TEST_HMAC_SECRET"]) == 202
    await db.execute(
        "update triggers set author = 'workspace', version = version + 1,"
        " spec = jsonb_set(spec, '{auth,secret}', '\"${env:DEMO_TARGET_KEY}\"')"
        " where workspace = $1 and name = 'in'",
        workspace,
    )
    body = b'{"n": 1}'

    async def refused() -> httpx.Response | None:
        async with httpx.AsyncClient(base_url=stack.base_url) as client:
            answer = await client.post(
                f"/hooks/{workspace}/in",
                content=body,
                headers=github_signature(demo_env["DEMO_TARGET_KEY"], body),
            )
        assert answer.status_code != 202, "another tenant's variable opened the trigger"
        return answer if answer.status_code == 503 else None

    answer = await eventually(refused)
    assert (answer.status_code, answer.json()["detail"]) == (
        503,
        f"this trigger cannot check credentials: ${{env:DEMO_TARGET_KEY}} is not available to workspace {workspace}",
    )
