"""The management API under /api: every endpoint, on a real stack, with whole answers checked."""

from __future__ import annotations

import asyncio
import re
import warnings
from typing import Any

import aio_pika
import httpx
import pytest
from litestar.exceptions.base_exceptions import LitestarDeprecationWarning

from ingress.app import create_app
from shared.broker.link import connect_once
from shared.db.pool import Connection
from shared.settings import Settings
from shared.wire import topology
from tests.helpers import apply_yaml, eventually, finished_execution
from tests.stack import Services

ADMIN = {"Authorization": "Bearer test-admin-token-0123456789"}

TRIGGERS = """
workspace: {ws}
description: the API tests' own
triggers:
  - name: inbox
    auth: {{type: api_key}}
    methods: [POST]
    headers: [X-Request-Id]
    workflow:
      - id: received
        map: {{order: "{{{{ request.body.order }}}}"}}
  - name: broken
    auth: {{type: none}}
    retry: {{max_attempts: 1}}
    workflow:
      - id: fail
        http: {{url: "http://127.0.0.1:9/", timeout: 2s}}
  - name: ready
    auth: {{type: none}}
    mode: request_response
    workflow: [{{respond: {{status: 204}}}}]
"""


@pytest.fixture
async def ws(db: Connection, workspace: str, stack: Services) -> str:
    """The test's workspace with its triggers applied and routable."""
    await apply_yaml(db, TRIGGERS.format(ws=workspace))

    async def routable() -> bool | None:
        async with httpx.AsyncClient() as client:
            return (
                True
                if (await client.post(f"{stack.base_url}/hooks/{workspace}/ready")).status_code == 204
                else None
            )

    await eventually(routable)
    return workspace


async def call(stack: Services, path: str, key: str | None = None, **kwargs: Any) -> httpx.Response:
    headers = {**kwargs.pop("headers", {}), **({"X-API-Key": key} if key else {})}
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        return await client.post(path, headers=headers, **kwargs)


async def accepted(stack: Services, path: str, key: str | None = None, **kwargs: Any) -> httpx.Response:
    """The first 2xx answer (a new key reaches the ingress with the registry notification)."""

    async def probe() -> httpx.Response | None:
        answer = await call(stack, path, key, **kwargs)
        return answer if answer.status_code < 300 else None

    return await eventually(probe, timeout=5)


def api_calls() -> list[tuple[str, str]]:
    """Every (method, path) of the management API, read from the app itself, so a route added
    later is checked too. Path parameters are filled in; the schema is public."""
    with warnings.catch_warnings():  # litestar's deprecation notes on the routes' own style
        warnings.simplefilter("ignore", LitestarDeprecationWarning)
        app = create_app(Settings(database_url="postgresql://x/y", amqp_url="amqp://x"))
    calls = []
    for route in app.routes:
        if not route.path.startswith("/api/") or route.path.startswith("/api/schema"):
            continue
        path = re.sub(r"\{(\w+):\w+\}", r"p-\1", route.path)
        calls += [(method, path) for method in sorted(route.methods) if method not in ("OPTIONS", "HEAD")]
    return calls


async def test_every_api_call_needs_a_valid_token(stack: Services) -> None:
    calls = api_calls()
    assert len(calls) >= 36, calls  # 36 when written
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        for method, path in calls:
            missing = await client.request(method, path, json={})
            wrong = await client.request(method, path, json={}, headers={"Authorization": "Bearer hlt_nope"})
            assert missing.status_code == 401, (method, path, missing.text)
            assert missing.headers["content-type"] == "application/problem+json"
            assert missing.json() == {
                "type": "/problems/unauthorized",
                "title": "Unauthorized",
                "status": 401,
                "detail": "a management token is required (Authorization: Bearer ...)",
            }
            assert wrong.status_code == 401, (method, path, wrong.text)
            assert wrong.json()["detail"] == "this token is not valid (revoked, or never issued)"


async def test_a_stranger_cannot_make_the_api_or_console_read_a_large_body(stack: Services) -> None:
    """The token (the console's session) is checked before the body is read; the sign-in form,
    the one body a stranger can send the console, is capped at 16 KiB."""
    big = b"x" * (5 * 1024 * 1024)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        api = await client.put("/api/workspaces/w/triggers/t", content=big)
        not_json = await client.put("/api/workspaces/w/triggers/t", content=b"{not json")
        console = await client.post("/console/login", content=b"token=" + big, headers=form)
        signed_out = await client.post("/console/triggers/w/t/pause", content=b"csrf=" + big, headers=form)
    assert (api.status_code, not_json.status_code) == (401, 401)  # neither body was parsed
    assert api.headers["content-type"] == "application/problem+json"
    assert api.json()["detail"] == "a management token is required (Authorization: Bearer ...)"
    assert console.status_code == 413
    assert (signed_out.status_code, signed_out.headers["location"]) == (302, "/console/login")


async def test_workspaces_are_listed_shown_and_created(
    api: httpx.AsyncClient, ws: str, workspace: str
) -> None:
    listed = (await api.get("/workspaces")).json()
    assert {"name": ws, "description": "the API tests' own", "triggers": 3} == {
        k: v for k, v in next(w for w in listed if w["name"] == ws).items() if k != "created_at"
    }
    shown = await api.get(f"/workspaces/{ws}")
    assert shown.json()["triggers"] == 3
    created = await api.post("/workspaces", json={"name": f"{workspace}-new", "description": "d"})
    assert created.status_code == 201
    assert created.json()["name"] == f"{workspace}-new"
    again = await api.post("/workspaces", json={"name": f"{workspace}-new", "description": "e"})
    assert again.status_code == 200
    bad = await api.post("/workspaces", json={"name": "Not Valid"})
    assert bad.status_code == 400
    assert (await api.get("/workspaces/no-such-workspace")).status_code == 404


async def test_triggers_are_created_updated_as_new_versions_and_deleted(
    api: httpx.AsyncClient, ws: str, stack: Services
) -> None:
    definition = {
        "name": "made",
        "auth": {"type": "none"},
        "workflow": [{"map": {"a": "{{ request.body }}"}}],
    }
    created = await api.post(f"/workspaces/{ws}/triggers", json=definition)
    assert created.status_code == 201
    assert created.json() == {"workspace": ws, "trigger": "made", "action": "created", "version": 1}
    assert (await api.post(f"/workspaces/{ws}/triggers", json=definition)).status_code == 409

    changed = {**definition, "description": "now described"}
    updated = await api.put(f"/workspaces/{ws}/triggers/made", json=changed)
    assert updated.json() == {"workspace": ws, "trigger": "made", "action": "updated", "version": 2}
    same = await api.put(f"/workspaces/{ws}/triggers/made", json=changed)
    assert same.json()["action"] == "unchanged"

    shown = (await api.get(f"/workspaces/{ws}/triggers/made")).json()
    assert shown["url"] == f"{stack.base_url}/hooks/{ws}/made"
    assert (shown["version"], shown["description"], shown["mode"], shown["auth"]) == (
        2,
        "now described",
        "async",
        "none",
    )
    assert shown["spec"]["workflow"] == [
        {"kind": "map", "id": "map_1", "map": {"a": "{{ request.body }}"}, "retry": None}
    ]
    versions = (await api.get(f"/workspaces/{ws}/triggers/made/versions")).json()
    assert [v["version"] for v in versions] == [2, 1]

    invalid = await api.put(f"/workspaces/{ws}/triggers/made", json={**definition, "methods": ["TRACE"]})
    assert invalid.status_code == 400
    assert invalid.json()["type"] == "/problems/spec-invalid"
    assert invalid.json()["detail"].startswith("definition: trigger made, field methods")

    names = [t["name"] for t in (await api.get(f"/workspaces/{ws}/triggers")).json()]
    assert names == ["broken", "inbox", "made", "ready"]
    assert (await api.delete(f"/workspaces/{ws}/triggers/made")).status_code == 204
    assert (await api.get(f"/workspaces/{ws}/triggers/made")).status_code == 404
    deleted = (await api.get(f"/workspaces/{ws}/triggers", params={"deleted": "true"})).json()
    assert [t["name"] for t in deleted if t["deleted_at"]] == ["made"]
    assert (await api.delete(f"/workspaces/{ws}/triggers/made")).status_code == 404


async def test_keys_are_created_once_listed_without_secret_relabelled_attached_and_revoked(
    api: httpx.AsyncClient, ws: str, stack: Services
) -> None:
    created = await api.post(f"/workspaces/{ws}/keys", json={"label": "partner-a", "triggers": ["inbox"]})
    assert created.status_code == 201
    key = created.json()
    assert key["key"].startswith("hk_")
    assert key["prefix"] == key["key"][:8]
    await accepted(stack, f"/hooks/{ws}/inbox", key["key"], json={"order": 1})

    listed = (await api.get(f"/workspaces/{ws}/keys")).json()
    assert [(k["id"], k["label"], k["prefix"], k["triggers"]) for k in listed] == [
        (key["id"], "partner-a", key["prefix"], ["inbox"])
    ]
    assert "key" not in listed[0]
    relabelled = await api.patch(f"/workspaces/{ws}/keys/{key['id']}", json={"label": "partner-b"})
    assert relabelled.json()["label"] == "partner-b"
    refused = await api.post(f"/workspaces/{ws}/keys/{key['id']}/attach", json={"triggers": ["broken"]})
    assert refused.status_code == 400
    assert (
        refused.json()["detail"]
        == f"trigger {ws}/broken does not use API keys (its auth type is not api_key)"
    )
    detached = await api.post(f"/workspaces/{ws}/keys/{key['id']}/detach", json={"triggers": ["inbox"]})
    assert detached.json()["triggers"] == []
    attached = await api.post(f"/workspaces/{ws}/keys/{key['id']}/attach", json={"triggers": ["inbox"]})
    assert attached.json()["triggers"] == ["inbox"]
    # A consumer may name the key by its value: the answer shows the key as listed, never the value.
    by_value = f"/workspaces/{ws}/keys/{key['key']}"
    for answer, label, triggers in (
        (await api.patch(by_value, json={"label": "partner-c"}), "partner-c", ["inbox"]),
        (await api.post(f"{by_value}/detach", json={"triggers": ["inbox"]}), "partner-c", []),
        (await api.post(f"{by_value}/attach", json={"triggers": ["inbox"]}), "partner-c", ["inbox"]),
    ):
        assert answer.status_code == 200, answer.text
        assert (answer.json()["id"], answer.json()["label"], answer.json()["triggers"]) == (
            key["id"],
            label,
            triggers,
        )
        assert key["key"] not in answer.text
    assert (await api.delete(f"/workspaces/{ws}/keys/{key['id']}")).status_code == 204

    async def refused_now() -> bool | None:
        answer = await call(stack, f"/hooks/{ws}/inbox", key["key"], json={"order": 2})
        return True if answer.status_code == 401 else None

    await eventually(refused_now, timeout=5)
    assert (await api.get(f"/workspaces/{ws}/keys")).json() == []
    assert len((await api.get(f"/workspaces/{ws}/keys", params={"revoked": "true"})).json()) == 1


async def test_run_log_filters_pages_by_cursor_shows_and_replays(
    api: httpx.AsyncClient, ws: str, stack: Services, db: Connection
) -> None:
    ids = [(await call(stack, f"/hooks/{ws}/broken", json={"n": n})).json()["execution_id"] for n in range(3)]
    for execution_id in ids:
        await finished_execution(db, execution_id)
    ready = (await call(stack, f"/hooks/{ws}/ready")).headers["x-execution-id"]
    await finished_execution(db, ready)

    newest = (await api.get("/executions", params={"workspace": ws, "limit": 1})).json()
    assert [r["id"] for r in newest["items"]] == [ready]
    broken = {"workspace": ws, "trigger": "broken", "limit": 2}
    first = (await api.get("/executions", params=broken)).json()
    assert [r["id"] for r in first["items"]] == [ids[2], ids[1]]
    second = (await api.get("/executions", params={**broken, "cursor": first["next_cursor"]})).json()
    assert [r["id"] for r in second["items"]] == [ids[0]]
    assert second["next_cursor"] is None
    dead = (
        await api.get("/executions", params={"workspace": ws, "trigger": "broken", "status": "dead"})
    ).json()
    assert [r["id"] for r in dead["items"]] == list(reversed(ids))
    assert dead["items"][0]["error"].startswith("step fail (http):")
    later = (await api.get("/executions", params={"workspace": ws, "since": "2999-01-01T00:00:00Z"})).json()
    assert later == {"items": [], "next_cursor": None}
    # since is "received at or after", until "received before": a cut at the third call's time.
    cut = (await db.fetchval("select received_at from executions where id = $1", ids[2])).isoformat()
    window = {"workspace": ws, "trigger": "broken"}
    before_cut = (await api.get("/executions", params={**window, "until": cut})).json()
    assert [r["id"] for r in before_cut["items"]] == [ids[1], ids[0]]
    from_cut = (await api.get("/executions", params={**window, "since": cut})).json()
    assert [r["id"] for r in from_cut["items"]] == [ids[2]]
    bad = await api.get("/executions", params={"status": "exploded"})
    assert bad.status_code == 400
    assert (
        bad.json()["detail"] == "status 'exploded' is not one of running, retrying, succeeded, failed, dead"
    )

    shown = (await api.get(f"/executions/{ids[0]}")).json()
    assert (shown["status"], shown["attempts"], shown["request"]["body"]) == ("dead", 1, {"n": 0})
    assert shown["steps"][0]["id"] == "fail"
    replayed = await api.post(f"/executions/{ids[0]}/replay")
    assert replayed.status_code == 202
    assert replayed.json()["replay_of"] == ids[0]
    again = await finished_execution(db, replayed.json()["execution_id"])
    assert (again.replay_of, again.request["body"]) == (ids[0], {"n": 0})
    assert (await api.get("/executions/not-an-id")).status_code == 404


async def test_dead_letters_are_listed_with_their_error_and_replayed(
    api: httpx.AsyncClient, ws: str, stack: Services, db: Connection
) -> None:
    execution_id = (await call(stack, f"/hooks/{ws}/broken", json={"x": 1})).json()["execution_id"]
    await finished_execution(db, execution_id)

    async def listed() -> list[dict[str, Any]] | None:
        letters = (await api.get("/dead-letters", params={"workspace": ws})).json()
        return [x for x in letters if x["id"] == execution_id] or None

    (letter,) = await eventually(listed)
    assert (letter["workspace"], letter["trigger"], letter["reason"], letter["status"]) == (
        ws,
        "broken",
        "rejected",
        "dead",
    )
    assert letter["error"].startswith("step fail (http):")
    # Operators looking at the same time each see every letter (looks take turns).
    looks = await asyncio.gather(*(api.get("/dead-letters", params={"workspace": ws}) for _ in range(6)))
    assert [[x["id"] for x in look.json()] for look in looks] == [[execution_id]] * 6
    first_run = await finished_execution(db, execution_id)
    seq = await db.fetchval("select seq from dead_letters where id = $1", execution_id)
    replayed = await api.post(f"/dead-letters/{execution_id}/replay")
    assert replayed.json() == {"replayed": [execution_id], "missing": [], "failed": []}

    async def ran_again() -> bool | None:
        # The letter left the table and the queue: it ran (and, still broken, died) again, so
        # it is a new letter now, and the execution's record is of a later run.
        again = await db.fetchval("select seq from dead_letters where id = $1", execution_id)
        run = await finished_execution(db, execution_id)
        return True if again is not None and again > seq and run.started_at > first_run.started_at else None

    await eventually(ran_again, timeout=20)
    missing = await api.post("/dead-letters/replay", json={"ids": ["0190f000-0000-7000-8000-000000000000"]})
    assert missing.json() == {
        "replayed": [],
        "missing": ["0190f000-0000-7000-8000-000000000000"],
        "failed": [],
    }
    assert (await api.post("/dead-letters/0190f000-0000-7000-8000-000000000000/replay")).status_code == 404


async def test_a_dead_letter_that_cannot_be_replayed_is_reported_and_the_others_are_replayed(
    api: httpx.AsyncClient, ws: str, stack: Services, db: Connection
) -> None:
    execution_id = (await call(stack, f"/hooks/{ws}/broken", json={"x": 2})).json()["execution_id"]
    await finished_execution(db, execution_id)
    # What a worker dead-letters when a message is not an invocation at all.
    garbage = f"garbage-{ws}"
    dead_letters = topology.dead_letter_queue_name(stack.env["HOOKLINE_AMQP_PREFIX"])
    async with connect_once(stack.env["HOOKLINE_AMQP_URL"], "test") as broker:
        channel = await broker.channel()
        await channel.default_exchange.publish(
            aio_pika.Message(b"\x00 not an invocation", message_id=garbage), dead_letters
        )
        try:

            async def both() -> list[str] | None:
                ids = {x["id"] for x in (await api.get("/dead-letters")).json()}
                return [garbage, execution_id] if {garbage, execution_id} <= ids else None

            await eventually(both)
            one = await api.post(f"/dead-letters/{garbage}/replay")
            assert (one.status_code, one.headers["content-type"]) == (409, "application/problem+json")
            assert (
                one.json()["detail"] == f"dead letter {garbage} is not an invocation; it cannot be replayed"
            )
            batch = await api.post("/dead-letters/replay", json={"ids": [garbage, execution_id]})
            assert batch.status_code == 200
            assert batch.json() == {
                "replayed": [execution_id],
                "missing": [],
                "failed": [{"id": garbage, "error": one.json()["detail"]}],
            }
            left = [x["id"] for x in (await api.get("/dead-letters")).json()]
            assert garbage in left  # not put back, and not lost either
        finally:
            await channel.close()
            # Take the garbage away (the dispatcher moved it into the table).
            await db.execute("delete from dead_letters where id = $1", garbage)


async def test_queues_report_depth_and_consumers(api: httpx.AsyncClient, stack: Services, ws: str) -> None:
    queues = (await api.get("/queues")).json()
    work = next(q for q in queues if q["kind"] == "work")
    assert work["name"] == f"{stack.env['HOOKLINE_AMQP_PREFIX']}.work"
    assert work["consumers"] >= 2  # the session's two workers
    assert {q["kind"] for q in queues} >= {"work", "dead", "retry"}
    # The workspace sees its own triggers' queues only: here its unordered triggers' own queues.
    own = (await api.get("/queues", params={"workspace": ws})).json()
    assert own
    assert {q["kind"] for q in own} == {"trigger"}
    assert all(q["name"] == f"{stack.env['HOOKLINE_AMQP_PREFIX']}.work.{ws}.{q['trigger']}" for q in own)
    assert {q["workspace"] for q in own} == {ws}


async def test_the_sample_is_the_last_accepted_call_as_a_workflow_sees_it_even_before_it_ran(
    api: httpx.AsyncClient, ws: str, stack: Services, db: Connection
) -> None:
    assert (await api.get(f"/workspaces/{ws}/triggers/broken/sample")).status_code == 404
    key = (await api.post(f"/workspaces/{ws}/keys", json={"label": "s", "triggers": ["inbox"]})).json()["key"]
    # Paused: accepted and held on the broker, not run, and still the sample.
    assert (await api.post(f"/workspaces/{ws}/triggers/inbox/pause")).status_code == 200
    try:
        answers = [
            await accepted(
                stack,
                f"/hooks/{ws}/inbox?page={page}",
                None,
                json={"order": page},
                headers={"X-Request-Id": f"r-{page}", "X-API-Key": key},
            )
            for page in (1, 2)
        ]
        last = answers[-1].json()["execution_id"]

        async def sampled() -> dict[str, Any] | None:
            answer = await api.get(f"/workspaces/{ws}/triggers/inbox/sample")
            return (
                answer.json() if answer.status_code == 200 and answer.json()["execution_id"] == last else None
            )

        sample = await eventually(sampled, timeout=10)
    finally:
        await api.post(f"/workspaces/{ws}/triggers/inbox/resume")
    assert sample["request"] == {
        "method": "POST",
        "path": f"/hooks/{ws}/inbox",
        "query": {"page": "2"},
        "headers": {"x-request-id": "r-2"},
        "content_type": "application/json",
        "body_kind": "json",
        "body": {"order": 2},
    }
    await finished_execution(db, last)  # and it runs once resumed


async def test_a_workspace_token_sees_its_workspace_only_until_revoked(
    api: httpx.AsyncClient, ws: str, stack: Services
) -> None:
    made = await api.post("/tokens", json={"label": "team", "workspace": ws})
    assert made.status_code == 201
    token = made.json()["token"]
    assert token.startswith("hlt_")
    listed = [t for t in (await api.get("/tokens")).json() if t["id"] == made.json()["id"]]
    assert [(t["workspace"], t["label"], t["prefix"]) for t in listed] == [(ws, "team", token[:8])]
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=f"{stack.base_url}/api", headers=headers) as team:
        assert [w["name"] for w in (await team.get("/workspaces")).json()] == [ws]
        assert (await team.get(f"/workspaces/{ws}/triggers")).status_code == 200
        other = await team.get("/workspaces/someone-else/triggers")
        assert (other.status_code, other.json()["detail"]) == (
            403,
            f"this token is for workspace {ws!r} only",
        )
        assert (await team.get("/tokens")).status_code == 403
        assert (await team.post("/workspaces", json={"name": "mine-now"})).status_code == 403
        assert (await team.get("/executions", params={"workspace": "someone-else"})).status_code == 403
        assert {q["workspace"] for q in (await team.get("/queues")).json()} <= {ws}
        assert (await api.delete(f"/tokens/{made.json()['id']}")).status_code == 204
        assert (await team.get("/workspaces")).status_code == 401


async def test_a_workspace_token_cannot_reach_another_workspace_by_its_ids(
    api: httpx.AsyncClient, ws: str, stack: Services, db: Connection
) -> None:
    other = f"{ws}-b"
    await apply_yaml(db, TRIGGERS.format(ws=other))
    theirs = (await accepted(stack, f"/hooks/{other}/broken", json={"x": 1})).json()["execution_id"]
    await finished_execution(db, theirs)  # dead: a dead letter of the other workspace

    async def filed() -> bool | None:  # the dispatcher moves it from the queue into the table
        letters = (await api.get("/dead-letters", params={"workspace": other})).json()
        return True if theirs in {x["id"] for x in letters} else None

    await eventually(filed)
    their_key = (
        await api.post(f"/workspaces/{other}/keys", json={"label": "b", "triggers": ["inbox"]})
    ).json()
    token = (await api.post("/tokens", json={"label": "team", "workspace": ws})).json()["token"]
    async with httpx.AsyncClient(
        base_url=f"{stack.base_url}/api", headers={"Authorization": f"Bearer {token}"}
    ) as team:
        for method, path, body in (
            ("GET", f"/workspaces/{other}", None),
            ("GET", f"/workspaces/{other}/triggers/broken", None),
            ("GET", f"/workspaces/{other}/triggers/broken/versions", None),
            ("GET", f"/workspaces/{other}/triggers/inbox/sample", None),
            ("POST", f"/workspaces/{other}/triggers/inbox/pause", None),
            ("DELETE", f"/workspaces/{other}/triggers/inbox", None),
            ("GET", f"/workspaces/{other}/keys", None),
            ("POST", f"/workspaces/{other}/keys", {"label": "mine", "triggers": ["inbox"]}),
            ("PATCH", f"/workspaces/{other}/keys/{their_key['id']}", {"label": "mine"}),
            ("DELETE", f"/workspaces/{other}/keys/{their_key['id']}", None),
            ("GET", "/queues?workspace=" + other, None),
        ):
            answer = await team.request(method, path, json=body)
            assert answer.status_code == 403, (method, path, answer.status_code)
        # By id alone: as if it did not exist.
        assert (await team.get(f"/executions/{theirs}")).status_code == 404
        assert (await team.post(f"/executions/{theirs}/replay")).status_code == 404
        assert theirs not in {x["id"] for x in (await team.get("/executions")).json()["items"]}
        assert theirs not in {x["id"] for x in (await team.get("/dead-letters")).json()}
        assert (await team.post(f"/dead-letters/{theirs}/replay")).status_code == 404
        batch = await team.post("/dead-letters/replay", json={"ids": [theirs]})
        assert batch.json() == {"replayed": [], "missing": [theirs], "failed": []}
    # Nothing of theirs changed: the key, the trigger, the dead letter are all still there.
    assert [k["label"] for k in (await api.get(f"/workspaces/{other}/keys")).json()] == ["b"]
    assert (await api.get(f"/workspaces/{other}/triggers/inbox")).json()["paused"] is False
    assert theirs in {x["id"] for x in (await api.get("/dead-letters", params={"workspace": other})).json()}


async def test_the_schema_describes_the_api_and_not_the_hooks(stack: Services) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        schema = (await client.get("/api/schema")).json()
        same = (await client.get("/api/schema/openapi.json")).json()
    assert schema == same
    assert schema["info"]["title"] == "hookline management API"
    assert all(path.startswith("/api/") for path in schema["paths"])
    assert "/api/executions/{execution_id}/replay" in schema["paths"]
    assert schema["components"]["securitySchemes"] == {"bearer": {"type": "http", "scheme": "bearer"}}
