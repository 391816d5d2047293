"""bench/__main__.py: every phase, the polling benchmark's and `--streams`, gets a Redis."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from redis.asyncio import Redis

from bench.__main__ import lag_arms, run_with_redis
from bench.plan import FULL, Plan
from tests.conftest import REDIS_URL


async def ping(plan: Plan) -> dict[str, Any]:
    redis = Redis.from_url(plan.redis_url)
    try:
        return {"url": plan.redis_url, "pong": await redis.ping()}
    finally:
        await redis.aclose()


async def test_a_phase_without_a_redis_url_runs_on_a_throwaway_redis_server() -> None:
    found = await run_with_redis(FULL, ping)
    assert found["pong"] is True and found["url"].startswith("redis://127.0.0.1:")


async def test_a_phase_given_a_redis_url_runs_on_it(redis: Redis) -> None:
    found = await run_with_redis(replace(FULL, redis_url=REDIS_URL), ping)
    assert found == {"url": REDIS_URL, "pong": True}


def test_the_lag_arms_run_in_order_and_only_burst_keeps_what_was_learned() -> None:
    arms = lag_arms(replace(FULL, arms=("burst", "everyday", "steady")))
    assert [(a.name, a.keep_learning) for a in arms] == [
        ("everyday", False), ("steady", False), ("burst", True)]
    everyday = arms[0]
    assert (everyday.budget, everyday.ms_timestamps) == (FULL.everyday_budget, False)
    assert all(a.budget == FULL.scaled_budget for a in arms[1:])
