"""Lag at a budget: the relay and both baselines replay one schedule side by side.

The relay runs in this process; each baseline in a child process with its own simulator (a
fresh simulator replaying the same arrivals and timelines, at the same time).
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ProcessPoolExecutor

from bench.baselines import run_baseline
from bench.lags import ArmResult
from bench.plan import Plan
from bench.relay_run import run_relay
from bench.workload import Schedule

BASELINES = ("round_robin", "sdk_fixed_2s")
LEAD = 3.0  # wall seconds for every arm to start its servers before the first arrival


def warm(seconds: float) -> None:
    time.sleep(seconds)


def start_pool() -> ProcessPoolExecutor:
    """Two child processes, started (and their imports done) before anything is timed."""
    import multiprocessing

    pool = ProcessPoolExecutor(max_workers=len(BASELINES),
                               mp_context=multiprocessing.get_context("spawn"))
    for future in [pool.submit(warm, 0.5) for _ in BASELINES]:
        future.result()
    return pool


async def compare(schedule: Schedule, plan: Plan, pool: ProcessPoolExecutor,
                  keep_learning: bool, budget: int | None = None,
                  ms_timestamps: bool | None = None) -> dict[str, ArmResult]:
    """The relay and both baselines on `schedule` at `budget` a minute (the plan's scaled
    budget by default), their simulators' times to the millisecond or Varg's second."""
    budget = budget or plan.scaled_budget
    ms = plan.scaled_timestamps if ms_timestamps is None else ms_timestamps
    t0 = time.time() + LEAD
    loop = asyncio.get_running_loop()
    futures = [
        loop.run_in_executor(pool, run_baseline, kind, schedule, budget, t0, ms)
        for kind in BASELINES
    ]
    relay = await run_relay(schedule, budget, plan.redis_url, t0, keep_learning,
                            plan.max_interval, plan.min_interval, ms)
    baselines = await asyncio.gather(*futures)
    return {arm.name: arm for arm in (relay, *baselines)}
