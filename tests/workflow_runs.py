"""Run workflows inside the test process: a trigger from YAML, an invocation, resources."""

from __future__ import annotations

import textwrap
import time
import uuid
from typing import Any

import asyncpg
import httpx

from shared.db.executions import ExecutionRecord
from shared.errors import WorkflowError
from shared.spec.loader import load_text
from shared.wire.messages import Invocation, RequestData
from worker.engine import DEFAULT_OUTPUT_LIMIT, Workflow
from worker.steps.base import HttpTarget, Resources


def document(workflow: str, connections: str = "", trigger: str = "") -> str:
    """A one-trigger workspace document; the arguments are YAML blocks, indented as written."""
    parts = ["workspace: ws"]
    if connections:
        parts += ["connections:", textwrap.indent(textwrap.dedent(connections).strip(), "  ")]
    parts += ["triggers:", "  - name: t", "    auth: {type: none}", "    mode: request_response"]
    if trigger:
        parts.append(textwrap.indent(textwrap.dedent(trigger).strip(), "    "))
    parts += ["    workflow:", textwrap.indent(textwrap.dedent(workflow).strip(), "      ")]
    return "\n".join(parts) + "\n"


def workflow_of(
    workflow: str,
    resources: Resources | None = None,
    *,
    connections: str = "",
    trigger: str = "",
    output_limit: int = DEFAULT_OUTPUT_LIMIT,
    operator_written: bool = True,
) -> Workflow:
    """The compiled workflow of a document validated as `hookline apply` validates it (so, by
    default, as the operator wrote it; `operator_written=False` for a workspace token's)."""
    [workspace] = load_text(document(workflow, connections, trigger))
    return Workflow(workspace.triggers[0], resources, output_limit, operator_written=operator_written)


def invocation(
    body: Any = None, query: dict[str, Any] | None = None, method: str = "POST", workspace: str = "ws"
) -> Invocation:
    return Invocation(
        id=str(uuid.uuid4()),
        workspace=workspace,
        trigger="t",
        version=1,
        mode="request_response",
        received_at=time.time(),
        request=RequestData(
            method=method,
            path="/hooks/ws/t",
            query=query or {},
            content_type="application/json" if body is not None else None,
            body_kind="json" if body is not None else "empty",
            body=body,
        ),
    )


class StaticResources:
    """Resources with fixed http targets and pools (the worker's come from the registry)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        targets: dict[str, HttpTarget] | None = None,
        pools: dict[str, asyncpg.Pool] | None = None,
        guarded: httpx.AsyncClient | None = None,
    ) -> None:
        self.http = client
        self._guarded = guarded or client
        self._targets = targets or {}
        self._pools = pools or {}

    def guarded(self, workspace: str) -> httpx.AsyncClient:
        return self._guarded

    async def http_target(self, workspace: str, name: str) -> HttpTarget:
        if name not in self._targets:
            raise WorkflowError(f"connection {name!r} does not exist in workspace {workspace}")
        return self._targets[name]

    async def postgres(self, workspace: str, name: str) -> tuple[asyncpg.Pool, tuple[str, ...]]:
        if name not in self._pools:
            raise WorkflowError(f"connection {name!r} does not exist in workspace {workspace}")
        return self._pools[name], ()


class Recorded:
    """A Recorder that keeps the records it is given."""

    def __init__(self) -> None:
        self.records: list[ExecutionRecord] = []

    async def record(self, record: ExecutionRecord) -> None:
        self.records.append(record)
