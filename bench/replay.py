"""Play a `Schedule` against a simulator: create each job at its arrival time, hand it to the
arm under test, stop when the arm has reported every measured job or the deadline passes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from bench.workload import JobSpec, Schedule

OnArrival = Callable[[JobSpec], Awaitable[None]]
Done = Callable[[], Awaitable[bool]]
CHECK_EVERY = 0.2


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), max(seconds, 0.0))
    except TimeoutError:
        pass


async def arrive(client: httpx.AsyncClient, job: JobSpec, on_arrival: OnArrival) -> None:
    body = {"job_id": job.job_id, "model": job.model, "timeline": job.timeline()}
    (await client.post("/_sim/jobs", json=body)).raise_for_status()
    await on_arrival(job)


async def replay(schedule: Schedule, sim_url: str, t0: float, on_arrival: OnArrival,
                 stop: asyncio.Event) -> None:
    """Create jobs at `t0 + arrival` (unix time); jobs due together arrive concurrently."""
    jobs = sorted(schedule.jobs, key=lambda j: j.arrival)
    async with httpx.AsyncClient(base_url=sim_url, timeout=30) as client:
        i = 0
        while i < len(jobs) and not stop.is_set():
            elapsed = time.time() - t0
            if jobs[i].arrival > elapsed:
                await wait_or_stop(stop, jobs[i].arrival - elapsed)
                continue
            batch = [job for job in jobs[i:] if job.arrival <= elapsed]
            await asyncio.gather(*(arrive(client, job, on_arrival) for job in batch))
            i += len(batch)


async def play(schedule: Schedule, sim_url: str, t0: float, on_arrival: OnArrival,
               done: Done) -> float:
    """Replay until `done()` or the schedule's deadline; returns the wall seconds it took."""
    stop = asyncio.Event()
    task = asyncio.create_task(replay(schedule, sim_url, t0, on_arrival, stop))
    await wait_or_stop(stop, t0 - time.time())
    deadline = t0 + schedule.deadline()
    while time.time() < deadline and not await done():
        await asyncio.sleep(CHECK_EVERY)
        if task.done():
            task.result()  # surface a failed replay at once
    stop.set()
    await task
    return time.time() - t0


async def sim_view(sim_url: str) -> tuple[dict[str, list[tuple[str, float]]], dict[str, Any]]:
    """(job_id -> visible changes [(status, unix time)], request stats) of a simulator."""
    async with httpx.AsyncClient(base_url=sim_url, timeout=30) as client:
        jobs = (await client.get("/_sim/jobs")).json()["data"]
        stats = (await client.get("/_sim/stats")).json()
    changes = {j["job_id"]: [(c["status"], float(c["at"])) for c in j["changes"]] for j in jobs}
    return changes, stats
