"""TLS for webhooks: a connection verified for one host name is never used for another.

A real TLS server (uvicorn) on 127.0.0.1 with certificates from `trustme`; two host names,
attacker.test and victim.test, both resolve to it (the event loop's resolver is faked, as in
tests/relay/test_delivery_safety.py, and the address passes the check as a public one would).
The attacker's certificate covers only its own name: a webhook for victim.test must fail
verification, even with a live, verified connection for attacker.test to the same address and
port in the pool.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import uvicorn
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from relay.delivery import urls
from relay.delivery.send import Attempt, send
from relay.delivery.transport import new_delivery_client
from relay.delivery.urls import parse_host_ip
from relay.devtools.redis_server import free_port
from relay.worker import running_worker
from tests.conftest import SECRET, Receiver, SettingsFactory, api_client, eventually, sim_job

NAMES = ("attacker.test", "victim.test")
_REAL_GETADDRINFO = asyncio.BaseEventLoop.getaddrinfo


@pytest.fixture(autouse=True)
def both_names_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    async def getaddrinfo(self: asyncio.AbstractEventLoop, host: Any, port: Any,
                          *args: Any, **kwargs: Any) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if parse_host_ip(name) is not None:
            real: list[Any] = await _REAL_GETADDRINFO(self, host, port, *args, **kwargs)  # type: ignore[arg-type]
            return real
        if name not in NAMES:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
                 ("127.0.0.1", int(port or 0)))]

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)
    # The production path: private callbacks refused, but this one loopback address passes the
    # check (it stands for a public address both names resolve to), so names are pinned.
    real_forbidden = urls.is_forbidden_ip
    monkeypatch.setattr(urls, "is_forbidden_ip",
                        lambda ip: False if str(ip) == "127.0.0.1" else real_forbidden(ip))


class TLSServer:
    """An app served over TLS on a free loopback port, in a thread."""

    def __init__(self, app: Any, cert: trustme.LeafCert, directory: Path) -> None:
        self.port = free_port()
        pem = directory / f"server-{self.port}.pem"
        cert.private_key_and_cert_chain_pem.write_to_path(str(pem))
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None,
                                access_log=False, lifespan="off", ssl_certfile=str(pem))
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def url(self, name: str, path: str = "/hook") -> str:
        return f"https://{name}:{self.port}{path}"

    def __enter__(self) -> TLSServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "TLS server did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class Seen:
    """(Host header, client port) of every request that reached the server."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, int]] = []

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            assert request.client is not None
            self.requests.append((request.headers["host"], request.client.port))
            return JSONResponse({"ok": True})

        return Starlette(routes=[Route("/{path:path}", hook, methods=["POST"])])


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def serve(ca: trustme.CA, tmp_path: Path, *names: str) -> tuple[TLSServer, Seen]:
    seen = Seen()
    return TLSServer(seen.app(), ca.issue_cert(*names), tmp_path), seen


async def post(client: httpx.AsyncClient, url: str) -> Attempt:
    return await send(client, url, "msg_tls", b"{}", (SECRET,), 5.0, allow_private=False)


async def test_a_connection_verified_for_one_name_is_not_reused_for_another(
    trusting: ssl.SSLContext, ca: trustme.CA, tmp_path: Path
) -> None:
    server, seen = serve(ca, tmp_path, "attacker.test")
    # The client closes first: the server would otherwise wait for its pooled connections.
    with server:
        async with new_delivery_client(5.0, verify=trusting) as client:
            first, second = [await post(client, server.url("attacker.test")) for _ in range(2)]
            victim = await post(client, server.url("victim.test"))
    assert first.status_code == second.status_code == 200
    ports = {port for _, port in seen.requests}
    assert len(ports) == 1, "the attacker's connection was pooled and reused"
    assert victim.status_code is None and not victim.succeeded
    assert victim.error is not None and "CERTIFICATE_VERIFY_FAILED" in victim.error
    assert [host for host, _ in seen.requests] == [f"attacker.test:{server.port}"] * 2


async def test_a_failed_name_does_not_taint_the_one_that_verifies(
    trusting: ssl.SSLContext, ca: trustme.CA, tmp_path: Path
) -> None:
    server, seen = serve(ca, tmp_path, "attacker.test")
    with server:
        async with new_delivery_client(5.0, verify=trusting) as client:
            results = [await post(client, server.url(name))
                       for name in ("victim.test", "attacker.test", "victim.test")]
    assert [r.succeeded for r in results] == [False, True, False]
    assert len(seen.requests) == 1


async def test_each_name_gets_a_connection_of_its_own(
    trusting: ssl.SSLContext, ca: trustme.CA, tmp_path: Path
) -> None:
    server, seen = serve(ca, tmp_path, *NAMES)
    with server:
        async with new_delivery_client(5.0, verify=trusting) as client:
            results = [await post(client, server.url(name)) for name in NAMES + NAMES]
    assert all(r.status_code == 200 for r in results)
    hosts = [host.split(":")[0] for host, _ in seen.requests]
    assert hosts == list(NAMES + NAMES)
    by_name = {name: {port for host, port in seen.requests if host.startswith(name)}
               for name in NAMES}
    assert all(len(ports) == 1 for ports in by_name.values())  # each pooled for itself
    assert by_name["attacker.test"] != by_name["victim.test"]


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's delivery client trusts the test CA the way an operator's would: through
    SSL_CERT_FILE (httpx reads it)."""
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    monkeypatch.setenv("SSL_CERT_FILE", str(path))


async def test_a_worker_does_not_send_the_victims_webhooks_to_the_attacker(
    make_settings: SettingsFactory, redis: Redis, simulator: str, ca: trustme.CA,
    tmp_path: Path, ca_file: None,
) -> None:
    """Through a real worker: the attacker's subscription is delivered first (its connection
    is pooled), then the victim's, whose name the attacker's certificate does not cover."""
    receiver = Receiver()
    server = TLSServer(receiver.app(SECRET), ca.issue_cert("attacker.test"), tmp_path)
    settings = make_settings(RELAY_RETRY_SCHEDULE="100ms", RELAY_ALLOW_PRIVATE_CALLBACKS="false")
    sim_job(simulator, "job_attacker", [("completed", 0)])
    sim_job(simulator, "job_victim", [("completed", 0)])
    with server:
        async with api_client(settings) as api, running_worker(settings):
            await api.post("/v1/subscriptions", json={
                "job_id": "job_attacker", "url": server.url("attacker.test", "/attacker")})
            await eventually(lambda: receiver.types("/attacker") == ["job.completed"])
            created = await api.post("/v1/subscriptions", json={
                "job_id": "job_victim", "url": server.url("victim.test", "/victim")})
            sid = created.json()["id"]

            async def failed() -> list[dict[str, Any]]:
                log = (await api.get(f"/v1/subscriptions/{sid}/deliveries")).json()["data"]
                return list(log[0]["attempts"]) if log and log[0]["status"] == "failed" else []

            deadline = time.monotonic() + 15
            while not (attempts := await failed()):
                assert time.monotonic() < deadline, "the victim's delivery never gave up"
                await asyncio.sleep(0.05)
    assert len(attempts) == 2
    assert all("CERTIFICATE_VERIFY_FAILED" in str(a["error"]) for a in attempts)
    assert receiver.types("/victim") == []
    assert receiver.rejected == []
