"""A host of its own for a test: a network namespace joined to the root one by a veth pair.

    with isolated_host("worker-a") as host:
        worker = subprocess.Popen(host.command(["python", "-m", "worker"]), ...)
        host.cut()      # the link goes down: nothing passes either way, no one is told
        host.restore()  # and comes back

The namespace reaches the root namespace only through its veth, at `host.root_address`
(a /30 of 10.231.0.0/16 this test made); servers in the root namespace it must reach listen
there too. Names are unique per run (`hl<pid><n>`), and only what this module made is ever
touched: the namespace, its veth (deleting one end deletes both), nothing else. Everything
is removed when the block ends, and at exit for a process that left a block by a signal.
Needs root and `ip` (iproute2).
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import itertools
import os
import random
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

NETWORK = ipaddress.IPv4Network("10.231.0.0/16")
_serial = itertools.count(1)
_made: dict[str, str] = {}  # namespace -> root link, made and not yet removed (see _sweep)


class NetnsError(RuntimeError):
    """Raised when `ip` refuses a step (not root, no netns support): its command and message."""


def ip(*args: str, namespace: str | None = None) -> str:
    """Run `ip ARGS` (inside `namespace` when given); its output, NetnsError on failure."""
    command = ["ip", *(["netns", "exec", namespace, "ip"] if namespace else []), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    if done.returncode != 0:
        raise NetnsError(f"{' '.join(command)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


@dataclass
class Host:
    """One namespace and its veth: root side `root_link` at `root_address`, its side at `address`."""

    name: str
    root_link: str
    link: str
    root_address: str
    address: str

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` run inside the namespace. `ip netns exec` execs it: the pid is the program's."""
        return ["ip", "netns", "exec", self.name, *argv]

    def cut(self) -> None:
        """Take the root side of the link down: packets either way are dropped, unannounced."""
        ip("link", "set", "dev", self.root_link, "down")

    def restore(self) -> None:
        """Bring the link back up (the kernel puts the /30's route back with it)."""
        ip("link", "set", "dev", self.root_link, "up")

    def is_cut(self) -> bool:
        """Whether the root side of the link is down now, as the kernel says."""
        return "state UP" not in ip("-o", "link", "show", "dev", self.root_link)


def _free_subnet() -> ipaddress.IPv4Network:
    """A /30 of NETWORK on none of the root namespace's interfaces (another run may use some)."""
    used = [
        ipaddress.ip_interface(word).network
        for line in ip("-o", "-4", "addr", "show").splitlines()
        for word in line.split()[3:4]
    ]
    subnets = list(NETWORK.subnets(new_prefix=30))
    for subnet in random.sample(subnets, 64):
        if not any(subnet.overlaps(other) for other in used):
            return subnet
    raise NetnsError(f"no free /30 in {NETWORK}")


def _remove(name: str, root_link: str) -> None:
    # Deleting the root end deletes its peer; the namespace goes last. Each step on its own,
    # so one that fails (already gone) does not keep the next from running.
    with contextlib.suppress(NetnsError):
        ip("link", "del", "dev", root_link)
    with contextlib.suppress(NetnsError):
        ip("netns", "del", name)
    _made.pop(name, None)


@atexit.register
def _sweep() -> None:
    """What a block left behind (the process was stopped inside it): removed at exit."""
    for name, root_link in list(_made.items()):
        _remove(name, root_link)


@contextlib.contextmanager
def isolated_host(role: str = "host") -> Iterator[Host]:
    """A fresh namespace with a veth to the root namespace, up, with test-made addresses."""
    serial = next(_serial)
    name = f"hl{os.getpid()}{role[:8]}{serial}"
    tag = f"{os.getpid() % 100000}{serial}"[-9:]
    root_link, link = f"hlr{tag}", f"hln{tag}"  # interface names: 15 characters at most
    subnet = _free_subnet()
    root_address, address = (str(a) for a in itertools.islice(subnet.hosts(), 2))
    ip("netns", "add", name)
    _made[name] = root_link
    try:
        ip("link", "add", root_link, "type", "veth", "peer", "name", link)
        ip("link", "set", link, "netns", name)
        ip("addr", "add", f"{root_address}/30", "dev", root_link)
        ip("link", "set", "dev", root_link, "up")
        ip("addr", "add", f"{address}/30", "dev", link, namespace=name)
        ip("link", "set", "dev", link, "up", namespace=name)
        ip("link", "set", "dev", "lo", "up", namespace=name)
        yield Host(name, root_link, link, root_address, address)
    finally:
        _remove(name, root_link)


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here (not root, no `ip`, a kernel without them), or None."""
    if os.geteuid() != 0:
        return "only root makes network namespaces"
    probe = f"hlprobe{os.getpid()}"
    try:
        ip("netns", "add", probe)
    except (NetnsError, OSError) as exc:
        return str(exc)
    with contextlib.suppress(NetnsError):
        ip("netns", "del", probe)
    return None
