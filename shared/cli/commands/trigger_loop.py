"""`hookline triggers try|rejected|sample`: the integration developer's loop on one trigger.

`try` asks the ingress's API to send the call (only the ingress can sign it with the
trigger's secret or make it a temporary key); `rejected` and `sample` read the database.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import httpx
import msgspec

from shared.cli.commands import runs
from shared.cli.commands.dlq import trigger_path
from shared.cli.commands.output import print_json, print_table, when
from shared.db.pool import connect
from shared.db.rejected_calls import list_rejected
from shared.db.triggers import latest_sample
from shared.errors import HooklineError
from shared.ops.sample_paths import sample_paths
from shared.settings import Settings


def register_actions(actions: Any) -> None:
    """Add try, rejected and sample to `hookline triggers`."""
    p = actions.add_parser(
        "try", help="send a real call (the last sample's, unless given) and show the answer"
    )
    p.add_argument("trigger", metavar="W/T", type=trigger_path)
    p.add_argument("-X", "--method", help="HTTP method (default: the sample's, else POST)")
    p.add_argument("-d", "--data", help="the body (JSON is sent as application/json)")
    p.add_argument("-q", "--query", action="append", default=[], metavar="K=V", help="a query parameter")
    p.add_argument("-H", "--header", action="append", default=[], metavar="'NAME: VALUE'", help="a header")
    p.add_argument("--password-env", metavar="NAME", help="Basic triggers: the variable holding the password")
    p.add_argument("--token", help="a workspace token (default: HOOKLINE_ADMIN_TOKEN)")
    p.add_argument("--json", action="store_true", help="print the whole answer as JSON")
    p.set_defaults(run=runs(_try))

    p = actions.add_parser("rejected", help="refused calls, newest first, with what the sender can fix")
    p.add_argument("trigger", metavar="W/T", type=trigger_path)
    p.add_argument("--limit", type=int, default=50, help="how many (default 50)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=runs(_rejected))

    p = actions.add_parser("sample", help="the last accepted call, as a workflow sees `request`")
    p.add_argument("trigger", metavar="W/T", type=trigger_path)
    p.add_argument(
        "--paths", action="store_true", help="every path with its type, value and {{ }} expression"
    )
    p.add_argument("--json", action="store_true", help="print JSON (with --paths: the paths)")
    p.set_defaults(run=runs(_sample))


def try_request(ns: argparse.Namespace, environ: Any) -> dict[str, Any]:
    """The `TryCall` (ingress/trials.py) the options describe; HooklineError on a bad option."""
    call: dict[str, Any] = {}
    if ns.method:
        call["method"] = ns.method
    if ns.data is not None:
        call["body"] = ns.data
    if ns.query:
        query: dict[str, list[str]] = {}
        for item in ns.query:
            name, equals, value = item.partition("=")
            if not equals or not name:
                raise HooklineError(f"-q {item!r}: write NAME=VALUE")
            query.setdefault(name, []).append(value)
        call["query"] = {k: v[0] if len(v) == 1 else v for k, v in query.items()}
    if ns.header:
        headers = {}
        for item in ns.header:
            name, colon, value = item.partition(":")
            if not colon or not name.strip() or " " in name.strip():
                raise HooklineError(f"-H {item!r}: write 'Name: value'")
            headers[name.strip()] = value.strip()
        call["headers"] = headers
    if ns.password_env:
        password = environ.get(ns.password_env)
        if password is None:
            raise HooklineError(f"--password-env {ns.password_env}: that variable is not set")
        call["password"] = password
    return call


async def _try(settings: Settings, ns: argparse.Namespace) -> int:
    workspace, name = ns.trigger
    token = ns.token or settings.admin_token
    if not token:
        raise HooklineError("give --token or set HOOKLINE_ADMIN_TOKEN: trying a trigger goes through the API")
    url = f"{settings.public_url}/api/workspaces/{workspace}/triggers/{name}/try"
    call = try_request(ns, os.environ)
    try:
        async with httpx.AsyncClient(timeout=120) as client:
            answer = await client.post(url, json=call, headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError as exc:
        raise HooklineError(
            f"cannot reach the ingress at {settings.public_url} ({type(exc).__name__})"
        ) from None
    if answer.status_code != 200:
        raise HooklineError(_problem(answer))
    result = answer.json()
    if ns.json:
        print_json(result)
    else:
        _print_answer(result)
    return 0 if result["status"] < 400 else 2


def _problem(answer: httpx.Response) -> str:
    try:
        problem = msgspec.json.decode(answer.content)
    except msgspec.DecodeError:
        return f"the API answered {answer.status_code}"
    if isinstance(problem, dict) and problem.get("detail"):
        return str(problem["detail"])
    return f"the API answered {answer.status_code}"


def _print_answer(result: dict[str, Any]) -> None:
    sent = result["sent"]
    origin = "the last sample" if sent["from_sample"] else "the options"
    print(f"{sent['method']} {sent['url']} ({origin}, auth: {sent['authenticated_with']})")
    print(f"HTTP {result['status']} in {result['time_ms']:.1f} ms")
    for header, value in result["headers"].items():
        print(f"{header}: {value}")
    print()
    print(result["body"] + (" ...(truncated)" if result["body_truncated"] else ""))
    if result["execution_id"]:
        print(f"execution {result['execution_id']}: {result['console_url']}", file=sys.stdout)
        print(f"  api: {result['execution_url']}")


async def _rejected(settings: Settings, ns: argparse.Namespace) -> int:
    workspace, name = ns.trigger
    if not 1 <= ns.limit <= 1000:
        raise HooklineError("--limit must be between 1 and 1000")
    async with connect(settings.database_url) as connection:
        page = await list_rejected(connection, workspace, name, ns.limit)
    if ns.json:
        print_json(page.items)
        return 0
    rows = [("TIME", "STATUS", "REASON", "HINT")]
    rows += [(when(r.at), str(r.status), r.reason, _hint_line(r.hint, r.detail)) for r in page.items]
    print_table(rows)
    return 0


def _hint_line(hint: str, detail: dict[str, Any]) -> str:
    expected = detail.get("expected")
    return f"{hint}; expected {expected}" if expected else hint


async def _sample(settings: Settings, ns: argparse.Namespace) -> int:
    workspace, name = ns.trigger
    async with connect(settings.database_url) as connection:
        sample = await latest_sample(connection, workspace, name)
    if not ns.paths:
        print_json(sample)
        return 0
    found = sample_paths(sample.execution_id, sample.request)
    if ns.json:
        print_json(found.paths)
        return 0
    print_table(
        [
            ("PATH", "TYPE", "VALUE", "EXPRESSION"),
            *((p.path, p.type, p.value, p.expression) for p in found.paths),
        ]
    )
    if found.truncated:
        print(f"(only the first {len(found.paths)} paths are listed)", file=sys.stderr)
    return 0
