"""The console in a real headless Chromium: sign in, create a key, send a webhook, watch it
appear in the live run log, open it, replay it. Caller-controlled text stays text.

With HOOKLINE_SCREENSHOTS=<folder> the test also saves the run log and an execution page
there (that is how docs/console-*.png are made).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright

from shared.db.pool import Connection
from tests.helpers import apply_yaml, eventually, filed_as_dead_letters, finished_execution
from tests.integration.console_browser import csrf_of
from tests.stack import Services

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ATTACK = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 1">'

TRIGGERS = """
workspace: {ws}
triggers:
  - name: orders
    description: orders from the shop
    auth: {{type: api_key}}
    headers: [X-Request-Id]
    workflow:
      - id: order
        map: {{id: "{{{{ request.body.order }}}}", note: "{{{{ request.body.note }}}}"}}
      - id: total
        map: {{total: "{{{{ sum(request.body.lines[].price) }}}}"}}
  - name: invoices
    auth: {{type: none}}
    retry: {{max_attempts: 1}}
    workflow:
      - id: post
        http: {{url: "http://127.0.0.1:9/invoices", method: POST, json: "{{{{ request.body }}}}", timeout: 2s}}
"""


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium chromium-driver (see .ci/run)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        await launched.close()


async def shot(page: Page, name: str, full_page: bool = False) -> None:
    folder = os.environ.get("HOOKLINE_SCREENSHOTS")
    if folder:
        await page.screenshot(path=str(Path(folder) / name), full_page=full_page)


async def send(stack: Services, path: str, key: str | None, body: object) -> str:
    """Call until accepted (a new key reaches the ingress within the registry notification)."""

    async def probe() -> str | None:
        headers = {"X-API-Key": key, "X-Request-Id": "req-42"} if key else {}
        async with httpx.AsyncClient(base_url=stack.base_url) as client:
            answer = await client.post(path, json=body, headers=headers)
        return str(answer.json()["execution_id"]) if answer.status_code == 202 else None

    return await eventually(probe)


# README "Console": a strict Content-Security-Policy, parsed directive by directive (a policy
# that also allowed 'unsafe-inline', 'unsafe-eval', data: or another origin would differ).
STRICT_CSP = {
    "default-src": ["'none'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'"],
    "connect-src": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
    "base-uri": ["'none'"],
}


def csp_directives(header: str) -> dict[str, list[str]]:
    """A Content-Security-Policy header as directive -> sources (RFC: names are case-insensitive)."""
    directives: dict[str, list[str]] = {}
    for part in header.split(";"):
        if words := part.split():
            name = words[0].lower()
            assert name not in directives, f"{name} given twice"
            directives[name] = words[1:]
    return directives


async def test_an_operator_signs_in_makes_a_key_and_watches_replays_a_run(
    stack: Services, db: Connection, workspace: str, browser: Browser
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace))
    page = await browser.new_page(viewport={"width": 1360, "height": 860})
    await page.goto(f"{stack.base_url}/console")
    assert page.url == f"{stack.base_url}/console/login"
    await page.fill("#token", "not-the-token")
    await page.click("button[type=submit]")
    assert await page.text_content("p.error") == "That token is not valid."
    await page.fill("#token", stack.env["HOOKLINE_ADMIN_TOKEN"])
    await page.click("button[type=submit]")
    assert page.url == f"{stack.base_url}/console/runs"

    await page.goto(f"{stack.base_url}/console/triggers")
    row = page.locator(f'tr[data-trigger="{workspace}/orders"]')
    assert await row.locator("code.mono").first.text_content() == f"{stack.base_url}/hooks/{workspace}/orders"
    await row.locator('input[name="label"]').fill("shop")
    await row.locator("form.new-key button").click()
    key = (await page.text_content("#new-key") or "").strip()
    assert key.startswith("hk_")
    assert (
        await page.locator(f'tr[data-trigger="{workspace}/orders"] ul.keys li').text_content()
        == f"shop {key[:8]}…"
    )

    await page.goto(f"{stack.base_url}/console/runs?trigger={workspace}/orders")
    assert await page.locator("tr.empty").count() == 1
    body = {"order": 1042, "note": ATTACK, "lines": [{"price": 19.5}, {"price": 5}]}
    execution_id = await send(stack, f"/hooks/{workspace}/orders", key, body)
    await finished_execution(db, execution_id)
    # No reload: the live run log brings the row in.
    live_row = page.locator(f'tr.run[data-id="{execution_id}"]')
    await live_row.wait_for(timeout=15_000)
    assert await live_row.locator(".badge").text_content() == "succeeded"

    for n in range(3):
        await finished_execution(
            db, await send(stack, f"/hooks/{workspace}/orders", key, {**body, "order": 1043 + n})
        )
    await finished_execution(db, await send(stack, f"/hooks/{workspace}/invoices", None, {"invoice": 7}))
    await page.goto(f"{stack.base_url}/console/runs")
    await shot(page, "console-runs.png")

    await page.goto(f"{stack.base_url}/console/runs?trigger={workspace}/orders")
    await page.click(f'tr.run[data-id="{execution_id}"] a.mono')
    assert page.url == f"{stack.base_url}/console/executions/{execution_id}"
    assert await page.text_content("#status") == "succeeded"
    shown_body = await page.text_content("#request-body") or ""
    assert ATTACK.replace('"', '\\"') in shown_body  # the attack is shown as JSON text
    assert '"total": 24.5' in (await page.text_content("#output") or "")
    assert await page.evaluate("window.pwned") is None
    await shot(page, "console-execution.png", full_page=True)

    await page.click("#replay")
    replay_of = page.locator(f'dl.facts a[href="/console/executions/{execution_id}"]')
    await replay_of.wait_for(timeout=15_000)
    replayed_id = page.url.split("/console/executions/")[1].split("?")[0]
    assert replayed_id != execution_id
    replayed = await finished_execution(db, replayed_id)
    assert (replayed.replay_of, replayed.status, replayed.request["body"]) == (
        execution_id,
        "succeeded",
        body,
    )

    await page.goto(f"{stack.base_url}/console/dead-letters")
    assert await page.text_content("h1") == "Dead letters"
    await page.close()


async def test_an_operator_pauses_and_resumes_a_trigger_replays_a_dead_letter_and_signs_out(
    stack: Services, db: Connection, workspace: str, browser: Browser
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace))
    dead_id = await send(stack, f"/hooks/{workspace}/invoices", None, {"invoice": 8})
    assert (await finished_execution(db, dead_id)).status == "dead"
    page = await browser.new_page()
    await page.goto(f"{stack.base_url}/console/login")
    await page.fill("#token", stack.env["HOOKLINE_ADMIN_TOKEN"])
    await page.click("button[type=submit]")

    await page.goto(f"{stack.base_url}/console/triggers")
    row = page.locator(f'tr[data-trigger="{workspace}/invoices"]')
    await row.get_by_role("button", name="Pause").click()
    assert await page.locator(f'tr[data-trigger="{workspace}/invoices"] .badge').text_content() == "paused"
    assert (
        await db.fetchval(
            "select count(*) from trigger_pauses where workspace = $1 and trigger = 'invoices'"
            " and resumed_at is null",
            workspace,
        )
        == 1
    )
    await (
        page.locator(f'tr[data-trigger="{workspace}/invoices"]').get_by_role("button", name="Resume").click()
    )
    assert await page.locator(f'tr[data-trigger="{workspace}/invoices"] .badge').text_content() == "running"

    # The dead letter, replayed from its page: the run counts on (a second attempt).
    await filed_as_dead_letters(db, dead_id)
    await page.goto(f"{stack.base_url}/console/dead-letters")
    letter = page.locator("table.dead tr", has=page.locator(f'a[href="/console/executions/{dead_id}"]'))
    await letter.get_by_role("button", name="Replay").click()
    assert page.url == f"{stack.base_url}/console/dead-letters"

    async def ran_again() -> int | None:
        attempts = await db.fetchval("select attempts from executions where id = $1::uuid", dead_id)
        return attempts if attempts == 2 else None

    await eventually(ran_again, timeout=20)

    await page.get_by_role("button", name="Sign out").click()
    assert page.url == f"{stack.base_url}/console/login"
    await page.goto(f"{stack.base_url}/console/runs")
    assert page.url == f"{stack.base_url}/console/login"  # the session is gone
    await page.close()


async def test_console_pages_need_a_sign_in_and_forms_need_the_csrf_value(stack: Services) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        page = await client.get("/console/runs")
        assert (page.status_code, page.headers["location"]) == (302, "/console/login")
        refused = await client.post("/console/login", data={"token": stack.env["HOOKLINE_ADMIN_TOKEN"]})
        assert refused.status_code == 403  # login CSRF: only the sign-in page's own form signs in
        form = await client.get("/console/login")
        signed = await client.post(
            "/console/login", data={"token": stack.env["HOOKLINE_ADMIN_TOKEN"], "csrf": csrf_of(form)}
        )
        assert signed.status_code == 303
        cookie = signed.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        runs = await client.get("/console/runs")
        assert runs.status_code == 200
        for page in (form, runs):
            assert csp_directives(page.headers["content-security-policy"]) == STRICT_CSP
        forged = await client.post(
            "/console/executions/0190f000-0000-7000-8000-000000000000/replay", data={"csrf": "x"}
        )
        assert forged.status_code == 403
