"""The processes a bench run starts: by role, logged to files, stopped by pid, peak RSS kept.

Every process gets a process group of its own (a Ctrl-C in the terminal reaches only the
harness, which stops them in order) and a parent-death signal (if the harness is killed,
they go too). Before a process is stopped its peak RSS (VmHWM), and its children's (the
uvicorn server processes under their supervisor), is read from /proc and kept by role.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from shared.devstack.localservers.processes import _die_with_parent

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Running:
    """One started process."""

    role: str  # e.g. "ingress", "worker", "ceiling-app"
    name: str  # unique: "worker-2"
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class Fleet:
    """Everything the run started, in start order."""

    log_dir: Path
    env: dict[str, str]
    running: dict[str, Running] = field(default_factory=dict)
    peaks_kib: dict[tuple[str, int], int] = field(default_factory=dict)  # (role, pid) -> VmHWM
    _serial: int = 0

    def start(self, role: str, argv: list[str], env: dict[str, str] | None = None) -> Running:
        """Start `python argv...` (from the repository root) as a process of `role`."""
        self._serial += 1
        name = f"{role}-{self._serial}"
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, *argv],
                env={**self.env, **(env or {})},
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                process_group=0,
                preexec_fn=functools.partial(_die_with_parent, signal.SIGTERM, os.getpid()),
            )
        running = Running(role, name, process, log)
        self.running[name] = running
        return running

    def of_role(self, role: str) -> list[Running]:
        return [r for r in self.running.values() if r.role == role]

    def stop(self, role: str, timeout: float = 30) -> None:
        """SIGTERM every process of `role`, wait for each (SIGKILL to its group after `timeout`)."""
        group = self.of_role(role)
        for running in group:
            self._keep_peaks(running)
            if running.process.poll() is None:
                running.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for running in group:
            try:
                running.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                # The whole group (its pid: each process leads its own), so that a stuck
                # supervisor's server processes do not outlive it.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(running.process.pid, signal.SIGKILL)
                running.process.wait()
            del self.running[running.name]

    def stop_all(self, order: tuple[str, ...]) -> None:
        """Stop the roles in `order` first, then whatever else runs."""
        for role in order:
            self.stop(role)
        for role in {r.role for r in self.running.values()}:
            self.stop(role)

    def check_alive(self) -> None:
        """Raise if a process exited on its own, with the tail of its log."""
        for running in self.running.values():
            code = running.process.poll()
            if code is not None:
                tail = running.log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{running.name} exited with code {code}:\n{tail}")

    def sample_peaks(self) -> None:
        """Record the peak RSS of everything running (VmHWM only grows, so any time works)."""
        for running in self.running.values():
            self._keep_peaks(running)

    def _keep_peaks(self, running: Running) -> None:
        # A supervisor's children (uvicorn's server processes) are reported as "<role>-server".
        pids = [(running.role, running.process.pid)]
        pids += [
            (f"{running.role}-server", child)
            for child in _children(running.process.pid)
            if b"resource_tracker" not in _cmdline(child)  # multiprocessing's helper
        ]
        for role, pid in pids:
            peak = vm_hwm_kib(pid)
            if peak is not None:
                self.peaks_kib[(role, pid)] = max(peak, self.peaks_kib.get((role, pid), 0))

    def peaks_by_role(self) -> dict[str, list[int]]:
        """Role -> the peak RSS (KiB) of each of its processes, over the whole run."""
        out: dict[str, list[int]] = {}
        for (role, _), peak in sorted(self.peaks_kib.items()):
            out.setdefault(role, []).append(peak)
        return out


def vm_hwm_kib(pid: int) -> int | None:
    """The process's peak resident set size in KiB, or None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found
