"""arq's `WorkerSettings`, built from `Settings` by a factory.

`arq workers.WorkerSettings` works too: `workers/__init__.py` builds the class from the
environment when arq asks for it, not when the module is imported.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from arq import cron, func
from arq.connections import RedisSettings
from arq.worker import Worker
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from config import Settings
from config.settings import secrets_of
from relay.delivery.chain import deliver, job_timeout, kick
from relay.delivery.sweep import sweep
from relay.logs import configure_logging
from relay.resources import close_resources, open_resources
from relay.store.keys import DELIVERY_QUEUE
from relay.upstream.poller import RECHECK_SECONDS, Poller
from relay.upstream.streams import StreamManager, stream_mode

log = logging.getLogger("relay.worker")
QUEUE_POLL = 0.1  # seconds between looks at the delivery queue when nothing wakes the worker


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    settings.require("signing_secrets", "varg_api_key")
    res = open_resources(settings, ctx.get("transport"))
    arq = ctx["redis"]

    async def kick_chain(sid: str) -> bool:
        queued = await kick(arq, sid)
        if queued and "wake" in ctx:  # ResilientWorker: start it now, not at its next look
            ctx["wake"]()
        return queued

    poller = Poller(res, kick_chain, ctx.get("recheck", RECHECK_SECONDS))
    ctx["resources"], ctx["poller"] = res, poller
    if stream_mode(settings.stream, settings.varg_api_version):
        streams = StreamManager(res, kick_chain, poller.budget, poller.limits, res.stream_http)
        poller.streams = ctx["streams"] = streams
        ctx["streams_task"] = asyncio.create_task(streams.run(), name="streams")
    ctx["poller_task"] = asyncio.create_task(poller.run(), name="poller")
    start_metrics_server(settings.metrics_port)
    log.info("worker started: upstream %s (%s), budget %d/min, stream mode %s",
             settings.varg_api_url, settings.varg_api_version, settings.upstream_rate_limit,
             "on" if "streams" in ctx else "off")


async def shutdown(ctx: dict[str, Any]) -> None:
    """Finish the poll batch in flight and hand streamed jobs back (their leases would
    otherwise wait to expire)."""
    if "poller" in ctx:
        ctx["poller"].stop()
        await ctx["poller_task"]
    if "streams" in ctx:
        await ctx["streams"].close()
        await ctx["streams_task"]
    if "resources" in ctx:
        await close_resources(ctx["resources"])
    log.info("worker stopped")


def start_metrics_server(port: int) -> None:
    if port:
        from prometheus_client import start_http_server

        try:
            start_http_server(port)
        except OSError as exc:
            log.warning("metrics port %d unavailable (%s); metrics off for this worker", port, exc)


class ResilientWorker(Worker):
    """An arq worker that rides out a Redis restart instead of exiting with a traceback, and
    that looks at its queue as soon as this process's poller queues a delivery (`ctx["wake"]`)
    rather than only every `poll_delay`: the first attempt goes out within milliseconds."""

    def __init__(self, *args: Any, poll_delay: float = QUEUE_POLL, **kwargs: Any) -> None:
        # arq's own loop then never sleeps; _poll_iteration waits for a wake-up or poll_delay.
        super().__init__(*args, poll_delay=0, **kwargs)
        self.idle_poll = poll_delay
        self._wake = asyncio.Event()
        self.ctx["wake"] = self._wake.set

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            log.warning("redis unavailable (%s); retrying in 1s", exc)
            await asyncio.sleep(1)
        try:
            await asyncio.wait_for(self._wake.wait(), self.idle_poll)
        except TimeoutError:
            pass
        self._wake.clear()


def worker_options(settings: Settings, **ctx: Any) -> dict[str, Any]:
    """Keyword arguments for `arq.Worker`, from settings."""
    # arq's crash recovery waits for the longest timeout of any function plus 10 s: keep the
    # sweeper's no longer than a delivery's, so a killed worker's chain resumes within a minute.
    timeout = job_timeout(settings.delivery_timeout)
    return {
        "functions": [func(deliver, name="deliver", keep_result=0, timeout=timeout,
                           max_tries=1_000_000)],
        "cron_jobs": [cron(sweep, name="sweep", second=set(range(0, 60, settings.sweep_interval)),
                           run_at_startup=True, timeout=timeout, keep_result=0)],
        "queue_name": DELIVERY_QUEUE,
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
        "on_startup": startup,
        "on_shutdown": shutdown,
        "max_jobs": settings.delivery_concurrency,
        "keep_result": 0,
        "poll_delay": QUEUE_POLL,
        "health_check_interval": 10,
        # On SIGTERM, stop taking jobs and let attempts in flight finish before cancelling.
        "job_completion_wait": int(settings.delivery_timeout + 5),
        "ctx": {"settings": settings, **ctx},
    }


def build_worker_settings(settings: Settings) -> type:
    configure_logging(settings.log_level, settings.log_format, secrets_of(settings))
    return type("WorkerSettings", (), worker_options(settings))


@asynccontextmanager
async def running_worker(
    settings: Settings, poll_delay: float = QUEUE_POLL, **ctx: Any
) -> AsyncIterator[Worker]:
    """A worker in the current event loop (tests, benchmark); stops like SIGTERM does:
    no new jobs, running ones finish, then close."""
    options = worker_options(settings, **ctx) | {"poll_delay": poll_delay}
    worker = ResilientWorker(**options, handle_signals=False)
    task = asyncio.create_task(worker.async_run())
    try:
        yield worker
    finally:
        task.cancel()  # arq's loop first: it may be starting jobs it picked before the flag
        await asyncio.gather(task, return_exceptions=True)  # changed, which close() would cut
        await stop_gracefully(worker, 10)


async def stop_gracefully(worker: Worker, timeout: float) -> None:
    """What SIGTERM does to a worker that handles its own signals: take no new job, let the
    running ones finish (up to `timeout`), then close. (arq's close() alone cancels them, and
    its gather then raises their CancelledError.)"""
    worker.allow_pick_jobs = False
    try:
        await asyncio.wait_for(
            asyncio.gather(*worker.tasks.values(), return_exceptions=True), timeout)
    except TimeoutError:
        pass  # wait_for cancelled them
    # A job arq's loop started meanwhile is cut short too: arq runs it again from Redis.
    late = [task for task in worker.tasks.values() if not task.done()]
    for task in late:
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)
    worker.tasks.clear()  # all done: close() gathers what is left, and a cancelled one raises
    await worker.close()
