"""What a webhook attempt must never let in: a huge answer, a redirect, a receiver that never
answers, a callback that resolves to a private address, a second DNS answer (rebinding).

`relay.delivery.send` is called directly with an `httpx.AsyncClient` against a real uvicorn
receiver on loopback. DNS is faked: the event loop's `getaddrinfo` answers names from a table
(numeric hosts go to the real resolver, which sends no traffic for them); any other name fails.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from relay.delivery import urls
from relay.delivery.chain import classify
from relay.delivery.send import ERROR_TEXT_CAP, RESPONSE_BODY_CAP, Attempt, capped, send
from relay.delivery.transport import PinnedTransport
from relay.delivery.urls import parse_host_ip
from tests.conftest import SECRET, ServerThread
from tests.support import eventually

BIG = 5 * 1024 * 1024
CHUNK = 64 * 1024
BODY = b'{"type":"job.completed","data":{"job_id":"job_1"}}'
SCHEDULE = (5.0, 300.0)

AddrInfo = tuple[int, int, int, str, tuple[Any, ...]]
_REAL_GETADDRINFO = asyncio.BaseEventLoop.getaddrinfo


# ---- the receiver ---------------------------------------------------------------------------


@dataclass
class Behaviour:
    """What the receiver saw and did; `released` lets slow handlers finish at teardown."""

    base_url: str = ""
    hits: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    produced: int = 0  # bytes the streaming answer has handed to the server so far
    stream_ended: bool = False
    produced_when_ended: int | None = None
    released: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def paths(self) -> list[str]:
        with self.lock:
            return [path for path, _ in self.hits]

    async def _wait_released(self, most: float) -> None:
        for _ in range(int(most / 0.02)):
            if self.released.is_set():
                return
            await asyncio.sleep(0.02)

    async def big_stream(self) -> AsyncIterator[bytes]:
        try:
            while self.produced < BIG and not self.released.is_set():
                self.produced += CHUNK
                yield b"x" * CHUNK
                await asyncio.sleep(0.02)
        finally:
            self.produced_when_ended = self.produced
            self.stream_ended = True

    async def trickle(self) -> AsyncIterator[bytes]:
        for _ in range(4 * RESPONSE_BODY_CAP):
            if self.released.is_set():
                return
            yield b"."
            await asyncio.sleep(0.02)

    def app(self) -> Starlette:
        hook = Webhook(SECRET)

        async def receive(request: Request) -> Response:
            name = request.path_params["name"]
            raw = await request.body()
            with self.lock:
                self.hits.append((name, dict(request.headers)))
            if name == "target":
                return JSONResponse({"followed": True})
            hook.verify(raw, dict(request.headers))
            if name == "big-stream":
                return StreamingResponse(self.big_stream(), media_type="text/plain")
            if name == "big-once":
                return Response(b"y" * BIG, media_type="text/plain")
            if name == "multibyte":
                return Response(("a" + "é" * 4000).encode(), media_type="text/plain")
            if name == "binary":
                return Response(b"\xff" * 4096, media_type="application/octet-stream")
            if name == "redirect-long":  # 60 KB of Location
                return Response(status_code=302,
                                headers={"location": self.base_url + "/" + "L" * 60_000})
            if name.startswith("redirect-"):
                code = int(name.removeprefix("redirect-"))
                return Response(status_code=code, headers={"location": self.base_url + "/target"})
            if name == "slow":
                await self._wait_released(10.0)
                return JSONResponse({"late": True})
            if name == "trickle":
                return StreamingResponse(self.trickle(), media_type="text/plain")
            return Response(status_code=204)

        return Starlette(routes=[Route("/{name:path}", receive, methods=["GET", "POST"])])


@pytest.fixture
def behaviour() -> Iterator[Behaviour]:
    state = Behaviour()
    with ServerThread(state.app()) as server:
        state.base_url = server.url
        try:
            yield state
        finally:
            state.released.set()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """The delivery client a worker uses (its transport connects to checked addresses only);
    follow_redirects=True on purpose: the relay must refuse redirects whatever the client says."""
    async with httpx.AsyncClient(follow_redirects=True, transport=PinnedTransport()) as http:
        yield http


@pytest.fixture
async def offline() -> AsyncIterator[tuple[httpx.AsyncClient, list[httpx.Request]]]:
    """A client with no network at all: any request that gets through is recorded, answered 204."""
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(204)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        yield http, sent


async def post(
    client: httpx.AsyncClient, url: str, timeout: float = 10.0, allow_private: bool = True
) -> Attempt:
    return await send(client, url, "msg_safety", BODY, (SECRET,), timeout, allow_private)


# ---- fake DNS -------------------------------------------------------------------------------


class Resolver:
    """name -> list of answers, one answer (a list of addresses) consumed per lookup."""

    def __init__(self) -> None:
        self.answers: dict[str, list[list[str]]] = {}
        self.lookups: list[str] = []

    async def getaddrinfo(self, loop: asyncio.AbstractEventLoop, host: Any, port: Any,
                          *args: Any, **kwargs: Any) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if parse_host_ip(name) is not None:  # numeric: no DNS traffic
            real: list[Any] = await _REAL_GETADDRINFO(loop, host, port, *args, **kwargs)  # type: ignore[arg-type]
            return real
        self.lookups.append(name)
        queue = self.answers.get(name)
        if not queue:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        addresses = queue.pop(0) if len(queue) > 1 else queue[0]
        port_number = int(port or 0)
        result: list[AddrInfo] = []
        for address in addresses:
            if ":" in address:
                result.append((socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
                               (address, port_number, 0, 0)))
            else:
                result.append((socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
                               (address, port_number)))
        return result


@pytest.fixture(autouse=True)
def resolver(monkeypatch: pytest.MonkeyPatch) -> Resolver:
    fake = Resolver()

    async def getaddrinfo(self: asyncio.AbstractEventLoop, host: Any, port: Any,
                          *args: Any, **kwargs: Any) -> list[Any]:
        return await fake.getaddrinfo(self, host, port, *args, **kwargs)

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)
    return fake


def port_of(behaviour: Behaviour) -> int:
    return int(behaviour.base_url.rsplit(":", 1)[1])


# ---- huge answers ---------------------------------------------------------------------------


async def test_a_5mb_streamed_answer_is_cut_at_1kib_and_not_read_whole(
    client: httpx.AsyncClient, behaviour: Behaviour
) -> None:
    attempt = await post(client, behaviour.base_url + "/big-stream", timeout=60)
    produced_at_return = behaviour.produced
    assert attempt.succeeded and attempt.error is None
    assert attempt.response_body == "x" * RESPONSE_BODY_CAP
    assert produced_at_return < BIG // 4
    # The relay hung up: the stream was ended early, not drained to its 5 MB.
    await eventually(lambda: behaviour.stream_ended)
    assert behaviour.produced_when_ended is not None
    assert behaviour.produced_when_ended < BIG // 4


async def test_a_5mb_answer_in_one_piece_keeps_at_most_1kib(
    client: httpx.AsyncClient, behaviour: Behaviour
) -> None:
    attempt = await post(client, behaviour.base_url + "/big-once")
    assert attempt.status_code == 200
    assert attempt.response_body == "y" * RESPONSE_BODY_CAP


@pytest.mark.parametrize("path", ["multibyte", "binary"])
async def test_a_non_ascii_answer_keeps_at_most_1kib_of_utf8(
    client: httpx.AsyncClient, behaviour: Behaviour, path: str
) -> None:
    attempt = await post(client, f"{behaviour.base_url}/{path}")
    assert attempt.response_body is not None
    assert len(attempt.response_body) <= RESPONSE_BODY_CAP
    assert len(attempt.response_body.encode("utf-8")) <= RESPONSE_BODY_CAP


# ---- redirects ------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
async def test_a_redirect_is_not_followed_and_is_a_failure(
    client: httpx.AsyncClient, behaviour: Behaviour, code: int
) -> None:
    attempt = await post(client, f"{behaviour.base_url}/redirect-{code}")
    assert attempt.status_code == code
    assert not attempt.succeeded
    assert attempt.error is not None and "redirect" in attempt.error
    assert behaviour.base_url + "/target" in attempt.error
    assert behaviour.paths() == [f"redirect-{code}"]  # the Location was never requested
    assert classify(attempt, 1, SCHEDULE)[0] == "retry"
    assert classify(attempt, len(SCHEDULE) + 1, SCHEDULE) == ("failed", None)


async def test_a_redirect_to_a_60kb_location_keeps_1kib_of_error(
    client: httpx.AsyncClient, behaviour: Behaviour
) -> None:
    attempt = await post(client, f"{behaviour.base_url}/redirect-long")
    assert attempt.status_code == 302 and attempt.error is not None
    assert attempt.error.startswith(f"redirect to {behaviour.base_url}/LLL")
    assert attempt.error.endswith("(not followed)")
    assert len(attempt.error.encode()) <= ERROR_TEXT_CAP


@pytest.mark.parametrize("text, cap, expected", [
    ("abc", 2, "ab"), ("é" * 10, 5, "éé"), ("😀x", 3, ""), ("ok", 1024, "ok"),
    ("a\ud800b" * 400, 1024, "a?b" * 341 + "a"),
])
def test_capped_never_cuts_inside_a_character(text: str, cap: int, expected: str) -> None:
    assert capped(text, cap) == expected
    assert len(capped(text, cap).encode()) <= cap


# ---- timeouts -------------------------------------------------------------------------------


async def test_a_receiver_that_does_not_answer_is_a_timed_out_attempt(
    client: httpx.AsyncClient, behaviour: Behaviour
) -> None:
    attempt = await post(client, behaviour.base_url + "/slow", timeout=0.3)
    assert attempt.status_code is None
    assert attempt.error is not None and attempt.error.startswith("timed out")
    assert attempt.timed_out and not attempt.succeeded
    assert classify(attempt, 1, SCHEDULE)[0] == "retry"


async def test_a_trickling_answer_is_bounded_by_the_attempt_timeout(
    client: httpx.AsyncClient, behaviour: Behaviour
) -> None:
    # Each byte arrives well within any read timeout; only a deadline on the whole attempt ends it.
    attempt = await post(client, behaviour.base_url + "/trickle", timeout=0.5)
    assert attempt.error is not None and attempt.error.startswith("timed out")
    assert attempt.timed_out


# ---- private addresses at delivery time -----------------------------------------------------


async def test_a_name_resolving_to_loopback_is_refused_at_delivery(
    client: httpx.AsyncClient, behaviour: Behaviour, resolver: Resolver
) -> None:
    resolver.answers["hooks.example.com"] = [["127.0.0.1"]]  # where the receiver really listens
    url = f"http://hooks.example.com:{port_of(behaviour)}/hook"
    attempt = await post(client, url, allow_private=False)
    assert attempt.status_code is None and not attempt.succeeded
    assert attempt.error is not None and attempt.error.startswith("refused: ")
    assert "public address" in attempt.error
    assert resolver.lookups == ["hooks.example.com"]
    assert behaviour.paths() == []  # nothing was sent


@pytest.mark.parametrize("addresses", [["10.0.0.7"], ["169.254.169.254"], ["100.64.1.1"],
                                       ["93.184.215.14", "192.168.1.1"], ["::ffff:127.0.0.1"],
                                       ["fd00::1"]])
async def test_a_name_resolving_to_any_private_address_is_refused_at_delivery(
    offline: tuple[httpx.AsyncClient, list[httpx.Request]], resolver: Resolver,
    addresses: list[str],
) -> None:
    client, sent = offline
    resolver.answers["hooks.example.com"] = [addresses]
    attempt = await post(client, "https://hooks.example.com/hook", allow_private=False)
    assert attempt.error is not None and attempt.error.startswith("refused: ")
    assert sent == []


@pytest.mark.parametrize("host", ["127.0.0.1", "0x7f000001", "2130706433", "[::1]", "localhost",
                                  "LOCALHOST.", "127.1"])
async def test_a_loopback_literal_is_refused_at_delivery(
    client: httpx.AsyncClient, behaviour: Behaviour, resolver: Resolver, host: str
) -> None:
    attempt = await post(client, f"http://{host}:{port_of(behaviour)}/hook", allow_private=False)
    assert attempt.error is not None and attempt.error.startswith("refused: ")
    assert behaviour.paths() == []
    assert resolver.lookups == []


async def test_a_name_that_no_longer_resolves_is_a_failed_attempt(
    offline: tuple[httpx.AsyncClient, list[httpx.Request]], resolver: Resolver
) -> None:
    client, sent = offline
    attempt = await post(client, "https://gone.example.com/hook", allow_private=False)
    assert attempt.status_code is None and not attempt.succeeded
    assert attempt.error == "the callback host does not resolve"
    assert sent == [] and resolver.lookups == ["gone.example.com"]


async def test_allowed_private_callbacks_are_delivered(
    client: httpx.AsyncClient, behaviour: Behaviour
) -> None:
    attempt = await post(client, behaviour.base_url + "/hook", allow_private=True)
    assert attempt.status_code == 204 and attempt.succeeded
    assert behaviour.paths() == ["hook"]


# ---- pinning: the connection goes to the address that was checked ---------------------------


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, list[str]]]:
    """Let 127.0.0.1 pass the address check, so a public-address delivery can reach the test
    receiver (everything else about the delivery path stays real); record every check."""
    real_forbidden, real_resolve = urls.is_forbidden_ip, urls.resolve_checked
    done: list[tuple[str, int, list[str]]] = []

    async def resolve_checked(host: str, port: int, allow_private: bool = False) -> list[str]:
        addresses = await real_resolve(host, port, allow_private)
        done.append((host, port, addresses))
        return addresses

    monkeypatch.setattr(urls, "is_forbidden_ip",
                        lambda ip: False if str(ip) == "127.0.0.1" else real_forbidden(ip))
    monkeypatch.setattr(urls, "resolve_checked", resolve_checked)
    return done


async def test_delivery_connects_to_the_checked_address_despite_rebinding(
    client: httpx.AsyncClient, behaviour: Behaviour, resolver: Resolver,
    checks: list[tuple[str, int, list[str]]],
) -> None:
    # First lookup: the (allowed) receiver address. Any later lookup: another address (loopback,
    # where nothing listens, so a broken rule sends no traffic), as a rebinding DNS server would
    # answer once the check has passed.
    resolver.answers["hooks.example.com"] = [["127.0.0.1"], ["127.0.0.2"]]
    netloc = f"hooks.example.com:{port_of(behaviour)}"
    attempt = await post(client, f"http://{netloc}/hook?x=1", allow_private=False)
    assert attempt.error is None and attempt.status_code == 204
    assert checks == [("hooks.example.com", port_of(behaviour), ["127.0.0.1"])]
    assert resolver.lookups == ["hooks.example.com"]  # checked once, never resolved again
    assert behaviour.paths() == ["hook"]
    headers = behaviour.hits[0][1]
    assert headers["host"] == netloc  # the original name, for virtual hosting
    assert headers["webhook-id"] == "msg_safety"


async def test_a_pin_names_the_host_and_every_checked_address(
    resolver: Resolver, checks: list[tuple[str, int, list[str]]]
) -> None:
    resolver.answers["hooks.example.com"] = [["127.0.0.1", "93.184.215.14"]]
    pin = await urls.pin_target("http://hooks.example.com:8080/a/b?c=d", allow_private=False)
    assert pin == urls.Pin("hooks.example.com", 8080, ("127.0.0.1", "93.184.215.14"))


async def test_a_connection_without_a_pin_in_force_is_refused(behaviour: Behaviour) -> None:
    """The delivery transport opens no connection it was not given checked addresses for."""
    async with httpx.AsyncClient(transport=PinnedTransport()) as http:
        with pytest.raises(httpx.ConnectError, match="no checked address"):
            await http.post(behaviour.base_url + "/hook", content=BODY)
    assert behaviour.paths() == []
