"""The HTTP client that sends webhooks: each connection goes to an address the delivery checked,
and is pooled under the callback's own host name.

httpx pools connections by the URL's (scheme, host, port). Pinning by writing the checked IP
into the URL (with the name passed to TLS as `sni_hostname`) made that key (https, IP, port):
a connection opened, and its certificate verified, for attacker.test was reused for victim.test
on the same address without any check, so whoever could point a name at their own server got
that name's webhooks. Here the URL keeps its host name, which is what the pool keys on, what
the Host header says and what TLS verifies; a network backend connects to the addresses the
delivery checked for that name (relay/delivery/urls.py `pin_target`), handed down in a context
variable by the task that sends the request (httpcore connects in that task).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import httpcore
import httpx

from relay.delivery.urls import Pin

# Deliveries go to many hosts: fewer idle connections per host than the upstream client keeps.
DELIVERY_LIMITS = httpx.Limits(max_connections=500, max_keepalive_connections=100)

_PIN: ContextVar[Pin | None] = ContextVar("delivery_pin", default=None)


@contextmanager
def pinned(pin: Pin) -> Iterator[None]:
    """Connections opened in this block for `pin`'s host and port go to its addresses."""
    token = _PIN.set(pin)
    try:
        yield
    finally:
        _PIN.reset(token)


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects a host name to the addresses checked for it, never to what DNS says now; a
    connection for a name with no pin in force fails (nothing is sent unchecked)."""

    def __init__(self) -> None:
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        pin = _PIN.get()
        if pin is None or (pin.host, pin.port) != (host, port):
            raise httpcore.ConnectError(f"no checked address for {host}:{port}")
        failure: Exception = httpcore.ConnectError(f"no address for {host}:{port}")
        for address in pin.addresses:  # every one was checked; as happy eyeballs would, in turn
            try:
                return await self._backend.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address,
                    socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks go over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, with a pool that connects through `PinnedBackend` (httpx has no
    argument for a network backend, so the pool it built is replaced by an equal one)."""

    def __init__(self, limits: httpx.Limits = DELIVERY_LIMITS,
                 verify: ssl.SSLContext | bool = True) -> None:
        super().__init__(verify=verify, limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=PinnedBackend(),
        )


def new_delivery_client(
    timeout: float, verify: ssl.SSLContext | bool = True,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """The one client a worker delivers with; redirects are never followed."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout), follow_redirects=False,
        transport=transport or PinnedTransport(verify=verify),
    )
