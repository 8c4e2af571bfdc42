"""The `hookline` command. Services start as processes (`python -m worker`), never imported."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from shared.cli.commands import (
    bench,
    dlq,
    egress,
    executions,
    keys,
    lanes,
    registry,
    secrets,
    status,
    tokens,
    triggers,
)
from shared.errors import HooklineError

SERVICES = ("ingress", "dispatcher", "worker")
COMMANDS = (registry, triggers, egress, keys, tokens, secrets, executions, dlq, lanes, status, bench)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `hookline` console script."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in SERVICES:
        # Replace this process, so signals reach the service directly.
        os.execv(sys.executable, [sys.executable, "-m", args[0], *args[1:]])  # noqa: S606
    parser = build_parser()
    ns = parser.parse_args(args)
    if not hasattr(ns, "run"):
        parser.print_help()
        return 2
    try:
        result: int = ns.run(ns)
    except HooklineError as exc:
        print(f"hookline: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hookline", description="Webhook integration engine.")
    sub = parser.add_subparsers(metavar="COMMAND")

    p = sub.add_parser("up", help="run everything locally (RabbitMQ and PostgreSQL too, if no URLs are set)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--examples", default="examples", type=Path, help="folder of trigger files to apply")
    p.add_argument(
        "--rabbitmq-nodes",
        type=_node_count,
        default=None,
        help="local RabbitMQ nodes in one cluster (default: HOOKLINE_RABBITMQ_NODES, else 1)",
    )
    p.set_defaults(run=_up)

    for name in SERVICES:
        sub.add_parser(name, help=f"run the {name} service (see `hookline {name} --help`)")
    for command in COMMANDS:
        command.register(sub)
    return parser


def _node_count(value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        count = 0
    if not 1 <= count <= 9:
        raise argparse.ArgumentTypeError(f"expected a node count from 1 to 9, got {value!r}")
    return count


def _up(ns: argparse.Namespace) -> int:
    from shared.cli.up import run_stack

    nodes = ns.rabbitmq_nodes
    if nodes is None:
        try:
            nodes = _node_count(os.environ.get("HOOKLINE_RABBITMQ_NODES") or "1")
        except argparse.ArgumentTypeError as exc:
            print(f"hookline up: HOOKLINE_RABBITMQ_NODES: {exc}", file=sys.stderr)
            return 2
    return run_stack(workers=ns.workers, examples=ns.examples, rabbitmq_nodes=nodes)
