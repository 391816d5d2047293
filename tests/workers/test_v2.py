"""Varg's v2 API end to end, with real HTTP: the worker polls `/v2/jobs/{id}`, subscribers get
v2 statuses as they are, and Varg's own signed webhooks reach `POST /v1/ingest/varg` (the API
served by uvicorn) as hints that make the job polled at once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from config import Settings, load_settings
from relay.app import create_app
from relay.devtools.simulator import create_simulator, varg_webhook_headers
from tests.conftest import (
    SIM_KEY,
    Receiver,
    ServerThread,
    api_client,
    env_for,
    eventually,
    running_worker,
    sim_job,
)

HOOK_SECRET = "vhook_e2e_secret_0123456789"


@pytest.fixture
def signing_sim() -> Iterator[str]:
    with ServerThread(create_simulator(api_key=SIM_KEY, webhook_secret=HOOK_SECRET)) as sim:
        yield sim.url


def v2_settings(sim_url: str, **extra: str) -> Settings:
    # VARG_API_URL is left at the simulator's /v1: with VARG_API_VERSION=v2 the relay uses /v2.
    return load_settings(env_for(sim_url, VARG_API_VERSION="v2",
                                 VARG_WEBHOOK_SECRET=HOOK_SECRET, **extra))


def stats(sim_url: str) -> dict[str, Any]:
    found: dict[str, Any] = httpx.get(sim_url + "/_sim/stats").json()
    return found


async def subscribe(api: httpx.AsyncClient, job_id: str, url: str) -> None:
    response = await api.post("/v1/subscriptions", json={"job_id": job_id, "url": url})
    assert response.status_code == 201, response.text


async def test_v2_statuses_reach_subscribers_as_they_are(
    signing_sim: str, redis: Redis, receiver: Receiver
) -> None:
    """queued -> submitting -> running -> completed: `submitting` and `running` are both
    job.processing, `data.status` is v2's own, and `data.job` is the v2 job (by `id`)."""
    settings = v2_settings(signing_sim)
    timeline = [("queued", 0), ("submitting", 0.8), ("running", 1.6), ("completed", 2.4)]
    async with api_client(settings) as api, running_worker(settings):
        sim_job(signing_sim, "job_v2", timeline, model="fal:kling-v2.5")
        await subscribe(api, "job_v2", receiver.url("/v2"))
        await eventually(lambda: receiver.types("/v2")[-1:] == ["job.completed"])
        ready = (await api.get("/readyz")).json()
        view = (await api.get("/v1/jobs/job_v2")).json()
    events = receiver.events("/v2")
    assert [e["data"]["status"] for e in events] == ["queued", "submitting", "running",
                                                      "completed"]
    assert [e["type"] for e in events] == ["job.queued", "job.processing", "job.processing",
                                           "job.completed"]
    assert [e["data"]["previous_status"] for e in events] == [None, "queued", "submitting",
                                                               "running"]
    done = events[-1]["data"]["job"]
    assert done["id"] == "job_v2" and "job_id" not in done
    assert done["output"]["outputs"][0]["url"].endswith("job_v2.mp4")
    assert view["job"]["id"] == "job_v2" and view["status"] == "completed"
    assert ready["stream"] == "off: Varg's v2 API has no stream"
    assert stats(signing_sim)["streams_opened"] == 0
    assert receiver.rejected == []


def hints(outcome: str) -> float:
    return REGISTRY.get_sample_value("relay_varg_hints_total", {"outcome": outcome}) or 0.0


async def test_varg_webhook_makes_the_relay_poll_at_once(
    signing_sim: str, redis: Redis, receiver: Receiver
) -> None:
    """Polls are sparse here (RELAY_POLL_MIN_INTERVAL 30 s: a job is looked at again no sooner,
    budget or not); Varg's webhook at completion makes the job polled at once, so the terminal
    event arrives long before the schedule would have looked. Bound: 15 s (the schedule: 30 s
    and more)."""
    settings = v2_settings(signing_sim, RELAY_POLL_MIN_INTERVAL="30s",
                           RELAY_POLL_MAX_INTERVAL="60s")
    polled = hints("polled")
    with ServerThread(create_app(settings), lifespan="on") as relay_api:
        sim_job(signing_sim, "job_hook", [("queued", 0), ("completed", 2.0)],
                model="fal:kling-v2.5", webhook_url=relay_api.url + "/v1/ingest/varg")
        async with api_client(settings) as api, running_worker(settings):
            await subscribe(api, "job_hook", receiver.url("/hook"))
            await eventually(lambda: receiver.types("/hook") == ["job.queued"])
            next_poll = (await api.get("/v1/jobs/job_hook")).json()["next_poll_at"]
            await eventually(lambda: receiver.types("/hook") == ["job.queued", "job.completed"])
    sent = httpx.get(signing_sim + "/_sim/webhooks").json()["data"]
    assert [(w["job_id"], w["status_code"]) for w in sent] == [("job_hook", 202)]
    assert hints("polled") - polled == 1
    assert stats(signing_sim)["by_job"]["job_hook"] == 2  # the first look, then the hinted one
    seen_at = receiver.events("/hook")[-1]["timestamp"]
    assert seen_at < next_poll  # seen before the schedule's own next look


async def test_a_forged_ingest_changes_nothing(
    signing_sim: str, redis: Redis, receiver: Receiver
) -> None:
    """A webhook with a wrong signature is refused; one signed right but claiming `completed`
    while Varg says `running` makes the relay poll, and the poll's answer is what counts: no
    job.completed is ever sent."""
    settings = v2_settings(signing_sim, RELAY_POLL_MAX_INTERVAL="60s")
    sim_job(signing_sim, "job_lie", [("running", 0), ("completed", 120)], model="fal:kling-v2.5")
    lie = json.dumps({"id": "job_lie", "status": "completed",
                      "output": {"outputs": [{"url": "https://evil.example/x.mp4"}]}}).encode()
    async with api_client(settings, token=None) as varg, api_client(settings) as api, \
            running_worker(settings):
        await subscribe(api, "job_lie", receiver.url("/lie"))
        await eventually(lambda: receiver.types("/lie") == ["job.processing"])
        polls = stats(signing_sim)["by_job"]["job_lie"]
        forged = varg_webhook_headers("vhook_not_the_secret_000000", lie, "job.completed",
                                      int(time.time() * 1000))
        refused = await varg.post("/v1/ingest/varg", content=lie, headers=forged)
        assert refused.status_code == 401
        signed = varg_webhook_headers(HOOK_SECRET, lie, "job.completed", int(time.time() * 1000))
        taken = await varg.post("/v1/ingest/varg", content=lie, headers=signed)
        assert taken.json()["outcome"] == "polled"
        await eventually(lambda: stats(signing_sim)["by_job"]["job_lie"] > polls)
        view = (await api.get("/v1/jobs/job_lie")).json()
    assert view["status"] == "running" and view["watching"] is True
    assert "evil" not in json.dumps(view)
    assert receiver.types("/lie") == ["job.processing"]
    assert view["subscriptions"][0]["last_status"] == "running"
