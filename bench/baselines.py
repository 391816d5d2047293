"""What a user would write instead of the relay, measured as lag from a change to the loop
*noticing* it (no webhook hop).

- Round robin: one loop polls the active jobs in turn, paced to the same budget.
- SDK: Varg's SDK polls each job every 2 s, unlimited. The real SDK throws on the first 429;
  here the loop counts the 429 and keeps polling, so its lag is a best case.

Each baseline runs in a child process with its own simulator, so it replays the same
schedule as the relay at the same time without sharing the relay's interpreter.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

import httpx

from bench.lags import ArmResult, arm_result
from bench.replay import play, sim_view, wait_or_stop
from bench.servers import SIM_KEY, simulator, use_scaled_timestamps
from bench.workload import TERMINAL, JobSpec, Schedule

SDK_INTERVAL = 2.0  # unscaled seconds between two polls of one job
WINDOW_MARGIN = 61.0 / 60.0  # pace over 61 s per budget, as the relay does
IDLE_TICK = 0.005


@dataclass
class Watcher:
    """What a baseline noticed: the first time it saw each (job, status)."""

    client: httpx.AsyncClient
    noticed: dict[tuple[str, str], float] = field(default_factory=dict)
    rate_limited: int = 0
    first_429: float | None = None

    async def poll(self, job_id: str) -> str | None:
        """The job's status, or None when the request did not return one."""
        try:
            response = await self.client.get(f"/v1/jobs/{job_id}")
        except httpx.HTTPError:
            return None
        if response.status_code == 429:
            self.rate_limited += 1
            self.first_429 = self.first_429 or time.time()
        if response.status_code != 200:
            return None
        status = str(response.json()["status"])
        self.noticed.setdefault((job_id, status), time.time())
        return status

    async def all_terminal(self, jobs: tuple[JobSpec, ...]) -> bool:
        return all((job.job_id, job.final_status) in self.noticed for job in jobs)


class RoundRobin:
    """One loop, active jobs in turn, one request every `pace` seconds."""

    def __init__(self, watcher: Watcher, budget: int) -> None:
        self.watcher = watcher
        self.pace = 60.0 / budget * WINDOW_MARGIN
        self.active: deque[str] = deque()

    async def on_arrival(self, job: JobSpec) -> None:
        self.active.append(job.job_id)

    async def run(self, stop: asyncio.Event) -> None:
        tick = time.time()
        while not stop.is_set():
            if not self.active:
                await asyncio.sleep(IDLE_TICK)
                tick = max(tick, time.time())  # no saved-up budget while idle
                continue
            job_id = self.active.popleft()
            if await self.watcher.poll(job_id) not in TERMINAL:
                self.active.append(job_id)
            tick += self.pace
            await wait_or_stop(stop, tick - time.time())


class FixedInterval:
    """One task per job, polling every `interval` seconds until a terminal status."""

    def __init__(self, watcher: Watcher, interval: float) -> None:
        self.watcher = watcher
        self.interval = interval
        self.tasks: set[asyncio.Task[None]] = set()
        self.stop = asyncio.Event()

    async def on_arrival(self, job: JobSpec) -> None:
        task = asyncio.create_task(self.follow(job.job_id))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def follow(self, job_id: str) -> None:
        while not self.stop.is_set():
            if await self.watcher.poll(job_id) in TERMINAL:
                return
            await wait_or_stop(self.stop, self.interval)

    async def close(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def new_client(base_url: str) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    return httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30,
                             headers={"authorization": f"Bearer {SIM_KEY}"})


async def round_robin(schedule: Schedule, budget: int, t0: float) -> ArmResult:
    with simulator(budget, _MS[0]) as sim:
        async with new_client(sim.url) as client:
            watcher = Watcher(client)
            loop = RoundRobin(watcher, budget)
            stop = asyncio.Event()
            task = asyncio.create_task(loop.run(stop))
            wall = await play(schedule, sim.url, t0, loop.on_arrival,
                              lambda: watcher.all_terminal(schedule.measured))
            stop.set()
            await task
        changes, stats = await sim_view(sim.url)
    return arm_result("round_robin", schedule, changes, stats, watcher.noticed, wall)


async def sdk_fixed(schedule: Schedule, budget: int, t0: float) -> ArmResult:
    with simulator(budget, _MS[0]) as sim:
        async with new_client(sim.url) as client:
            watcher = Watcher(client)
            loop = FixedInterval(watcher, SDK_INTERVAL * schedule.scale)
            wall = await play(schedule, sim.url, t0, loop.on_arrival,
                              lambda: watcher.all_terminal(schedule.measured))
            await loop.close()
        changes, stats = await sim_view(sim.url)
    thrown = watcher.first_429
    return arm_result("sdk_fixed_2s", schedule, changes, stats, watcher.noticed, wall,
                      first_429_unscaled_s=None if thrown is None
                      else (thrown - t0) / schedule.scale)


_MS = [True]  # this child's simulators: times to the millisecond, or Varg's second


def run_baseline(kind: str, schedule: Schedule, budget: int, t0: float,
                 scaled_timestamps: bool) -> ArmResult:
    """Child-process entry point (picklable arguments, a fresh event loop)."""
    use_scaled_timestamps(scaled_timestamps)
    _MS[0] = scaled_timestamps
    arm = round_robin if kind == "round_robin" else sdk_fixed
    return asyncio.run(arm(schedule, budget, t0))
