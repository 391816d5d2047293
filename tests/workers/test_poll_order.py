"""Who is polled when, end to end: in-process workers over a real Redis, polling a real HTTP
simulator whose every `GET /v1/jobs/{id}` is logged in order (`Logged`).

Assertions are on counts and order: how many polls a job had, how many other polls came
before one. A wait bounds each test, never a speed.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from redis.asyncio import Redis
from starlette.types import Receive, Scope, Send

from config import Settings, load_settings
from relay.devtools.simulator import create_simulator
from relay.ids import new_id
from relay.store import keys
from relay.store.store import Store
from relay.worker import running_worker
from tests.conftest import SIM_KEY, ServerThread, env_for, sim_job
from tests.support import eventually
from tests.workers.test_budget import RUNNING

VIDEO, IMAGE = "fal:kling-v2.5", "fal:flux-schnell"
EVENTS = ["job.completed"]  # the jobs here never complete: no webhook is ever sent
HOOK = "http://127.0.0.1:9/never-called"
OWNER_A, OWNER_B = "a" * 32, "b" * 32


@dataclass
class Logged:
    """The simulator app, logging each job poll (job id, monotonic time) in arrival order."""

    app: Any
    polls: list[tuple[str, float]] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith("/v1/jobs/"):
            self.polls.append((path.removeprefix("/v1/jobs/"), time.monotonic()))
        await self.app(scope, receive, send)

    def times(self, job_id: str) -> list[float]:
        return [at for polled, at in self.polls if polled == job_id]

    def count(self, job_id: str) -> int:
        return len(self.times(job_id))


@pytest.fixture
def logged() -> Iterator[tuple[Logged, str]]:
    """A simulator enforcing 100 requests a minute (the default budget), logged."""
    app = Logged(create_simulator(api_key=SIM_KEY, rate_limit=100))
    server = ServerThread(app)
    with server:
        yield app, server.url


def settings_for(url: str, limit: int, min_interval: str) -> Settings:
    return load_settings(env_for(
        url, RELAY_UPSTREAM_RATE_LIMIT=str(limit), RELAY_POLL_MIN_INTERVAL=min_interval,
        RELAY_POLL_MAX_INTERVAL="60s", RELAY_LOG_LEVEL="WARNING", RELAY_STREAM="off",
    ))


async def watch(store: Store, job_id: str, owner: str = OWNER_A, url: str = HOOK) -> None:
    await store.subscribe(new_id("sub"), owner, job_id, url, EVENTS, {}, 3600.0)


async def test_with_budget_to_spare_every_live_job_is_polled_every_min_interval(
    redis: Redis,
) -> None:
    """Four young jobs of a model whose prior says "about two minutes": their schedule would
    first look again some 15 s on. With a budget far above what they need (6000 a minute)
    and RELAY_POLL_MIN_INTERVAL=300ms, each is polled every minimum interval anyway: six
    polls each within the wait (the schedule would allow one or two), never two of one job
    closer than the minimum interval. Bound: ~20 s."""
    app = Logged(create_simulator(api_key=SIM_KEY))
    server = ServerThread(app)
    store = Store(redis)
    job_ids = [f"job_spare_{i}" for i in range(4)]
    with server:
        for job_id in job_ids:
            sim_job(server.url, job_id, RUNNING, model=VIDEO)
            await watch(store, job_id)
        async with running_worker(settings_for(server.url, 6000, "300ms")):
            async def six_polls_each() -> bool:
                return all(app.count(j) >= 6 for j in job_ids)

            await eventually(six_polls_each, 20)
    schedule = await store.redis.zscore(keys.DUE, job_ids[0])
    assert schedule is None or schedule > time.time() + 5  # its schedule: far off
    for job_id in job_ids:
        times = app.times(job_id)
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) >= 0.25, (job_id, gaps)  # the interval, less the requests' jitter


async def test_a_tenant_re_subscribing_its_jobs_cannot_starve_another_s_first_look(
    logged: tuple[Logged, str], redis: Redis,
) -> None:
    """Token B watches 10 jobs and re-subscribes them with fresh urls every 0.3 s, each
    re-subscription a first look its owner waits for (the top tier). Token A, with one job
    already polled, registers a new job: it is polled within 3 polls of its registration
    (about 2 s at the default 100 a minute; it waited 71 s before first looks were shared by
    owner), and A's old job keeps being polled meanwhile (first looks take at most every
    other poll). Varg never answers 429. Bound: ~40 s."""
    app, url = logged
    store = Store(redis)
    b_jobs = [f"job_b_{i}" for i in range(10)]
    for job_id in [*b_jobs, "job_a_old", "job_a_new"]:
        sim_job(url, job_id, RUNNING, model=IMAGE)
    for job_id in b_jobs:
        await watch(store, job_id, OWNER_B)
    await watch(store, "job_a_old", OWNER_A)

    async def flood(stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            for job_id in b_jobs:
                n += 1
                await watch(store, job_id, OWNER_B, url=f"{HOOK}/{n}")
            await asyncio.sleep(0.3)

    async with running_worker(settings_for(url, 100, "100ms")):
        async def all_polled() -> bool:
            return all(app.count(j) >= 1 for j in [*b_jobs, "job_a_old"])

        await eventually(all_polled, 20)
        stop = asyncio.Event()
        flooding = asyncio.create_task(flood(stop))
        await asyncio.sleep(3.0)  # B's re-subscriptions fill the top tier
        flood_start = len(app.polls)
        await watch(store, "job_a_new", OWNER_A)
        registered = len(app.polls)

        async def a_new_polled() -> bool:
            return app.count("job_a_new") >= 1

        await eventually(a_new_polled, 15)
        # Then 8 polls in all since the flood began (about 5 s at 100 a minute), counted, not
        # timed: the budget's pace decides how many fit in a given time.
        await eventually(lambda: len(app.polls) - flood_start >= 8, 20, what="8 polls")
        stop.set()
        await flooding
        during = app.polls[flood_start:]

    first = next(i for i, (job_id, _) in enumerate(app.polls) if job_id == "job_a_new")
    assert first - registered < 3, app.polls[registered: first + 1]
    assert sum(job_id == "job_a_old" for job_id, _ in during) >= 2, during
    assert sum(job_id.startswith("job_b_") for job_id, _ in during) >= 3, during
    stats = app.app.state.simulator.stats.view()
    assert stats["by_code"].get("429", 0) == 0, stats
