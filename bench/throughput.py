"""Throughput with no budget: polls/s and deliveries/s of one worker process, each against a raw
`httpx.AsyncClient` loop doing the same requests with the same concurrency, in the same run."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from redis.asyncio import Redis

from bench.plan import Plan
from bench.redis_probe import monitor_db, round_trips
from bench.relay_run import relay_env, reset_redis, subscribe_all
from bench.servers import (
    SIM_KEY,
    arrivals,
    receiver,
    receiver_client,
    reset_receiver,
    simulator,
)
from config import Settings, load_settings
from relay.store.store import Store
from relay.upstream.client import DEFAULT_LIMITS
from relay.worker import running_worker

UNLIMITED = "100000000"  # requests per minute: the budget never binds
NEVER_CHANGES = [{"status": "queued", "after": 0.0}]
ALREADY_DONE = [{"status": "completed", "after": 0.0}]


async def create_sim_jobs(sim_url: str, ids: list[str], timeline: list[dict[str, Any]]) -> None:
    async with httpx.AsyncClient(base_url=sim_url) as client:
        for job_id in ids:
            body = {"job_id": job_id, "model": "fal:flux-schnell", "timeline": timeline}
            (await client.post("/_sim/jobs", json=body)).raise_for_status()


async def jobs_that_never_change(redis: Redis, sim_url: str, redis_url: str, ids: list[str],
                                  interval: str) -> Settings:
    """A fresh DB, `ids` queued forever in the simulator, and relay settings with no budget
    that poll each job every `interval`."""
    await reset_redis(redis)
    await create_sim_jobs(sim_url, ids, NEVER_CHANGES)
    return load_settings(relay_env(sim_url, redis_url, int(UNLIMITED), 1.0,
                                   RELAY_POLL_MIN_INTERVAL=interval,
                                   RELAY_POLL_MAX_INTERVAL=interval))


async def sim_requests(sim_url: str) -> int:
    async with httpx.AsyncClient(base_url=sim_url) as client:
        return int((await client.get("/_sim/stats")).json()["requests"])


async def received_all(receiver_url: str, count: int, timeout: float) -> bool:
    """Wait until the receiver has had `count` webhooks (or `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    async with receiver_client(receiver_url) as client:
        while len((await arrivals(receiver_url, client)).times) < count:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.1)
    return True


async def workers(concurrency: int, seconds: float,
                  request: Callable[[int], Awaitable[None]]) -> int:
    """`concurrency` loops calling `request(i)` for `seconds`; returns requests completed."""
    done = 0
    end = time.monotonic() + seconds

    async def loop(worker: int) -> None:
        nonlocal done
        i = worker
        while time.monotonic() < end:
            await request(i)
            done += 1
            i += concurrency

    await asyncio.gather(*(loop(w) for w in range(concurrency)))
    return done


async def raw_polls(sim_url: str, ids: list[str], concurrency: int, seconds: float) -> float:
    headers = {"authorization": f"Bearer {SIM_KEY}"}
    async with httpx.AsyncClient(base_url=sim_url, limits=DEFAULT_LIMITS,
                                 headers=headers) as client:
        async def get(i: int) -> None:
            (await client.get(f"/v1/jobs/{ids[i % len(ids)]}")).raise_for_status()

        return await workers(concurrency, seconds, get) / seconds


async def relay_polls(sim_url: str, plan: Plan) -> dict[str, Any]:
    """Polls/s of the relay's poll loop, with round trips and Redis commands per poll."""
    before, trips = await sim_requests(sim_url), round_trips()
    await asyncio.sleep(plan.throughput_seconds)
    polls = await sim_requests(sim_url) - before
    trips = round_trips() - trips
    start = await sim_requests(sim_url)
    commands = await monitor_db(plan.redis_url, db_of(plan.redis_url), plan.monitor_seconds)
    watched = await sim_requests(sim_url) - start
    return {
        "polls_per_s": polls / plan.throughput_seconds,
        "round_trips_per_poll": trips / max(polls, 1),
        "commands_per_poll": (commands["client"] + commands["lua"]) / max(watched, 1),
        "client_commands_per_poll": commands["client"] / max(watched, 1),
        "commands_seen": dict(commands.most_common(25)),
    }


def db_of(redis_url: str) -> int:
    return int(redis_url.rsplit("/", 1)[-1] or 0)


async def poll_throughput(plan: Plan) -> dict[str, Any]:
    ids = [f"tp-poll-{i:05d}" for i in range(plan.poll_jobs)]
    redis = Redis.from_url(plan.redis_url, decode_responses=True)
    with simulator(None) as sim, receiver() as hooks:
        settings = await jobs_that_never_change(redis, sim.url, plan.redis_url, ids, "1ms")
        await subscribe_all(Store(redis), settings, hooks.url + "/p", ids)
        async with running_worker(settings):
            await received_all(hooks.url, len(ids), 30)  # the first events are delivered
            relay = await relay_polls(sim.url, plan)
        raw = await raw_polls(sim.url, ids, settings.poll_batch_size, plan.throughput_seconds)
    await redis.aclose()
    return relay | {"raw_polls_per_s": raw, "concurrency": settings.poll_batch_size,
                    "ratio": relay["polls_per_s"] / raw}


def sample_body(i: int) -> bytes:
    event = {"type": "job.completed", "timestamp": "2025-01-01T00:00:00.000Z",
             "data": {"subscription_id": f"sub_{i:026d}", "job_id": f"tp-raw-{i}",
                      "status": "completed", "previous_status": None,
                      "job": {"job_id": f"tp-raw-{i}", "status": "completed",
                              "model": "fal:flux-schnell", "created_at": "2025-01-01T00:00:00Z",
                              "output": {"url": "https://s3.varg.ai/o/x.png",
                                         "media_type": "image/png"}},
                      "metadata": {}}}
    return json.dumps(event).encode()


async def raw_deliveries(url: str, count: int, concurrency: int) -> None:
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=500,
                                                     max_keepalive_connections=100)) as client:
        queue = list(range(count))

        async def loop() -> None:
            while queue:
                i = queue.pop()
                body = sample_body(i)
                (await client.post(f"{url}/raw/{i}", content=body,
                                   headers={"content-type": "application/json"})
                 ).raise_for_status()

        await asyncio.gather(*(loop() for _ in range(concurrency)))


async def delivery_throughput(plan: Plan) -> dict[str, Any]:
    ids = [f"tp-done-{i:05d}" for i in range(plan.delivery_jobs)]
    total = len(ids) * plan.subs_per_job
    redis = Redis.from_url(plan.redis_url, decode_responses=True)
    with simulator(None) as sim, receiver() as hooks:
        await reset_redis(redis)
        await create_sim_jobs(sim.url, ids, ALREADY_DONE)
        settings = load_settings(relay_env(sim.url, plan.redis_url, int(UNLIMITED), 1.0))
        store = Store(redis)
        for s in range(plan.subs_per_job):
            await subscribe_all(store, settings, f"{hooks.url}/d{s}", ids)
        async with running_worker(settings):
            delivered = await received_all(hooks.url, total, 120)
        relay = (await arrivals(hooks.url)).rate()
        await reset_receiver(hooks.url)
        await raw_deliveries(hooks.url, total, settings.delivery_concurrency)
        raw = (await arrivals(hooks.url)).rate()
    await redis.aclose()
    return {"deliveries_per_s": relay, "raw_deliveries_per_s": raw, "deliveries": total,
            "all_delivered": delivered, "concurrency": settings.delivery_concurrency,
            "ratio": relay / raw if raw else 0.0}
