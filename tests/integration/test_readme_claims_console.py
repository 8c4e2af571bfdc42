"""README (Console): a trigger's page shows "**Refused calls** (the newest 20: time, status,
reason and the sender's hint, never a secret)", on the session's real stack."""

from __future__ import annotations

import re

from shared.db.pool import Connection
from tests.helpers import apply_yaml
from tests.integration.console_browser import get, session_of, sign_in
from tests.stack import Services

ADMIN = "test-admin-token-0123456789"
TRIGGER = """
workspace: {ws}
triggers:
  - {{name: guarded, auth: {{type: api_key}}, workflow: [{{id: seen, map: {{n: 1}}}}]}}
"""
SECRET = "hk_presented-key-never-shown-0123456789"


async def test_the_trigger_page_shows_the_newest_20_refused_calls_and_no_credential(
    stack: Services, db: Connection, workspace: str
) -> None:
    await apply_yaml(db, TRIGGER.format(ws=workspace))
    ids = []
    for n in range(25):
        ids.append(
            await db.fetchval(
                "insert into rejected_calls (workspace, trigger, at, status, problem_type, reason, hint,"
                " method, headers) values ($1, 'guarded', now() - make_interval(secs => $2), 401,"
                " '/problems/unauthorized', 'unknown-key', $3, 'POST', $4) returning id",
                workspace,
                25 - n,  # the last inserted is the newest
                {"reason": "unknown-key", "message": f"hint number {n}"},
                {"x-api-key": SECRET},
            )
        )
    session = session_of(await sign_in(stack.base_url, ADMIN))
    page = await get(stack.base_url, f"/console/triggers/{workspace}/guarded", session)
    assert page.status_code == 200, page.text
    shown = [int(x) for x in re.findall(r'<tr class="refused-call" data-id="(\d+)">', page.text)]
    assert shown == list(reversed(ids))[:20]  # the newest 20, newest first
    assert "hint number 24" in page.text
    assert "hint number 4" not in page.text  # the 21st newest is not shown
    assert "Refused calls (20+)" in page.text
    assert SECRET not in page.text
