"""Profiles of a bench run: py-spy on a role's processes during each measured load.

`hookline bench --profile ingress` (or worker, ceiling-app, ...) records every process of
that role with `py-spy record --format raw` while the load runs, and writes the collapsed
stacks and a summary (top functions by own and by inclusive samples) to bench/results/.
`python -m bench.profile FILE.txt` prints the summary of a recorded file again.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path


class Profiler:
    """py-spy on each role's pids, started and stopped around one load.

    Writes `<output>-<role>.<pid>.txt` (collapsed stacks) and `<output>-<role>.summary.txt`.
    """

    def __init__(self, pids: dict[str, list[int]], output: Path, rate: int = 250) -> None:
        self.outputs = {role: output.with_name(f"{output.name}-{role}") for role in pids}
        found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(found).exists():
            raise RuntimeError("py-spy is missing: pip install py-spy")
        record = [found, "record", "--format", "raw", "--rate", str(rate), "--subprocesses", "--nonblocking"]
        self._processes = [
            subprocess.Popen(
                [*record, "--pid", str(pid), "-o", f"{self.outputs[role]}.{pid}.txt"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                process_group=0,
            )
            for role, role_pids in pids.items()
            for pid in role_pids
        ]

    def stop(self) -> None:
        """Stop recording (py-spy writes its file on SIGINT); summarise each role."""
        for process in self._processes:
            process.send_signal(signal.SIGINT)
        for process in self._processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for output in self.outputs.values():
            stacks: Counter[str] = Counter()
            for path in sorted(output.parent.glob(output.name + ".*.txt")):
                stacks.update(read_collapsed(path))
            Path(f"{output}.summary.txt").write_text(summary(stacks))


def read_collapsed(path: Path) -> Counter[str]:
    """`frame;frame;frame count` lines, as py-spy's raw format writes them."""
    stacks: Counter[str] = Counter()
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                stacks[stack] += int(count)
    return stacks


def _name(frame: str) -> str:
    # "function (path/to/file.py:123)" -> "function (file.py)", so lines of one function add up.
    function, _, where = frame.partition(" (")
    filename = where.rsplit(":", 1)[0].rstrip(")")
    parts = filename.split("/")
    short = "/".join(parts[-2:]) if len(parts) > 1 else filename
    return f"{function} ({short})"


def summary(stacks: Counter[str], top: int = 40) -> str:
    """Top functions by own samples and by inclusive samples, in % of all samples."""
    total = sum(stacks.values()) or 1
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for stack, count in stacks.items():
        frames = [_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    lines = [f"{total} samples", "", "own %  function"]
    lines += [f"{100 * n / total:5.1f}  {name}" for name, n in own.most_common(top)]
    lines += ["", "incl % function"]
    lines += [f"{100 * n / total:5.1f}  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args(argv)
    stacks: Counter[str] = Counter()
    for path in args.files:
        stacks.update(read_collapsed(path))
    print(summary(stacks, args.top), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
