"""`make mutate`'s summary: per module, how many mutants the fast suite killed, and the score.

Reads `mutmut results --all true` on stdin. "no tests" mutants are in code that no fast test
runs (the integration tests cover it); they are counted apart, not as killed.
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict


def main() -> int:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for line in sys.stdin:
        name, _, status = line.strip().rpartition(": ")
        if not name or "__mutmut_" not in name:
            continue
        module = name.split(".x_")[0].split(".xǁ")[0]
        counts[module][status] += 1
    total: Counter[str] = Counter()
    print(f"{'module':40} {'killed':>7} {'survived':>8} {'timeout':>7} {'no tests':>8} {'score':>6}")
    for module in sorted(counts):
        row = counts[module]
        total += row
        print(_line(module, row))
    print(_line("all", total))
    return 0


def _line(name: str, row: Counter[str]) -> str:
    killed, survived, timeout = row["killed"], row["survived"], row["timeout"]
    tested = killed + survived + timeout
    score = f"{100 * (killed + timeout) / tested:.1f}%" if tested else "-"
    return f"{name:40} {killed:7} {survived:8} {timeout:7} {row['no tests']:8} {score:>6}"


if __name__ == "__main__":
    sys.exit(main())
