"""Server processes that ignore the terminal's Ctrl-C but die with the Python that started them.

Each server gets a session of its own, so a Ctrl-C in the terminal reaches only the parent,
which then stops the servers in order. PR_SET_PDEATHSIG asks the kernel to signal a server
when its parent dies, so a SIGKILLed parent (a test runner killed on timeout) still takes
its servers with it.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
import resource
import signal
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from shared.devstack.localservers.errors import LocalServerError

if TYPE_CHECKING:
    from shared.devstack.localservers.accounts import Account

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1

# Looked up once here: loading a library in the child between fork and exec is not safe.
_prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)
if _prctl is not None:
    _prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    _prctl.restype = ctypes.c_int
_setns = getattr(ctypes.CDLL(None, use_errno=True), "setns", None)
if _setns is not None:
    _setns.argtypes = [ctypes.c_int, ctypes.c_int]
    _setns.restype = ctypes.c_int
_CLONE_NEWNET = 0x40000000

# The kernel sends the parent-death signal when the *thread* that forked the child ends,
# not the process: a server started from asyncio.to_thread would die when the pool retires
# that thread. So every server is forked from this one thread, which lives as long as the
# process does.
_spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="localservers-spawner")


def spawn(
    argv: list[str],
    *,
    account: Account,
    env: dict[str, str],
    cwd: Path,
    output: Path,
    death_signal: signal.Signals,
    namespace: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` as `account` in its own session, stdout and stderr appended to `output`.

    `death_signal` is what the server gets if this Python process dies without stopping it:
    pick the server's own "shut down now, cleanly" signal. `namespace`: a network namespace
    (`ip netns add` made it) the server runs in.
    """
    return _spawner.submit(
        _spawn,
        argv,
        account=account,
        env=env,
        cwd=cwd,
        output=output,
        death_signal=death_signal,
        namespace=namespace,
    ).result()


def _spawn(
    argv: list[str],
    *,
    account: Account,
    env: dict[str, str],
    cwd: Path,
    output: Path,
    death_signal: signal.Signals,
    namespace: str | None,
) -> subprocess.Popen[bytes]:
    # Entering a namespace needs root: then the child switches user itself, after setns.
    switch = account.popen_kwargs() if namespace is None else {}
    with output.open("ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            # Popen runs this after switching user: a credential change clears the
            # parent-death signal, so it must be set last, here.
            preexec_fn=partial(_in_child, death_signal, os.getpid(), namespace, account),
            **switch,
        )


def _in_child(death_signal: signal.Signals, parent: int, namespace: str | None, account: Account) -> None:
    """Runs in the child between fork and exec: the namespace and the user when asked, open
    files up to the hard limit, then the parent-death signal (last: see above)."""
    if namespace is not None:
        enter_as(namespace, account)
    _raise_open_files()
    _die_with_parent(death_signal, parent)


def enter_as(namespace: str, account: Account) -> None:
    """In a child before exec: join network namespace `namespace`, then become `account`
    (Popen's own user switch comes before any preexec_fn, and setns needs root)."""
    if _setns is None:
        raise OSError("setns(2) is not available")
    fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
    try:
        if _setns(fd, _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns({namespace}) failed")
    finally:
        os.close(fd)
    if account.switch:
        os.setgroups([])
        os.setgid(account.gid)
        os.setuid(account.uid)


def _raise_open_files() -> None:
    # A RabbitMQ node keeps a file open per quorum queue replica: with a soft limit of 1024
    # (many shells' default) a node holding ~900 trigger queues never finishes booting after
    # a restart (DESIGN, measured). The soft limit may be raised to the hard one unprivileged.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _die_with_parent(death_signal: signal.Signals, parent: int) -> None:
    """Runs in the child between fork and exec; the setting survives exec."""
    if _prctl is None:
        return
    if _prctl(_PR_SET_PDEATHSIG, int(death_signal), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    # The parent may have died between fork and prctl; then no signal would ever come.
    if os.getppid() != parent:
        os._exit(1)


def wait_ready(
    probe: Callable[[], bool],
    process: subprocess.Popen[bytes],
    *,
    what: str,
    timeout: float,
    logs: tuple[Path, ...],
) -> None:
    """Poll `probe` until it is true; raise with the logs' tails if the process exits first."""
    deadline = time.monotonic() + timeout
    while not probe():
        code = process.poll()
        if code is not None:
            raise LocalServerError(f"{what} exited with code {code} while starting; {_tails(logs)}")
        if time.monotonic() > deadline:
            raise LocalServerError(f"{what} was not ready after {timeout:.0f} s; {_tails(logs)}")
        time.sleep(0.1)


def stop_process(
    process: subprocess.Popen[bytes], stop_signal: signal.Signals, *, what: str, timeout: float
) -> None:
    """Send `stop_signal` and wait for the exit; SIGKILL (with a warning) after `timeout`."""
    if process.poll() is None:
        process.send_signal(stop_signal)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("%s did not stop within %.0f s, killing pid %d", what, timeout, process.pid)
        process.kill()
        process.wait()


def processes_mentioning(folder: Path) -> list[int]:
    """Pids of processes whose command line, environment or working folder names `folder`.

    This process and its ancestors are left out: the shell or test runner that started us
    may well name the folder, and it is not a leftover of any server.
    """
    # The folder as a whole path component: /tmp/x/rabbit must not match /tmp/x/rabbit2.
    mention = re.compile(re.escape(os.fsencode(folder)) + rb"(?=[/\0:\s]|$)")
    skip = _ancestors()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        try:
            text = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
            text += os.fsencode(os.readlink(entry / "cwd"))
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if mention.search(text):
            found.append(int(entry.name))
    return found


def reap_leftovers(folder: Path, account: Account, *, timeout: float) -> None:
    """Wait until no process mentions `folder`; then SIGKILL what `account` still runs there.

    The servers' helpers (Erlang's port programs, PostgreSQL's backends) leave on their own
    once the server has gone; this only catches what did not, and says so.
    """
    deadline = time.monotonic() + timeout
    while pids := processes_mentioning(folder):
        if time.monotonic() > deadline:
            for pid in pids:
                if _owner(pid) == account.uid:
                    log.warning("pid %d still runs in %s after stopping, killing it", pid, folder)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            return
        time.sleep(0.05)


def _ancestors() -> set[int]:
    pids = {os.getpid()}
    pid = os.getppid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            # Field 4 of /proc/PID/stat, counted after the ")" that ends the command name.
            pid = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def _owner(pid: int) -> int | None:
    try:
        return Path(f"/proc/{pid}").stat().st_uid
    except FileNotFoundError:
        return None


def _tails(logs: tuple[Path, ...]) -> str:
    return "\n".join(log_tail(logfile) for logfile in logs)


def log_tail(logfile: Path, lines: int = 20) -> str:
    """The last `lines` lines of `logfile`, introduced by its name, for an error message."""
    try:
        text = logfile.read_text(errors="replace")
    except FileNotFoundError:
        return f"{logfile} does not exist"
    tail = "\n".join(text.splitlines()[-lines:])
    return f"last {lines} lines of {logfile}:\n{tail}"
