"""Sub-commands of `hookline`, one module per noun; each has `register(subparsers)`.

A command's `run(settings, args)` is a coroutine returning the exit code; errors are
HooklineError and become one line on stderr and exit code 1 (see shared/cli/__init__.py).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from shared.settings import Settings, load_settings

Command = Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]


def runs(command: Command) -> Callable[[argparse.Namespace], int]:
    """Wrap an async command for argparse's `set_defaults(run=...)`."""

    def run(ns: argparse.Namespace) -> int:
        return asyncio.run(command(load_settings(), ns))

    return run
