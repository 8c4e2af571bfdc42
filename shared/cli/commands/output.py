"""How commands print: JSON for scripts (`--json`), padded tables for people."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec


def print_json(value: Any) -> None:
    """One indented JSON document on stdout."""
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(value), indent=2).decode() + "\n")


def print_table(rows: Sequence[Sequence[str]]) -> None:
    """A header row and its rows, columns padded to their widest cell."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def when(moment: datetime | None) -> str:
    """A time for a table cell."""
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"
