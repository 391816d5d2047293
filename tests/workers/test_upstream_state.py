"""Workers publish whether Varg answers; /readyz names an unreachable upstream and why.

Real Redis, a real worker, and a simulator whose port is chosen before anything listens there
(a wrong or not yet started VARG_API_URL). Bounds are generous timeouts, never speed claims.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import pytest
from redis.asyncio import Redis

from relay.devtools.simulator import create_simulator
from tests.conftest import (
    SIM_KEY,
    Receiver,
    ServerThread,
    SettingsFactory,
    api_client,
    eventually,
    running_worker,
    sim_job,
)

FLOW = [("queued", 0), ("processing", 0.5), ("completed", 1.0)]
FLOW_EVENTS = ["job.queued", "job.processing", "job.completed"]


async def readiness_becomes(api: httpx.AsyncClient, status: int, timeout: float = 20) -> str:
    """Wait until /readyz answers `status`; return its reason."""
    deadline = time.monotonic() + timeout
    while True:
        response = await api.get("/readyz")
        if response.status_code == status:
            return str(response.json().get("reason", ""))
        assert time.monotonic() < deadline, f"/readyz still says {response.text}"
        await asyncio.sleep(0.05)


async def test_a_worker_that_cannot_reach_varg_makes_readyz_say_so_until_it_can(
    make_settings: SettingsFactory, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing is watched, so only the worker's probe can tell: at start, then while Varg
    does not answer. Once it answers, /readyz is ready again."""
    upstream = ServerThread(create_simulator(api_key=SIM_KEY))  # nothing listens there yet
    settings = make_settings(VARG_API_URL=upstream.url + "/v1")
    caplog.set_level(logging.INFO, logger="relay")
    async with api_client(settings) as api:
        assert (await api.get("/readyz")).status_code == 200  # no worker has said anything
        async with running_worker(settings):
            reason = await readiness_becomes(api, 503)
            assert reason.startswith(f"upstream: unreachable (127.0.0.1:{upstream.port}: Connect")
            with upstream:
                assert await readiness_becomes(api, 200) == ""
    logged = [r.getMessage() for r in caplog.records if r.name == "relay.poller"]
    assert any(m.startswith("upstream: unreachable (127.0.0.1:") for m in logged)
    assert "upstream: reachable again" in logged


async def test_polls_that_get_no_answer_make_readyz_say_so_and_nothing_is_lost(
    make_settings: SettingsFactory, redis: Redis, receiver: Receiver
) -> None:
    """A watched job's polls fail while Varg is away: /readyz names it; when Varg is back the
    job's webhooks all arrive and /readyz is ready. The 404 grace is long, so the simulator
    may learn of the job a moment after it starts answering."""
    upstream = ServerThread(create_simulator(api_key=SIM_KEY))
    settings = make_settings(VARG_API_URL=upstream.url + "/v1", RELAY_NOT_FOUND_GRACE="60s")
    async with api_client(settings) as api, running_worker(settings):
        created = await api.post("/v1/subscriptions", json={
            "job_id": "job_away", "url": receiver.url("/away")})
        assert created.status_code == 201
        reason = await readiness_becomes(api, 503)
        assert reason.startswith("upstream: unreachable (127.0.0.1:")
        with upstream:
            sim_job(upstream.url, "job_away", FLOW)
            await readiness_becomes(api, 200, timeout=60)  # a poll in backoff, or a probe
            await eventually(lambda: receiver.types("/away")[-1:] == ["job.completed"],
                             timeout=60)
    assert set(receiver.types("/away")) <= set(FLOW_EVENTS)
    assert receiver.rejected == []
