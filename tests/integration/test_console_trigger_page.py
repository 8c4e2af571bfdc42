"""A trigger's console page in a real headless Chromium (issue 17): try it (api_key and
hmac) and open the execution, the refused calls with their hint, the sample's variables,
keys pasted, relabelled, attached, detached and revoked (checked with real calls to
/hooks), and the per-minute chart counting the calls just made.

With HOOKLINE_SCREENSHOTS=<folder> the test also saves a trigger's page there (that is how
docs/console-trigger.png is made).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright

from shared.db.pool import Connection
from shared.db.tokens import create_token
from shared.signatures.presets import PRESETS
from shared.signatures.verify import sign
from tests.conftest import TEST_SECRETS
from tests.helpers import apply_yaml, eventually, finished_execution, new_key
from tests.integration.console_browser import CHROMIUM, CHROMIUM_ARGS, csrf_of, get, post, session_of, sign_in
from tests.stack import Services

HMAC_SECRET = TEST_SECRETS["TEST_HMAC_SECRET"]
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
  - name: other
    auth: {{type: api_key}}
    workflow: [{{map: {{n: "{{{{ request.body.n }}}}"}}}}]
  - name: third
    auth: {{type: api_key}}
    workflow: [{{map: {{n: "{{{{ request.body.n }}}}"}}}}]
"""


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium chromium-driver (see .ci/run)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


async def signed_in(stack: Services, browser: Browser) -> Page:
    page = await browser.new_page(viewport={"width": 1360, "height": 900})
    await page.goto(f"{stack.base_url}/console/login")
    await page.fill("#token", stack.env["HOOKLINE_ADMIN_TOKEN"])
    await page.click("button[type=submit]")
    assert page.url == f"{stack.base_url}/console/runs"
    return page


async def shot(page: Page, name: str) -> None:
    folder = os.environ.get("HOOKLINE_SCREENSHOTS")
    if folder:
        await page.screenshot(path=str(Path(folder) / name), full_page=True)


async def routable(stack: Services, workspace: str, *names: str) -> None:
    """Until every trigger is in the ingress's registry and routed (refused with 405, not 404)."""
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        for name in names:

            async def probe(name: str = name) -> int | None:
                answer = await client.put(f"/hooks/{workspace}/{name}")
                return answer.status_code if answer.status_code not in (404, 503) else None

            await eventually(probe, timeout=20)


async def status_with(stack: Services, workspace: str, trigger: str, key: str) -> int:
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        answer = await client.post(f"/hooks/{workspace}/{trigger}", json={"n": 1}, headers={"X-API-Key": key})
    return answer.status_code


async def becomes(stack: Services, workspace: str, trigger: str, key: str, opened: bool) -> None:
    """Until a real call with `key` is accepted (opened) or refused with 401 (not opened)."""

    async def probe() -> bool | None:
        status = await status_with(stack, workspace, trigger, key)
        assert status in (200, 202, 401), status  # keyed answers (request_response), the others queue
        return True if (status != 401) == opened else None

    await eventually(probe, timeout=15)


async def try_it(page: Page, body: str) -> str:
    """Send the try-it form with `body`; the execution id the answer links to."""
    await page.fill("#try-body", body)
    await page.click("#try-send")
    await page.locator("#try-answer").wait_for()
    link = await page.get_attribute("#try-execution", "href")
    assert link is not None
    return link.removeprefix("/console/executions/").split("?")[0]


async def test_try_it_on_api_key_and_hmac_triggers_answers_opens_the_execution_and_is_charted(
    stack: Services, db: Connection, workspace: str, browser: Browser
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace))
    await routable(stack, workspace, "keyed", "signed")
    page = await signed_in(stack, browser)
    trigger_page = f"{stack.base_url}/console/triggers/{workspace}/keyed"
    await page.goto(trigger_page)

    first = await try_it(page, '{"order": 7, "customer": {"name": "Ada <b>"}}')
    assert await page.text_content("#try-status") == "200"
    assert float(await page.text_content("#try-time") or "0") > 0
    assert json.loads(await page.text_content("#try-body-answer") or "") == {
        "got": {"order": 7, "customer": {"name": "Ada <b>"}}
    }
    assert "x-execution-id" in (await page.text_content("#try-headers-answer") or "")
    sent = await page.text_content("#try-sent-headers") or ""
    assert "x-api-key: <redacted>" in sent  # the temporary key is never shown
    await page.click("#try-execution")
    assert page.url == f"{stack.base_url}/console/executions/{first}"
    assert await page.text_content("#status") == "succeeded"
    # The temporary key is gone once the call was answered.
    assert await db.fetchval("select count(*) from api_keys where workspace = $1", workspace) == 0

    # The page is now pre-filled from that call (the sample), and lists its variables.
    await page.goto(trigger_page)
    assert json.loads(await page.input_value("#try-body")) == {"order": 7, "customer": {"name": "Ada <b>"}}
    assert await page.input_value("#try-method") == "POST"
    row = page.locator('#variables tr[data-path="request.body.customer.name"]')
    assert await row.locator("td").nth(1).text_content() == "string"
    assert await row.locator("td").nth(2).text_content() == '"Ada <b>"'
    assert await row.locator("input.expr").input_value() == "{{ request.body.customer.name }}"
    assert await page.evaluate("window.pwned") is None
    # A second try, straight from the pre-filled form.
    await page.click("#try-send")
    await page.locator("#try-answer").wait_for()
    second = (await page.get_attribute("#try-execution", "href") or "").removeprefix("/console/executions/")
    assert second not in ("", first)

    # HMAC: signed with the trigger's secret; a stale call shows up refused, with its skew.
    await page.goto(f"{stack.base_url}/console/triggers/{workspace}/signed")
    signed_id = await try_it(page, '{"invoice": 9}')
    assert await page.text_content("#try-status") == "200"
    assert "hmac signature" in (await page.text_content("#try-answer") or "")
    await page.click("#try-execution")
    assert page.url == f"{stack.base_url}/console/executions/{signed_id}"
    assert await page.text_content("#status") == "succeeded"
    stale_body = b'{"invoice": 10}'
    stale = sign(PRESETS["stripe"], HMAC_SECRET.encode(), stale_body, time.time() - 600)
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        refused = await client.post(f"/hooks/{workspace}/signed", content=stale_body, headers=stale)
    assert refused.status_code == 401

    async def refused_row() -> str | None:
        await page.goto(
            f"{stack.base_url}/console/triggers/{workspace}/signed"
        )  # (a #fragment would not reload)
        rows = page.locator("#refused tr.refused-call", has_text="old")
        return await rows.first.text_content() if await rows.count() else None

    text = await eventually(refused_row, timeout=15)
    assert re.search(r"\b(59[89]|60[0-2]) s old", text), text
    assert "401" in text
    html = await page.content()
    assert HMAC_SECRET not in html
    assert stale["Stripe-Signature"].split("v1=")[1] not in html  # nor the signature sent

    # The charts: the current minute(s) count exactly the calls just made, on both pages.
    for ex in (first, second):
        await finished_execution(db, ex)
    rows = await db.fetch(
        "select to_char(date_trunc('minute', received_at at time zone 'UTC'), 'HH24:MI') as minute"
        " from executions where workspace = $1 and trigger = 'keyed'",
        workspace,
    )
    expected = Counter(r["minute"] for r in rows)
    assert sum(expected.values()) == 2
    for url in (trigger_page, f"{stack.base_url}/console/runs?trigger={workspace}/keyed"):
        await page.goto(url)
        chart = page.locator("#calls-chart")
        assert await chart.get_attribute("data-calls") == "2"
        assert await chart.get_attribute("data-failures") == "0"
        for minute, calls in expected.items():
            bar = chart.locator(f'g.minute[data-minute="{minute}"]')
            assert await bar.get_attribute("data-calls") == str(calls)
            assert await bar.locator("rect.calls").count() == 1
            assert float(await bar.get_attribute("data-p95-ms") or "-1") >= 0
        assert await page.locator("#p95-chart rect.p95").count() == len(expected)
    await page.click('#charts a[href*="hours=1#"]')
    assert await page.locator("#calls-chart g.minute").count() == 61  # the last hour and this minute
    assert await page.locator("#calls-chart").get_attribute("data-calls") == "2"
    await page.goto(trigger_page)
    await try_it(page, '{"order": 8, "customer": {"name": "Grace"}}')
    await shot(page, "console-trigger.png")

    # A queued trigger answers 202: its execution page waits for the worker, then shows the run.
    await page.goto(f"{stack.base_url}/console/triggers/{workspace}/other")
    queued_id = await try_it(page, '{"n": 3}')
    assert await page.text_content("#try-status") == "202"
    await page.click("#try-execution")
    await page.locator("#status").wait_for(timeout=15_000)
    assert page.url.startswith(f"{stack.base_url}/console/executions/{queued_id}")
    assert await page.text_content("#status") == "succeeded"
    await page.close()


async def test_keys_pasted_relabelled_attached_and_revoked_in_the_console_open_exactly_their_triggers(
    stack: Services, db: Connection, workspace: str, browser: Browser
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace))
    await routable(stack, workspace, "keyed", "other", "third")
    page = await signed_in(stack, browser)
    here = f"{stack.base_url}/console/triggers/{workspace}/keyed"
    await page.goto(here)
    assert await page.locator("#keys tr.empty").count() == 1
    key = "partner-" + secrets.token_urlsafe(24)

    # A forged form (no CSRF value) changes nothing.
    forged = await page.request.post(f"{here}/keys/paste", form={"key": key, "label": "forged"})
    assert forged.status == 403
    assert await db.fetchval("select count(*) from api_keys where workspace = $1", workspace) == 0

    await page.fill("#paste-key", key)
    await page.fill("#paste-label", "partner")
    await page.get_by_role("button", name="Store key").click()
    assert page.url.startswith(here)
    row = page.locator("#keys tr.key")
    assert await row.count() == 1
    assert await row.locator("td.label").text_content() == "partner"
    assert await row.locator("td.opens").text_content() == "keyed"
    assert key not in await page.content()  # stored as a digest: never shown again
    await becomes(stack, workspace, "keyed", key, opened=True)
    assert await status_with(stack, workspace, "other", key) == 401

    await row.locator("form.relabel input[name=label]").fill("partner (EU)")
    await row.locator("form.relabel button").click()
    assert await page.locator("#keys tr.key td.label").text_content() == "partner (EU)"
    assert await db.fetchval("select label from api_keys where workspace = $1", workspace) == "partner (EU)"

    await page.locator("#keys tr.key form.attach select").select_option("other")
    await page.locator("#keys tr.key form.attach button").click()
    assert await page.locator("#keys tr.key td.opens").text_content() == "keyed, other"
    if os.environ.get("HOOKLINE_SCREENSHOTS"):
        await page.locator("#keys").screenshot(
            path=str(Path(os.environ["HOOKLINE_SCREENSHOTS"]) / "console-keys.png")
        )
    await becomes(stack, workspace, "other", key, opened=True)
    assert await status_with(stack, workspace, "third", key) == 401
    assert await status_with(stack, workspace, "keyed", key) == 200

    await page.locator("#keys tr.key form.detach select").select_option("other")
    await page.locator("#keys tr.key form.detach button").click()
    assert await page.locator("#keys tr.key td.opens").text_content() == "keyed"
    await becomes(stack, workspace, "other", key, opened=False)
    assert await status_with(stack, workspace, "keyed", key) == 200

    # The same key cannot be pasted twice in a workspace: said, not a 500.
    await page.fill("#paste-key", key)
    await page.get_by_role("button", name="Store key").click()
    assert "already in use" in (await page.text_content("body") or "")
    await page.goto(here)

    await page.locator("#keys tr.key form.revoke button").click()
    assert await page.locator("#keys tr.empty").count() == 1
    await becomes(stack, workspace, "keyed", key, opened=False)
    assert await status_with(stack, workspace, "other", key) == 401
    assert await status_with(stack, workspace, "third", key) == 401
    await page.close()


async def test_a_workspace_session_tries_and_changes_keys_only_in_its_workspace(
    stack: Services, db: Connection, workspace: str
) -> None:
    other = f"{workspace}-b"
    await apply_yaml(db, TRIGGERS.format(ws=workspace))
    await apply_yaml(
        db,
        TRIGGERS.format(ws=other) + "  - name: only-there\n    auth: {type: api_key}\n"
        "    workflow: [{map: {n: 1}}]\n",
    )
    await routable(stack, workspace, "keyed")
    await routable(stack, other, "keyed")
    theirs = await new_key(db, other, "keyed", label="theirs")
    mine = await new_key(db, workspace, "keyed", label="mine")
    token = await create_token(db, workspace, "console")
    session = session_of(await sign_in(stack.base_url, token.token))
    own = f"/console/triggers/{workspace}/keyed"
    page = await get(stack.base_url, own, session)
    assert page.status_code == 200
    csrf = csrf_of(page)

    assert (await get(stack.base_url, f"/console/triggers/{other}/keyed", session)).status_code in (403, 404)
    tried = await post(
        stack.base_url, f"/console/triggers/{other}/keyed/try", session, {"csrf": csrf, "body": "{}"}
    )
    assert tried.status_code in (403, 404)
    assert await db.fetchval("select count(*) from executions where workspace = $1", other) == 0
    # Their key, named by its id under my trigger: no such key here.
    revoked = await post(stack.base_url, f"{own}/keys/{theirs.id}/revoke", session, {"csrf": csrf})
    assert revoked.status_code == 404
    assert await db.fetchval("select revoked_at from api_keys where id = $1", theirs.id) is None
    # Attaching my key to a trigger only the other workspace has: not found here.
    attached = await post(
        stack.base_url, f"{own}/keys/{mine.id}/attach", session, {"csrf": csrf, "trigger": "only-there"}
    )
    assert attached.status_code == 404
    assert await db.fetchval("select count(*) from api_key_triggers where key_id = $1", mine.id) == 1

    # Caller input the try cannot use is said on the page, not a 500.
    bad = await post(
        stack.base_url, f"{own}/try", session, {"csrf": csrf, "headers": "no colon here", "body": "{}"}
    )
    assert bad.status_code == 200
    assert "is not `Name: value`" in bad.text
    wrong_method = await post(stack.base_url, f"{own}/try", session, {"csrf": csrf, "method": "GE T"})
    assert "is not an HTTP method" in wrong_method.text
    assert (await get(stack.base_url, f"{own}?hours=99", session)).status_code == 400
