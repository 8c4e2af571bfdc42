"""`hookline apply -f`: a file with a workflow mistake is refused whole and changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from shared.db.pool import Connection
from tests.stack import ROOT


def apply(database_url: str, *files: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOOKLINE_DATABASE_URL": database_url, "HOOKLINE_AMQP_URL": "amqp://unused/"}
    args = [a for f in files for a in ("-f", str(f))]
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", "apply", *args],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


GOOD = """
workspace: {ws}
connections:
  crm: {{type: http, base_url: "https://crm.example.com", headers: {{api-key: "${{env:CRM_KEY}}"}}}}
triggers:
  - name: create
    auth: {{type: none}}
    workflow:
      - id: call
        http: {{connection: crm, method: POST, path: /customers}}
"""


async def test_a_file_with_an_unknown_connection_changes_nothing(
    tmp_path: Path, database_url: str, db: Connection, workspace: str
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD.format(ws=workspace))
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.format(ws=workspace + "-b").replace("connection: crm", "connection: erp"))
    refused = apply(database_url, good, bad)
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == (
        f"hookline: workspace {workspace}-b, trigger create, step call, field http.connection: "
        "unknown connection 'erp' (the workspace has: crm)\n"
    )
    for table in ("workspaces", "connections", "triggers"):
        column = "name" if table == "workspaces" else "workspace"
        assert await db.fetchval(f"select count(*) from {table} where {column} like $1", f"{workspace}%") == 0

    applied = apply(database_url, good)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.splitlines() == [
        f"workspace {workspace}: created",
        f"connection {workspace}/crm: created",
        f"trigger {workspace}/create: created (version 1)",
    ]


USES_CRM = """
workspace: {ws}
triggers:
  - name: follow-up
    auth: {{type: none}}
    workflow:
      - id: call
        http: {{connection: crm, method: POST, path: /follow-ups}}
"""
CRM_IN_POSTGRES = """
workspace: {ws}
connections:
  crm: {{type: postgres, dsn: "${{env:CRM_DSN}}"}}
"""


async def test_files_of_one_workspace_share_its_connections_and_cannot_retype_one_in_use(
    tmp_path: Path, database_url: str, db: Connection, workspace: str
) -> None:
    first, second, third = (tmp_path / name for name in ("crm.yaml", "follow-up.yaml", "retype.yaml"))
    first.write_text(GOOD.format(ws=workspace))
    second.write_text(USES_CRM.format(ws=workspace))
    third.write_text(CRM_IN_POSTGRES.format(ws=workspace))
    assert apply(database_url, first).returncode == 0
    applied = apply(database_url, second)
    assert (applied.returncode, applied.stderr) == (0, "")
    assert applied.stdout.splitlines() == [
        f"workspace {workspace}: unchanged",
        f"trigger {workspace}/follow-up: created (version 1)",
    ]

    refused = apply(database_url, third)
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == (
        f"hookline: workspace {workspace}, connection crm, field type: cannot change from http to postgres: "
        "triggers create, follow-up of the workspace use it in http steps\n"
    )
    stored = await db.fetchval("select spec->>'type' from connections where workspace = $1", workspace)
    assert stored == "http"
