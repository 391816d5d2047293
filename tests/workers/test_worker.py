"""relay.worker: stopping a worker that its owner runs (dev, tests) as SIGTERM would."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from config import Settings
from relay.worker import ResilientWorker, stop_gracefully, worker_options
from tests.support import eventually


async def test_stopping_lets_a_running_job_finish_then_closes(
    settings: Settings, redis: Redis
) -> None:
    worker = ResilientWorker(**worker_options(settings), handle_signals=False)
    run = asyncio.create_task(worker.async_run())
    await eventually(lambda: worker.ctx.get("poller") is not None)
    finished = asyncio.Event()

    async def job() -> None:
        await asyncio.sleep(0.2)
        finished.set()

    worker.tasks["in-flight"] = asyncio.create_task(job())
    await stop_gracefully(worker, 10)
    assert finished.is_set()
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)


async def test_stopping_cancels_a_job_past_the_wait_without_raising(
    settings: Settings, redis: Redis
) -> None:
    worker = ResilientWorker(**worker_options(settings), handle_signals=False)
    run = asyncio.create_task(worker.async_run())
    await eventually(lambda: worker.ctx.get("poller") is not None)
    stuck = asyncio.create_task(asyncio.sleep(60))
    worker.tasks["stuck"] = stuck
    await stop_gracefully(worker, 0.1)  # arq's close() alone raised CancelledError here
    assert stuck.cancelled()
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
