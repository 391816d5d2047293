"""The relay under test: real Redis (the run's own), one in-process arq worker, a real
receiver."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import httpx
from redis.asyncio import Redis

from bench.lags import ArmResult, arm_result, percentile
from bench.replay import play, sim_view
from bench.servers import SIM_KEY, Arrivals, arrivals, receiver, receiver_client, simulator
from bench.workload import JobSpec, Schedule
from config import Settings, load_settings
from relay.delivery.signing import new_secret
from relay.events import ALL_EVENTS
from relay.ids import new_id
from relay.store.keys import DURATIONS
from relay.store.store import Store
from relay.worker import running_worker

OWNER = hashlib.sha256(b"tok_bench").hexdigest()[:32]  # as relay.api.owner_of derives it
EVENTS = [str(e) for e in ALL_EVENTS]


DEFAULT_MIN_INTERVAL = load_settings({}).poll_min_interval


def relay_env(sim_url: str, redis_url: str, budget: int, scale: float,
              max_interval: float = 60.0, min_interval: float | None = None,
              **extra: str) -> dict[str, str]:
    """Settings like tests/conftest.py `env_for`, with the poll intervals scaled."""
    min_interval = DEFAULT_MIN_INTERVAL if min_interval is None else min_interval
    return {
        "REDIS_URL": redis_url,
        "VARG_API_URL": sim_url + "/v1",
        "VARG_API_KEY": SIM_KEY,
        "RELAY_API_TOKENS": "tok_bench",
        "RELAY_SIGNING_SECRETS": new_secret(),
        "RELAY_ALLOW_PRIVATE_CALLBACKS": "true",
        "RELAY_UPSTREAM_RATE_LIMIT": str(budget),
        "RELAY_POLL_MIN_INTERVAL": f"{min_interval * scale:g}s",
        "RELAY_POLL_MAX_INTERVAL": f"{max_interval * scale:g}s",
        "RELAY_METRICS_PORT": "0",
        "RELAY_LOG_LEVEL": "WARNING",
        "RELAY_LOG_FORMAT": "text",
        "RELAY_STREAM": "off",  # the polling benchmark; `--streams` compares stream mode
        **extra,
    }


async def reset_redis(redis: Redis, keep: Iterable[str] = ()) -> None:
    """Flush the run's Redis, keeping the named keys (e.g. the learned run times)."""
    kept = {key: await redis.dump(key) for key in keep}
    await redis.flushdb()
    for key, value in kept.items():
        if value is not None:
            await redis.restore(key, 0, value)




async def subscribe_all(store: Store, settings: Settings, url: str,
                        job_ids: Iterable[str]) -> None:
    for job_id in job_ids:
        await store.subscribe(new_id("sub"), OWNER, job_id, url, EVENTS, {},
                              settings.watch_timeout)


async def all_terminal(receiver_url: str, jobs: Iterable[JobSpec],
                       client: httpx.AsyncClient | None = None) -> bool:
    first = (await arrivals(receiver_url, client)).first
    return all((job.job_id, job.final_status) in first for job in jobs)


async def run_relay(schedule: Schedule, budget: int, redis_url: str, t0: float,
                    keep_learning: bool, max_interval: float = 60.0,
                    min_interval: float | None = None,
                    ms_timestamps: bool | None = None, name: str = "relay",
                    env: dict[str, str] | None = None) -> ArmResult:
    """Replay `schedule` through the relay; lag is change -> webhook arrival. `env` adds
    settings (e.g. RELAY_STREAM)."""
    redis = Redis.from_url(redis_url, decode_responses=True)
    with simulator(budget, ms_timestamps) as sim, receiver() as hooks:
        await reset_redis(redis, [DURATIONS] if keep_learning else [])
        settings = load_settings(relay_env(sim.url, redis_url, budget, schedule.scale,
                                           max_interval, min_interval, **(env or {})))
        store = Store(redis)

        async def on_arrival(job: JobSpec) -> None:
            await subscribe_all(store, settings, hooks.url + "/hooks", [job.job_id])

        measured = schedule.measured
        # The replay checks the receiver every 0.2 s from this process, the relay's own: one
        # client, no certificates loaded (see bench/servers.py `receiver_client`).
        async with running_worker(settings), receiver_client(hooks.url) as checks:
            wall = await play(schedule, sim.url, t0, on_arrival,
                              lambda: all_terminal(hooks.url, measured, checks))
        changes, stats = await sim_view(sim.url)
        got = await arrivals(hooks.url)
        extra = await relay_extra(redis, got, schedule, changes, stats)
    await redis.aclose()
    arrived = {key: a.at for key, a in got.first.items()}
    return arm_result(name, schedule, changes, stats, arrived, wall, **extra)


async def relay_extra(redis: Redis, got: Arrivals, schedule: Schedule,
                      changes: Any, stats: Any) -> dict[str, Any]:
    """The relay's own notice lag (no webhook hop) and the hop itself."""
    noticed = {key: a.observed for key, a in got.first.items()}
    notice = arm_result("relay-notice", schedule, changes, stats, noticed, 0.0)
    hops = [a.at - a.observed for a in got.first.values()]
    return {
        "notice_lag_unscaled_seconds": {k: v.as_dict() for k, v in notice.lags.items()},
        "webhook_hop_wall_ms": {"p50": 1000 * percentile(hops, 0.5),
                                "p90": 1000 * percentile(hops, 0.9)},
        "webhooks": len(got.times),
        "streams_opened": int(stats.get("streams_opened", 0)),
    }
