"""Free TCP ports on 127.0.0.1, and the `ports.json` that lets a data folder keep its port."""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING

import msgspec

from shared.devstack.localservers.errors import LocalServerError

if TYPE_CHECKING:
    from collections.abc import Collection
    from pathlib import Path

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"

# The machine's own servers live on these; a private server must never take one, even if
# the system service happens to be down right now. And 35672-35682, where rabbitmqctl binds
# its own distribution port (a node listening there makes rabbitmqctl fail).
RESERVED_PORTS = frozenset({4369, 5432, 5672, 15672, 15692, 25672, *range(35672, 35683)})


class Recorded(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What a data folder remembers between starts: its port and, for RabbitMQ, its node."""

    port: int | None = None
    node: str | None = None


def free_port(avoid: Collection[int] = ()) -> int:
    """A port nobody listens on right now (the kernel's pick), never reserved or in `avoid`.

    `avoid` holds ports already chosen but not yet bound, which the kernel may hand out again.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port: int = sock.getsockname()[1]
        if port not in RESERVED_PORTS and port not in avoid:
            return port


def port_is_free(port: int) -> bool:
    """True when a server could listen on 127.0.0.1:`port` now.

    SO_REUSEADDR as the servers set it: connections in TIME_WAIT from our own previous run
    must not make a restart move to another port.
    """
    if port in RESERVED_PORTS:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def claim_port(port: int, *, fixed: bool, what: str) -> int:
    """`port` while it is free; else another one (with a warning), or an error if `fixed`."""
    if port_is_free(port):
        return port
    if fixed:
        raise LocalServerError(f"{what}: port {port} is in use")
    moved = free_port()
    log.warning("%s: port %d is taken, moving to port %d", what, port, moved)
    return moved


def read_recorded(data_dir: Path) -> Recorded:
    """The folder's `ports.json`, or an empty record when there is none yet."""
    try:
        return msgspec.json.decode((data_dir / "ports.json").read_bytes(), type=Recorded)
    except FileNotFoundError:
        return Recorded()


def write_recorded(data_dir: Path, recorded: Recorded) -> None:
    """Replace the folder's `ports.json` in one rename, so a crash never leaves half a file."""
    tmp = data_dir / "ports.json.tmp"
    tmp.write_bytes(msgspec.json.format(msgspec.json.encode(recorded)) + b"\n")
    tmp.replace(data_dir / "ports.json")
