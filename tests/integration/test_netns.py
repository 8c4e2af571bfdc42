"""tests/netns.py itself: a host that reaches the root namespace through its veth only, a cut
that the kernel reports and that drops traffic, and nothing left behind after the block."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from tests.netns import ip, isolated_host, unavailable_reason

pytestmark = pytest.mark.fault

# Connects to (address, port) from inside the namespace; prints "ok" or the error's name.
_CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
    print("ok")
except OSError as exc:
    print(type(exc).__name__)
"""


@pytest.fixture(autouse=True)
def _namespaces_here() -> None:
    if (reason := unavailable_reason()) is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"network namespaces are needed here: {reason}")
        pytest.skip(f"network namespaces are needed here: {reason}")


def test_a_host_reaches_the_root_side_address_only_while_its_link_is_up_and_leaves_nothing_behind() -> None:
    links_before = ip("-o", "link", "show")
    with isolated_host("probe") as host, socket.socket() as server:
        server.bind((host.root_address, 0))
        server.listen()
        port = str(server.getsockname()[1])

        def connect(address: str, timeout: str = "5") -> str:
            argv = [sys.executable, "-c", _CONNECT, address, port, timeout]
            done = subprocess.run(host.command(argv), capture_output=True, text=True, timeout=30, check=True)
            return done.stdout.strip()

        assert host.name in ip("netns", "list")
        assert connect(host.root_address) == "ok"
        # The root namespace's loopback is not the host's: a server there is out of its reach.
        assert connect("127.0.0.1") == "ConnectionRefusedError"

        host.cut()
        assert host.is_cut()
        assert "NO-CARRIER" in ip("-o", "link", "show", "dev", host.link, namespace=host.name)
        # Dropped, not refused: the host's SYN goes nowhere and nobody answers it.
        assert connect(host.root_address, timeout="1") == "TimeoutError"

        host.restore()
        assert not host.is_cut()
        assert connect(host.root_address) == "ok"
    assert host.name not in ip("netns", "list")
    assert ip("-o", "link", "show") == links_before  # its veth is gone, and no other link was touched
