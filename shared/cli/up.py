"""`hookline up`: the whole pipeline on this machine, for a newcomer, with no configuration.

Uses HOOKLINE_AMQP_URL / HOOKLINE_DATABASE_URL when set; otherwise starts RabbitMQ and
PostgreSQL as local processes with their data under `.hookline/` (kept between runs). With
`--rabbitmq-nodes N` (or HOOKLINE_RABBITMQ_NODES=N) RabbitMQ is a cluster of N local nodes
(`.hookline/rabbitmq-cluster/`), and the services get every node's URL.
Then it migrates, applies the example triggers, creates a demo API key, starts the
dispatcher, the workers and the ingress, and waits. A service that exits on its own is
started again after a backoff (shared/cli/supervision.py); a crash loop stops the stack.
Ctrl-C stops everything it started, in order: ingress first (no new calls), then workers
(finish in-flight runs), dispatcher, and the servers last.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import FrameType

from shared.cli.supervision import CrashLoop, Supervisor
from shared.db.keys import create_key, revoke_keys_labelled
from shared.db.migrate import migrate
from shared.db.pool import connect
from shared.db.registry import apply_workspace
from shared.devstack.demo_erp import demo_erp_names, prepare_demo_erp
from shared.devstack.localservers import LocalPostgres, LocalRabbitMQ
from shared.devstack.localservers.cluster import CLUSTER_FOLDER, LocalRabbitMQCluster
from shared.devstack.localservers.ports import free_port, port_is_free
from shared.devstack.localservers.processes import _die_with_parent
from shared.errors import HooklineError
from shared.settings import STATE_DIR, Stack, secrets_key_file, write_stack
from shared.spec.loader import load_file
from shared.spec.model import ApiKeyAuth

DEMO_KEY_LABEL = "demo key (hookline up)"


class Stopping(Exception):
    """Raised inside the wait loop when Ctrl-C or SIGTERM arrives."""


Server = LocalRabbitMQ | LocalRabbitMQCluster | LocalPostgres


def run_stack(workers: int, examples: Path, rabbitmq_nodes: int = 1) -> int:
    """Bring everything up, wait for Ctrl-C, bring everything down."""
    state = STATE_DIR.resolve()
    state.mkdir(parents=True, exist_ok=True)
    port = int(os.environ.get("HOOKLINE_PORT", "8080"))
    servers: list[Server] = []
    supervisor = Supervisor()

    def on_signal(signum: int, _: FrameType | None) -> None:
        raise Stopping(signal.Signals(signum).name)

    lock = _lock_folder(state)
    if lock is None:
        return 1
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        rabbitmq: LocalRabbitMQ | LocalRabbitMQCluster = (
            LocalRabbitMQCluster(state / CLUSTER_FOLDER, rabbitmq_nodes)
            if rabbitmq_nodes > 1
            else LocalRabbitMQ(state / "rabbitmq")
        )
        amqp_url = os.environ.get("HOOKLINE_AMQP_URL") or _start(rabbitmq, servers)
        database_url = os.environ.get("HOOKLINE_DATABASE_URL") or _start(
            LocalPostgres(state / "postgres"), servers
        )
        admin_token = os.environ.get("HOOKLINE_ADMIN_TOKEN") or _admin_token(state)
        secrets_key = os.environ.get("HOOKLINE_SECRETS_KEY") or secrets_key_file(state)
        demo = _demo_env()
        keys, triggers = asyncio.run(_prepare(database_url, sorted(examples.glob("*.y*ml"))))
        if "DEMO_ERP_DSN" not in os.environ:
            # The stock-at-hand example's `erp`: a database and read-only role of its own,
            # never hookline's database nor its superuser (a workspace's SQL runs as that role).
            demo["DEMO_ERP_DSN"] = asyncio.run(prepare_demo_erp(database_url, **demo_erp_names(database_url)))
        env = {
            **demo,  # what the examples' connections reference; the user's own variables win
            **os.environ,
            "HOOKLINE_AMQP_URL": amqp_url,
            "HOOKLINE_DATABASE_URL": database_url,
            "HOOKLINE_ADMIN_TOKEN": admin_token,
            "HOOKLINE_SECRETS_KEY": secrets_key,
            "HOOKLINE_PORT": str(port),
            "HOOKLINE_LOG_JSON": os.environ.get("HOOKLINE_LOG_JSON", "false"),
        }
        supervisor.add(
            "demo-target",
            functools.partial(
                _service, ["shared.devstack.demo_target", "--port", demo["DEMO_TARGET_PORT"]], env
            ),
        )
        supervisor.add("dispatcher", functools.partial(_service, ["dispatcher"], env))
        for _ in range(workers):
            supervisor.add("worker", functools.partial(_service, ["worker"], env))
        supervisor.add("ingress", functools.partial(_service, ["ingress"], env))
        _wait_until_ready(port, supervisor.processes())
        prefix = os.environ.get("HOOKLINE_AMQP_PREFIX") or "hookline"
        local_cluster = str(state / CLUSTER_FOLDER) if rabbitmq in servers and rabbitmq_nodes > 1 else None
        write_stack(
            Stack(
                amqp_url=amqp_url,
                database_url=database_url,
                port=port,
                amqp_prefix=prefix,
                rabbitmq_cluster=local_cluster,
            )
        )
        _banner(port, keys, triggers, admin_token)
        while True:
            supervisor.check()
            time.sleep(0.5)
    except Stopping:
        print("\nhookline up: stopping...", file=sys.stderr)
        return 0
    except CrashLoop as exc:
        print(f"hookline up: {exc}; stopping", file=sys.stderr)
        return 1
    except HooklineError as exc:
        print(f"hookline up: {exc}", file=sys.stderr)
        return 1
    finally:
        # A second Ctrl-C must not interrupt the orderly stop.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        (state / "stack.json").unlink(missing_ok=True)
        _stop_services(supervisor.processes())
        for server in reversed(servers):
            server.stop()
        os.close(lock)
        print("hookline up: stopped", file=sys.stderr)


def _start(server: Server, started: list[Server]) -> str:
    if isinstance(server, LocalRabbitMQCluster):
        name = f"a RabbitMQ cluster of {len(server.folders)} nodes"
    else:
        name = "RabbitMQ" if isinstance(server, LocalRabbitMQ) else "PostgreSQL"
    print(f"hookline up: starting {name} (data in {STATE_DIR}/)...", file=sys.stderr)
    started.append(server)
    return server.start()


def _admin_token(state: Path) -> str:
    """A new admin token for this run: printed in the banner, held only in the services' memory.

    Nothing secret is kept on disk: an earlier version's token file is removed.
    """
    (state / "admin-token").unlink(missing_ok=True)
    return secrets.token_urlsafe(32)


def _lock_folder(state: Path) -> int | None:
    """Hold `.hookline/up.lock` for this run; None (said why) when another run holds it.

    Two runs on one data folder would start a second RabbitMQ on the first one's files,
    and the second's clean-up would stop the first one's servers.
    """
    fd = os.open(state / "up.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        print(
            f"hookline up: another `hookline up` (pid {holder}) is running in this folder; "
            "use it, or stop it with Ctrl-C first",
            file=sys.stderr,
        )
        return None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def _demo_env() -> dict[str, str]:
    """The demo target's port, URL and key (fresh each run)."""
    # 8099 when nothing listens there, else any free port (the demo target is ours).
    port = os.environ.get("HOOKLINE_DEMO_TARGET_PORT") or str(8099 if port_is_free(8099) else free_port())
    return {
        "DEMO_TARGET_PORT": port,
        "DEMO_TARGET_URL": f"http://127.0.0.1:{port}",
        "DEMO_TARGET_KEY": secrets.token_urlsafe(16),
    }


async def _prepare(database_url: str, files: list[Path]) -> tuple[dict[str, str], list[str]]:
    """Migrate, apply the examples, and make a fresh demo key for their API-key triggers."""
    workspaces = [ws for path in files for ws in load_file(path)]
    urls = []
    async with connect(database_url) as connection:
        await migrate(connection)
        async with connection.transaction():
            for workspace in workspaces:
                await apply_workspace(connection, workspace)
        keyed: dict[str, list[str]] = {}
        for workspace in workspaces:
            for trigger in workspace.triggers:
                urls.append(f"/hooks/{workspace.workspace}/{trigger.name}  ({trigger.mode})")
                if isinstance(trigger.auth, ApiKeyAuth):
                    keyed.setdefault(workspace.workspace, []).append(trigger.name)
        keys = {}
        for workspace_name, names in keyed.items():
            # One demo key per run: the previous run's is revoked, this one is printed.
            await revoke_keys_labelled(connection, workspace_name, DEMO_KEY_LABEL)
            keys[workspace_name] = (await create_key(connection, workspace_name, names, DEMO_KEY_LABEL)).key
    return keys, urls


def _service(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # Own process group: Ctrl-C reaches only `up`, which stops the services in order.
    # PDEATHSIG: if `up` itself is killed, the services go too.
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        env=env,
        process_group=0,
        preexec_fn=functools.partial(_die_with_parent, signal.SIGTERM, os.getpid()),
    )


def _wait_until_ready(port: int, services: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for name, process in services:
            if process.poll() is not None:
                raise HooklineError(f"{name} exited with code {process.returncode} while starting")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise HooklineError(f"the ingress did not become ready on port {port} within 60 s")


def _stop_services(services: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    # Ingress first (no new calls), then workers (finish in flight), dispatcher last.
    order = ["ingress", "worker", "dispatcher", "demo-target"]
    for name in order:
        group = [p for n, p in services if n == name and p.poll() is None]
        for process in group:
            process.send_signal(signal.SIGTERM)
        for process in group:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _banner(port: int, keys: dict[str, str], urls: list[str], admin_token: str) -> None:
    base = f"http://127.0.0.1:{port}"
    lines = [
        "",
        f"hookline is up on {base}",
        "",
        "Webhook URLs:",
        *[f"  {base}{url}" for url in urls],
        "",
    ]
    for workspace, workspace_key in keys.items():
        lines.append(f"API key for workspace {workspace} (shown once): {workspace_key}")
    key = keys.get("demo")
    if key:
        lines += [
            "",
            "Try it:",
            f"  curl -s -X POST -H 'X-API-Key: {key}' -H 'Content-Type: application/json' \\",
            f"       -d '{{\"a\":1}}' '{base}/hooks/demo/echo?x=1'",
            f"  curl -s -X POST -H 'X-API-Key: {key}' -H 'Content-Type: application/json' \\",
            f"       -d '{{\"a\":1}}' '{base}/hooks/demo/inbox'",
            f"  curl -s -X POST -H 'X-API-Key: {key}' '{base}/hooks/demo/create-customer?customerid=123'",
            f"  curl -s -H 'X-API-Key: {key}' '{base}/hooks/demo/stock-at-hand?item=A-100'",
            f"  curl -s -X POST -H 'X-API-Key: {key}' -H 'Content-Type: application/json' \\",
            f'       -d \'{{"petname":"Gromit","petstatus":"Sold"}}\' \'{base}/hooks/demo/petstore\'',
            "  .venv/bin/hookline executions show <execution_id>",
            "",
        ]
    lines += [
        f"Admin token (management API and console; new each run): {admin_token}",
        "Press Ctrl-C to stop.",
        "",
    ]
    print("\n".join(lines), flush=True)
