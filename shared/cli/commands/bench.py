"""`hookline bench`: throughput and latency beside the machine's own ceiling (bench/run.py).

The harness lives in the repository's `bench/` folder, not in the installed packages: this
command finds it (the current folder, or the checkout the packages are installed from) and
hands over to it, so Ctrl-C reaches the harness, which stops everything it started.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from shared.errors import ConfigError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark every scenario beside its ceiling (needs root for private servers and wrk)",
        # Every option goes to bench/run.py as it is: "+" makes "--seconds" a plain argument here.
        add_help=False,
        prefix_chars="+",
    )
    p.add_argument("args", nargs=argparse.REMAINDER, help="options of bench/run.py (see --help)")
    p.set_defaults(run=_bench)


def bench_root() -> Path:
    """The checkout holding bench/run.py: the current folder first, else the installed one."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (root / "bench" / "run.py").is_file():
            return root
    raise ConfigError("bench/run.py not found: run `hookline bench` from a hookline checkout")


def _bench(ns: argparse.Namespace) -> int:
    root = bench_root()
    os.chdir(root)
    # Replace this process, so signals reach the harness directly.
    os.execv(sys.executable, [sys.executable, "-m", "bench.run", *ns.args])  # noqa: S606
