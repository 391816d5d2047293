"""Receivers that misbehave, through a real worker: a 60 KB Location header, receivers that
never answer (they must slow only their own subscriptions)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from relay.delivery.send import ERROR_TEXT_CAP
from relay.logs import LOG_MESSAGE_CAP
from relay.worker import running_worker
from tests.conftest import ServerThread, SettingsFactory, api_client, sim_job

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
