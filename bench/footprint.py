"""Redis bytes per active watch with one subscription, by `MEMORY USAGE` over the keys."""

from __future__ import annotations

from collections import Counter
from typing import Any

from redis.asyncio import Redis

from bench.plan import Plan
from bench.relay_run import relay_env, reset_redis, subscribe_all
from bench.servers import receiver, simulator
from bench.throughput import NEVER_CHANGES, UNLIMITED, create_sim_jobs, received_all
from config import load_settings
from relay.store import Store
from workers.settings import running_worker

# Keys that exist because a job is watched for one subscription (shared zsets included).
WATCH_KEYS = ("vr:watch:", "vr:sub:", "vr:dedupe:", "vr:jobsubs:", "vr:jobsuball:",
              "vr:owner:", "vr:due")
DELIVERY_LOG_KEYS = ("vr:msg:", "vr:attempts:", "vr:msgs:", "vr:outbox:")


def group_of(key: str) -> str:
    if key.startswith(WATCH_KEYS):
        return "watch_and_subscription"
    if key.startswith(DELIVERY_LOG_KEYS):
        return "delivery_log"
    return "other"


async def bytes_by_group(redis: Redis) -> Counter[str]:
    keys = [key async for key in redis.scan_iter(match="*", count=1000)]
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.memory_usage(key, samples=0)
        sizes = await pipe.execute()
    totals = Counter[str]()
    for key, size in zip(keys, sizes, strict=True):
        totals[group_of(key)] += int(size or 0)
    return totals


async def used_memory(redis: Redis) -> int:
    return int((await redis.info("memory"))["used_memory"])


async def footprint(plan: Plan) -> dict[str, Any]:
    """Sizes right after subscribing, then after each watch was polled once and its first
    event delivered (the watch now holds the job's JSON; the event sits in the delivery log)."""
    n = plan.footprint_watches
    ids = [f"fp-{i:05d}" for i in range(n)]
    redis = Redis.from_url(plan.redis_url, decode_responses=True)
    with simulator(None) as sim, receiver() as hooks:
        await reset_redis(redis)
        await create_sim_jobs(sim.url, ids, NEVER_CHANGES)
        settings = load_settings(relay_env(
            sim.url, plan.redis_url, int(UNLIMITED), 1.0,
            RELAY_POLL_MIN_INTERVAL="1h", RELAY_POLL_MAX_INTERVAL="1h"))
        before = await used_memory(redis)
        await subscribe_all(Store(redis), settings, hooks.url + "/f", ids)
        fresh_delta = await used_memory(redis) - before
        fresh = await bytes_by_group(redis)
        async with running_worker(settings):
            await received_all(hooks.url, n, 60)
        polled = await bytes_by_group(redis)
    await redis.aclose()
    return {
        "watches": n,
        "fresh_bytes_per_watch": {k: v / n for k, v in fresh.items()},
        "fresh_used_memory_delta_per_watch": fresh_delta / n,
        "polled_bytes_per_watch": {k: v / n for k, v in polled.items()},
        "bytes_per_watch": polled["watch_and_subscription"] / n,
    }
