"""Every file in examples/ applied as it is and run through the whole pipeline.

The session's services get what the examples' connections reference (DEMO_TARGET_URL,
DEMO_TARGET_KEY, DEMO_ERP_DSN, see tests/conftest.py), as `hookline up` gives its own.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from shared.db.pool import Connection
from shared.db.registry import apply_workspace
from shared.devstack.demo_target import DemoTarget
from shared.spec.loader import load_file
from tests.helpers import eventually, finished_execution, new_key
from tests.stack import ROOT, Services

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


@pytest.fixture
async def key(db: Connection, stack: Services) -> str:
    """Apply every example (idempotent) and a key for all demo triggers (the demo ERP is the session's)."""
    workspaces = [w for path in EXAMPLES for w in load_file(path)]
    async with db.transaction():
        for workspace in workspaces:
            await apply_workspace(db, workspace)
    triggers = [t.name for w in workspaces for t in w.triggers]
    created = await new_key(db, "demo", *triggers, label=f"examples-{uuid.uuid4().hex[:6]}")

    async def routable() -> bool | None:
        async with httpx.AsyncClient(base_url=stack.base_url) as client:
            answer = await client.get(
                "/hooks/demo/stock-at-hand?item=A-100", headers={"X-API-Key": created.key}
            )
        return True if answer.status_code == 200 else None

    await eventually(routable, timeout=20)
    return created.key


async def call(stack: Services, key: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=15) as client:
        return await client.request(method, path, headers={"X-API-Key": key}, **kwargs)


async def test_echo_answers_with_what_it_was_sent(stack: Services, key: str) -> None:
    answer = await call(stack, key, "POST", "/hooks/demo/echo?x=1", json={"a": 1})
    assert answer.status_code == 200
    assert answer.json() == {
        "body": {"a": 1},
        "query": {"x": "1"},
        "method": "POST",
        "execution_id": answer.headers["x-execution-id"],
    }


async def test_create_customer_creates_it_in_the_crm_and_answers_its_id(
    stack: Services, key: str, db: Connection, demo_target: DemoTarget
) -> None:
    answer = await call(
        stack, key, "POST", "/hooks/demo/create-customer?customerid=123&customername=TheCompany"
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    customer = demo_target.store.customers[body["customer"]]
    assert body == {"customer": customer["id"], "name": "TheCompany"}
    assert customer == {"id": body["customer"], "name": "TheCompany", "external_id": 123}

    execution = await finished_execution(db, answer.headers["x-execution-id"])
    assert [(s["id"], s["kind"], s["status"]) for s in execution.steps] == [
        ("payload", "map", "succeeded"),
        ("create", "http", "succeeded"),
        ("created", "condition", "succeeded"),
        ("created_then_1", "respond", "succeeded"),
    ]
    create = execution.steps[1]
    assert create["request"] == {
        "method": "POST",
        "url": "${env:DEMO_TARGET_URL}/customers",
        "query": [],
        # The step's idempotency key: the same on every attempt of this step of this execution.
        "headers": {
            "api-key": "[redacted]",
            "Idempotency-Key": f"{execution.id}:create",
            "Content-Type": "application/json",
        },
    }
    assert create["output"]["status"] == 201
    # The resolved secret is nowhere in the run log, only its reference.
    assert demo_target.api_key not in json.dumps(execution.steps) + json.dumps(execution.response)


async def test_create_customer_passes_on_the_crms_refusal(stack: Services, key: str) -> None:
    answer = await call(stack, key, "POST", "/hooks/demo/create-customer?customerid=124&customername=")
    assert (answer.status_code, answer.json()) == (422, {"error": "name is required"})


async def test_stock_at_hand_sums_the_warehouses_of_an_item(stack: Services, key: str) -> None:
    answer = await call(stack, key, "GET", "/hooks/demo/stock-at-hand", params={"item": "A-100"})
    assert answer.status_code == 200
    assert answer.json() == {
        "item": "A-100",
        "description": "Hex bolt M8x40",
        "on_hand": 155,
        "warehouses": [{"warehouse": "Gothenburg", "on_hand": 120}, {"warehouse": "Malmo", "on_hand": 35}],
    }


@pytest.mark.parametrize("item", ["Z-999", "A-100' or '1'='1"])
async def test_stock_at_hand_of_an_unknown_item_is_404(stack: Services, key: str, item: str) -> None:
    answer = await call(stack, key, "GET", "/hooks/demo/stock-at-hand", params={"item": item})
    assert (answer.status_code, answer.json()) == (404, {"error": f"no item {item}"})


async def test_petstore_stores_the_posted_pet_as_the_tutorial_maps_it(
    stack: Services, key: str, db: Connection, demo_target: DemoTarget
) -> None:
    answer = await call(
        stack, key, "POST", "/hooks/demo/petstore", json={"petname": "Gromit", "petstatus": "Sold"}
    )
    assert answer.status_code == 202
    execution = await finished_execution(db, answer.json()["execution_id"])
    assert execution.status == "succeeded", execution.error
    pet = execution.output["body"]
    assert pet == {"id": pet["id"], "name": "Gromit", "status": "sold"}
    assert demo_target.store.pets[str(pet["id"])] == pet
    assert [
        (s["id"], s["output"]["status"] if s["kind"] == "http" else s["output"]) for s in execution.steps
    ] == [
        ("pet", {"name": "Gromit", "status": "sold"}),
        ("store", 200),
    ]
