"""Hosts on one test-made LAN: a bridge in the root namespace, one namespace per host, a veth each.

    with bridged_hosts(3, "rmq") as lan:
        lan.hosts[1].cut()      # that host's port on the bridge goes down: it hears no one
        lan.hosts[1].restore()

The bridge has the /24's first address (the root namespace, where the services run, is on
the LAN through it); host i has address .i+2. A /24 of 10.232.0.0/16 on none of the root
namespace's interfaces is picked. Only what this module made is touched, and all of it is
removed when the block ends (at exit too, for a process stopped inside one: tests/netns.py's
sweep covers the namespaces, this module's the bridge). Needs root and `ip` (iproute2).
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import itertools
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass

from tests.netns import Host, NetnsError, ip

NETWORK = ipaddress.IPv4Network("10.232.0.0/16")
_serial = itertools.count(1)
_made: list[str] = []  # bridges made and not yet removed


@dataclass
class Lan:
    """The bridge (`bridge`, at `root_address`) and the hosts on it."""

    bridge: str
    root_address: str
    hosts: list[Host]


def _free_subnet() -> ipaddress.IPv4Network:
    used = [
        ipaddress.ip_interface(word).network
        for line in ip("-o", "-4", "addr", "show").splitlines()
        for word in line.split()[3:4]
    ]
    for subnet in random.sample(list(NETWORK.subnets(new_prefix=24)), 64):
        if not any(subnet.overlaps(other) for other in used):
            return subnet
    raise NetnsError(f"no free /24 in {NETWORK}")


def _remove(bridge: str, hosts: list[tuple[str, str]]) -> None:
    for name, root_link in hosts:  # each step on its own: one already gone stops nothing
        with contextlib.suppress(NetnsError):
            ip("link", "del", "dev", root_link)
        with contextlib.suppress(NetnsError):
            ip("netns", "del", name)
    with contextlib.suppress(NetnsError):
        ip("link", "del", "dev", bridge)
    if bridge in _made:
        _made.remove(bridge)


@atexit.register
def _sweep() -> None:
    for bridge in list(_made):
        _remove(bridge, [])


@contextlib.contextmanager
def bridged_hosts(count: int, role: str = "host") -> Iterator[Lan]:
    """`count` fresh namespaces on a fresh bridge, up, with test-made addresses."""
    serial = next(_serial)
    tag = f"{os.getpid() % 100000}{serial}"[-8:]
    bridge = f"hlb{tag}"
    subnet = _free_subnet()
    addresses = [str(a) for a in itertools.islice(subnet.hosts(), count + 1)]
    made: list[tuple[str, str]] = []
    ip("link", "add", bridge, "type", "bridge")
    _made.append(bridge)
    try:
        ip("addr", "add", f"{addresses[0]}/24", "dev", bridge)
        ip("link", "set", "dev", bridge, "up")
        hosts = []
        for index in range(count):
            name = f"hl{os.getpid()}{role[:6]}{serial}n{index}"
            root_link, link = f"hlp{tag}{index}", f"hlq{tag}{index}"  # 15 characters at most
            ip("netns", "add", name)
            made.append((name, root_link))
            ip("link", "add", root_link, "type", "veth", "peer", "name", link)
            ip("link", "set", link, "netns", name)
            ip("link", "set", "dev", root_link, "master", bridge)
            ip("link", "set", "dev", root_link, "up")
            address = addresses[index + 1]
            ip("addr", "add", f"{address}/24", "dev", link, namespace=name)
            ip("link", "set", "dev", link, "up", namespace=name)
            ip("link", "set", "dev", "lo", "up", namespace=name)
            hosts.append(Host(name, root_link, link, addresses[0], address))
        yield Lan(bridge, addresses[0], hosts)
    finally:
        _remove(bridge, made)
