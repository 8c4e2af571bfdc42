"""An httpx client that holds every connection to the egress policy, at connect time.

The name is resolved here, each address it resolves to is checked (shared/spec/egress.py),
and the socket is opened to a checked address, never to the name again: no second lookup
can answer differently (DNS rebinding). TLS still verifies, and sends as SNI, the name
(httpcore takes those from the URL, not from the socket). Redirects are not followed; if
they ever are, each one opens its connection through here too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable

import httpcore
import httpx

from shared.spec.egress import EgressPolicy, EgressRefused


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the egress check between resolving and connecting."""

    def __init__(self, policy: EgressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"{host} does not resolve ({exc})") from None
        # Every address is checked before any is tried: a name may not mix public and internal.
        targets = list(dict.fromkeys(str(info[4][0]) for info in infos))
        try:
            for target in targets:
                self._policy.check(ipaddress.ip_address(target.partition("%")[0]), port)
        except EgressRefused as exc:
            raise httpcore.ConnectError(f"{host}: {exc}") from None
        failure: httpcore.ConnectError | None = None
        for target in targets:
            try:
                return await self._inner.connect_tcp(target, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                failure = exc
        raise failure or httpcore.ConnectError(f"{host} resolves to no address")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not reachable from http steps")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a connection pool that connects through GuardedBackend."""

    def __init__(self, policy: EgressPolicy, limits: httpx.Limits) -> None:
        super().__init__(limits=limits)
        # httpx takes no network backend; its pool is the one attribute to replace (it is
        # what every request goes through), built with the same limits and TLS defaults.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(policy),
        )


def guarded_client(policy: EgressPolicy, limits: httpx.Limits) -> httpx.AsyncClient:
    """A client for targets a workspace chose: no redirects, every connection checked."""
    return httpx.AsyncClient(follow_redirects=False, transport=GuardedTransport(policy, limits))
