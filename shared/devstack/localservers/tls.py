"""An AMQPS listener for a private RabbitMQ node: its certificate, key and CA, as rabbitmq.conf says.

The node reads the files as its own user, so they are copied into its data folder (which
is handed over to that user) rather than named where the caller keeps them.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from shared.devstack.localservers.ports import LOOPBACK


@dataclass(frozen=True, kw_only=True)
class TlsListener:
    """The node's TLS identity; with `verify_peer`, clients must show a certificate `cafile` signed."""

    certfile: Path  # the node's certificate (PEM), for the names clients connect to
    keyfile: Path  # its private key (PEM, unencrypted)
    cafile: Path  # the CA the node checks client certificates against
    verify_peer: bool = False
    port: int | None = None  # None: a free port at each start


def tls_config(listener: TlsListener, folder: Path, port: int) -> str:
    """Copy the listener's files into `folder` and return the rabbitmq.conf lines naming them."""
    folder.mkdir(parents=True, exist_ok=True)
    copies = {}
    for name, source in (
        ("ca.pem", listener.cafile),
        ("cert.pem", listener.certfile),
        ("key.pem", listener.keyfile),
    ):
        copies[name] = folder / name
        shutil.copyfile(source, copies[name])
        copies[name].chmod(0o600)
    verify = "verify_peer" if listener.verify_peer else "verify_none"
    return (
        "# AMQPS on loopback only, like the plain listener (RABBITMQ_NODE_IP_ADDRESS).\n"
        f"listeners.ssl.default = {LOOPBACK}:{port}\n"
        f"ssl_options.cacertfile = {copies['ca.pem']}\n"
        f"ssl_options.certfile = {copies['cert.pem']}\n"
        f"ssl_options.keyfile = {copies['key.pem']}\n"
        f"ssl_options.verify = {verify}\n"
        f"ssl_options.fail_if_no_peer_cert = {'true' if listener.verify_peer else 'false'}\n"
    )
