"""Redis bytes per active watch with one subscription, by `MEMORY USAGE` over the keys."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from bench.plan import Plan
from bench.relay_run import subscribe_all
from bench.servers import receiver, simulator
from bench.throughput import jobs_that_never_change, received_all
from relay.store.keys import DUE, PER_RECORD
from relay.store.store import Store
from relay.worker import running_worker

# Keys that exist because a job is watched for one subscription (shared zsets included).
WATCH_KEYS = (*(PER_RECORD[k] for k in ("watch", "job", "sub", "jobsubs", "owner")), DUE)
DELIVERY_LOG_KEYS = tuple(PER_RECORD[k] for k in ("msg", "attempts", "msgs", "outbox"))


def kind_of(key: str) -> str:
    """`vr:watch:job_1` -> `vr:watch`; shared keys (`vr:due`) are their own kind."""
    return ":".join(key.split(":")[:2])


def group_of(key: str) -> str:
    if key.startswith(WATCH_KEYS):
        return "watch_and_subscription"
    if key.startswith(DELIVERY_LOG_KEYS):
        return "delivery_log"
    return "other"


async def key_sizes(redis: Redis) -> dict[str, int]:
    keys = [key async for key in redis.scan_iter(match="*", count=1000)]
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.memory_usage(key, samples=0)
        sizes = await pipe.execute()
    return {key: int(size or 0) for key, size in zip(keys, sizes, strict=True)}


def totals(sizes: dict[str, int], by: Callable[[str], str]) -> Counter[str]:
    found = Counter[str]()
    for key, size in sizes.items():
        found[by(key)] += size
    return found


def watch_key_kinds(sizes: dict[str, int]) -> Counter[str]:
    """Where the bytes of the watches go, by kind of key (to see what to shrink)."""
    return totals({k: v for k, v in sizes.items() if group_of(k) == "watch_and_subscription"},
                  kind_of)


async def used_memory(redis: Redis) -> int:
    return int((await redis.info("memory"))["used_memory"])


async def footprint(plan: Plan, path: str = "/f") -> dict[str, Any]:
    """Sizes right after subscribing, then after each watch was polled once and its first
    event delivered (the relay now holds the job's JSON; the event sits in the delivery log).

    `path` is the callback path on the receiver: a longer one shows what long urls cost."""
    n = plan.footprint_watches
    ids = [f"fp-{i:05d}" for i in range(n)]
    redis = Redis.from_url(plan.redis_url, decode_responses=True)
    with simulator(None) as sim, receiver() as hooks:
        settings = await jobs_that_never_change(redis, sim.url, plan.redis_url, ids, "1h")
        before = await used_memory(redis)
        await subscribe_all(Store(redis), settings, hooks.url + path, ids)
        fresh_delta = await used_memory(redis) - before
        fresh = totals(await key_sizes(redis), group_of)
        async with running_worker(settings):
            await received_all(hooks.url, n, 60)
        sizes = await key_sizes(redis)
        polled = totals(sizes, group_of)
    await redis.aclose()
    return {
        "watches": n,
        "fresh_bytes_per_watch": {k: v / n for k, v in fresh.items()},
        "fresh_used_memory_delta_per_watch": fresh_delta / n,
        "polled_bytes_per_watch": {k: v / n for k, v in polled.items()},
        "polled_watch_bytes_by_key": {k: v / n for k, v in watch_key_kinds(sizes).items()},
        "bytes_per_watch": polled["watch_and_subscription"] / n,
    }
