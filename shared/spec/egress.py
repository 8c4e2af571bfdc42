"""The egress policy of http steps: which addresses a tenant-chosen target may have.

One classification serves the check at apply (a literal address in a tenant's `url`) and
the one at connect time (every address a name resolves to, worker/egress.py). Refused:
loopback, private, link-local, shared (CGNAT), multicast, unspecified, reserved and every
other non-global address, IPv6 ULA, link-local and site-local, and IPv4 addresses carried
inside IPv6 (IPv4-mapped, NAT64, 6to4, Teredo) when the carried address is refused. An
allow-list (the operator's setting, a workspace's list that only the admin sets) opens
networks, optionally one port of them.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.errors import ConfigError, HooklineError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_PORT = 65535

_SHARED = ipaddress.IPv4Network("100.64.0.0/10")  # RFC 6598, carrier-grade NAT
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052, the IPv4 address in the last 32 bits
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215, local use: never global


class EgressRefused(HooklineError):
    """Raised when an http step's target address is refused by the egress policy."""

    problem_type = "egress-refused"


def refusal(address: Address) -> str | None:
    """Why `address` is refused as a tenant's target (a few words), or None when it is global.

    `is_global` alone is not enough on Python 3.11: multicast counts as global, and an
    IPv4-mapped `::ffff:127.0.0.1` is judged as IPv6. Carried IPv4 addresses are judged as
    the IPv4 address they reach.
    """
    if isinstance(address, ipaddress.IPv6Address):
        carried = _carried_ipv4(address)
        if carried is not None:
            reason = refusal(carried)
            return f"{reason} (IPv4 inside IPv6)" if reason else None
        if address in _NAT64_LOCAL:
            return "local-use NAT64"
        if address.is_site_local:
            return "site-local"
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("shared (carrier-grade NAT)", isinstance(address, ipaddress.IPv4Address) and address in _SHARED),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("not global", not address.is_global),
    )
    return next((reason for reason, hit in checks if hit), None)


def _carried_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # (server, client): the client is where packets go
    return None


def literal_address(host: str) -> Address | None:
    """The address a host written as a number stands for, as the resolver reads it (so
    `127.1`, `2130706433` and `0x7f.1` are 127.0.0.1); None for a name."""
    try:
        infos = socket.getaddrinfo(host, None, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError, ValueError):
        return None
    return ipaddress.ip_address(str(infos[0][4][0]).partition("%")[0])


@dataclass(frozen=True)
class AllowEntry:
    """A network opened to http steps, on every port or on one."""

    network: Network
    port: int | None = None

    def __str__(self) -> str:
        network = self.network
        text = str(network.network_address if network.num_addresses == 1 else network)
        if self.port is None:
            return text
        return f"[{text}]:{self.port}" if network.version == 6 else f"{text}:{self.port}"

    def covers(self, address: Address, port: int) -> bool:
        return address in self.network and (self.port is None or self.port == port)


def allow_entry(text: str) -> AllowEntry:
    """`10.1.0.0/16`, `127.0.0.1:8099`, `fd00::/8`, `[::1]:8099`; ValueError naming the entry."""
    value = text.strip()
    network, port = value, ""
    if value.startswith("["):
        network, _, rest = value[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(f"egress allow entry {text!r}: write an IPv6 network with a port as [net]:port")
        port = rest[1:]
    elif value.count(":") == 1:
        network, _, port = value.partition(":")
    try:
        parsed = ipaddress.ip_network(network, strict=False)
    except ValueError:
        raise ValueError(
            f"egress allow entry {text!r}: not an IP address or network (such as 10.1.0.0/16 or 127.0.0.1:8099)"
        ) from None
    if port and (not port.isdigit() or not 0 < int(port) <= MAX_PORT):
        raise ValueError(f"egress allow entry {text!r}: the port must be a number from 1 to {MAX_PORT}")
    return AllowEntry(parsed, int(port) if port else None)


def allow_list(text: str) -> tuple[AllowEntry, ...]:
    """Entries separated by commas or white space (the HOOKLINE_EGRESS_ALLOW setting)."""
    return tuple(allow_entry(item) for item in text.replace(",", " ").split())


@dataclass(frozen=True)
class EgressPolicy:
    """The refused addresses, minus what the allow-list opens."""

    allow: tuple[AllowEntry, ...] = ()

    def with_allowed(self, more: tuple[AllowEntry, ...]) -> EgressPolicy:
        return EgressPolicy((*self.allow, *more)) if more else self

    def check(self, address: Address, port: int) -> None:
        """Raise EgressRefused (with the reason, for the operator's log) unless allowed."""
        reason = refusal(address)
        if reason is not None and not any(entry.covers(address, port) for entry in self.allow):
            raise EgressRefused(f"{address} port {port} is refused: {reason} address")


@dataclass(frozen=True)
class Origin:
    """Scheme, host and port of a URL."""

    scheme: str
    host: str
    port: int


def literal_origin(url: str) -> Origin | None:
    """The origin an http step's `url` template writes out, or None when an expression has a
    part in it (`http://{{ h }}/`, `http://h:{{ p }}/`, `{{ next }}`): only what is written
    before the first `{{` and closed by a `/`, `?` or `#` (or the whole URL) is written out."""
    prefix, computed, _ = url.partition("{{")
    scheme, sep, rest = prefix.partition("://")
    if not sep or (computed and not any(mark in rest for mark in "/?#")):
        return None
    try:
        parts = urlsplit(prefix)
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return Origin(scheme.lower(), parts.hostname, port)


def operator_allow(text: str) -> tuple[AllowEntry, ...]:
    """The HOOKLINE_EGRESS_ALLOW setting's entries; ConfigError naming the variable if malformed."""
    try:
        return allow_list(text)
    except ValueError as exc:
        raise ConfigError(f"HOOKLINE_EGRESS_ALLOW: {exc}") from None
