"""Receivers that misbehave, through a real worker: a 60 KB Location header, receivers that
never answer (they must slow only their own subscriptions)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from relay.delivery.send import ERROR_TEXT_CAP
from relay.delivery.slots import Slots
from relay.logs import LOG_MESSAGE_CAP
from relay.worker import running_worker
from tests.conftest import (
    OTHER_TOKEN,
    Receiver,
    ServerThread,
    SettingsFactory,
    api_client,
    sim_job,
)

Json = dict[str, Any]


async def until(probe: Callable[[], Awaitable[Any]], timeout: float = 15.0) -> Any:
    """`eventually` for a coroutine: the first truthy `await probe()`."""
    deadline = time.monotonic() + timeout
    while not (found := await probe()):
        assert time.monotonic() < deadline, "condition stayed false"
        await asyncio.sleep(0.05)
    return found


# --- a Location header of any length -------------------------------------------------------


def redirecting_app() -> Starlette:
    async def hook(request: Request) -> Response:
        return Response(status_code=302, headers={"location": "https://x.test/" + "L" * 60_000})

    return Starlette(routes=[Route("/{name:path}", hook, methods=["POST"])])


@pytest.fixture
def redirecting() -> Iterator[str]:
    with ServerThread(redirecting_app()) as server:
        yield server.url


async def test_a_60kb_location_is_stored_and_logged_as_at_most_1kib(
    make_settings: SettingsFactory, redis: Redis, simulator: str, redirecting: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="relay")
    settings = make_settings(RELAY_RETRY_SCHEDULE="100ms,100ms")
    sim_job(simulator, "job_redirect", [("completed", 0)])
    async with api_client(settings) as api, running_worker(settings):
        created = await api.post("/v1/subscriptions",
                                 json={"job_id": "job_redirect", "url": redirecting + "/hook"})
        sid = created.json()["id"]

        async def given_up() -> list[Json]:
            log = (await api.get(f"/v1/subscriptions/{sid}/deliveries")).json()["data"]
            return list(log[0]["attempts"]) if log and log[0]["status"] == "failed" else []

        attempts = await until(given_up)
    assert len(attempts) == 3
    for attempt in attempts:
        error = str(attempt["error"])
        assert error.startswith("redirect to https://x.test/LLL")
        assert error.endswith("(not followed)")
        assert len(error.encode()) <= ERROR_TEXT_CAP
    logged = [r.getMessage() for r in caplog.records if "redirect to" in r.getMessage()]
    assert len(logged) == 3
    assert all(len(message) <= ERROR_TEXT_CAP + 200 for message in logged)
    assert LOG_MESSAGE_CAP > ERROR_TEXT_CAP  # and any other long text is cut when logged


# --- receivers that never answer -----------------------------------------------------------


class BlackHole:
    """A port whose connections the kernel completes and nobody ever answers. Closing it resets
    the connections waiting on it, so attempts still hanging end at once."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4096)
        self.port = int(self.sock.getsockname()[1])

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def holes() -> Iterator[list[BlackHole]]:
    made = [BlackHole() for _ in range(6)]
    yield made
    for hole in made:
        hole.close()


def first_attempts_failed() -> float:
    labels = {"outcome": "retry", "attempt": "1"}
    return REGISTRY.get_sample_value("relay_deliveries_total", labels) or 0.0


def deferred(reason: str) -> float:
    return REGISTRY.get_sample_value("relay_deliveries_deferred_total", {"reason": reason}) or 0


# Spellings of one address: the limit is on the address called, not on how a URL names it.
ONE_ADDRESS = ["127.0.0.1", "127.1", "2130706433", "0x7f.0.0.1", "[::ffff:127.0.0.1]"]


@pytest.mark.parametrize("spread", ["one receiver, five spellings", "six receivers"])
async def test_receivers_that_never_answer_slow_only_their_own_tenant(
    make_settings: SettingsFactory, redis: Redis, simulator: str, receiver: Receiver,
    holes: list[BlackHole], spread: str,
) -> None:
    """Tenant A points 300 subscriptions at receivers that never answer; tenant B's webhook to
    a healthy receiver must not wait for them. It arrives while every one of A's attempts is
    still hanging (none has reached the 8 s attempt timeout): A holds at most
    RELAY_DELIVERY_CONCURRENCY_PER_HOST (10) attempts per destination and
    RELAY_DELIVERY_CONCURRENCY_PER_TENANT (25) in all, of the worker's 50; the rest of A's
    chains are deferred, not parked in worker slots."""
    settings = make_settings(RELAY_DELIVERY_TIMEOUT="8s", RELAY_RETRY_SCHEDULE="10s")
    if spread == "six receivers":
        urls = [f"http://127.0.0.1:{holes[i % 6].port}/{i}" for i in range(300)]
    else:
        urls = [f"http://{ONE_ADDRESS[i % 5]}:{holes[0].port}/{i}" for i in range(300)]
    sim_job(simulator, "job_hole", [("completed", 0)])
    sim_job(simulator, "job_fine", [("completed", 0)])
    async with api_client(settings) as alice, api_client(settings, OTHER_TOKEN) as bob:
        for url in urls:
            created = await alice.post("/v1/subscriptions", json={"job_id": "job_hole",
                                                                  "url": url})
            assert created.status_code == 201, created.text
        async with running_worker(settings) as worker:
            await until_true(lambda: "resources" in worker.ctx)  # started
            slots: Slots = worker.ctx["resources"].slots
            hanging = [f"127.0.0.1:{hole.port}" for hole in holes]
            cap = 10 if spread.startswith("one") else 25
            await until_true(lambda: sum(slots.in_flight(d) for d in hanging) == cap)
            await until_true(lambda: deferred("host") + deferred("tenant") > 0)
            failed_before = first_attempts_failed()
            created = await bob.post("/v1/subscriptions",
                                     json={"job_id": "job_fine", "url": receiver.url("/b")})
            assert created.status_code == 201
            await until_true(lambda: receiver.types("/b") == ["job.completed"])
            assert first_attempts_failed() == failed_before, "B waited for A's attempts to end"
            assert sum(slots.in_flight(d) for d in hanging) == cap
            assert all(slots.in_flight(d) <= 10 for d in hanging)
            for hole in holes:
                hole.close()  # A's hanging attempts end now, not at their timeout


async def until_true(check: Callable[[], bool], timeout: float = 15.0) -> None:
    async def probe() -> bool:
        return check()

    await until(probe, timeout)


FLOW = [("queued", 0), ("processing", 0.5), ("completed", 1.0)]
FLOW_EVENTS = ["job.queued", "job.processing", "job.completed"]


async def test_deferred_chains_keep_their_order_and_lose_nothing(
    make_settings: SettingsFactory, redis: Redis, simulator: str, receiver: Receiver
) -> None:
    """One place per destination, eight subscriptions to one slow receiver: most chains find
    it busy and are deferred, again and again; still every event the relay saw reaches every
    subscription, once, in the order seen."""
    settings = make_settings(RELAY_DELIVERY_CONCURRENCY_PER_HOST="1")
    paths = [f"/slow{n}" for n in range(8)]
    for path in paths:
        receiver.delay[path] = 0.05
    sim_job(simulator, "job_order", FLOW)
    deferred_before = deferred("host")
    async with api_client(settings) as api:
        sids = [(await api.post("/v1/subscriptions", json={
            "job_id": "job_order", "url": receiver.url(path)})).json()["id"] for path in paths]
        async with running_worker(settings):
            await until_true(lambda: all(receiver.types(p)[-1:] == ["job.completed"]
                                         for p in paths), timeout=30)
        logs = [(await api.get(f"/v1/subscriptions/{sid}/deliveries")).json()["data"]
                for sid in sids]
    assert deferred("host") > deferred_before
    for path, log in zip(paths, logs, strict=True):
        seen = receiver.types(path)
        assert seen == sorted(set(seen), key=FLOW_EVENTS.index), seen  # in order, once each
        assert seen == [d["event_type"] for d in log]
        assert all(d["status"] == "succeeded" and len(d["attempts"]) == 1 for d in log)
    assert receiver.rejected == []
