"""`python -m bench.stream_memory [--streams 1000]`: how many streams one worker process holds,
and what each costs in memory.

A simulator (its own process) serves N jobs that never finish; one real `varg-relay worker`
process (RELAY_STREAMS_PER_WORKER=N) follows them all on Varg's stream. The worker's resident
memory (VmRSS, from /proc) is read once it has started and watches nothing, and again once
all N streams are open and have carried a keepalive; (after - before) / N is the memory per
stream. Runs against `--redis-url` (default DB 12; it is flushed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

from bench.servers import SIM_KEY, simulator
from relay.delivery.signing import new_secret
from relay.ids import new_id
from relay.store.store import Store

OWNER = "0" * 32
NEVER = 86_000.0  # seconds until the jobs complete: not during the run
KEEPALIVE = 15.0  # the simulator's default, as Varg sends them


REDIS_URL = "redis://127.0.0.1:6379/12"  # flushed: not a database you use


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def worker_env(sim_url: str, redis_url: str, streams: int) -> dict[str, str]:
    return {**os.environ, "REDIS_URL": redis_url, "VARG_API_URL": sim_url + "/v1",
            "VARG_API_KEY": SIM_KEY, "RELAY_SIGNING_SECRETS": new_secret(),
            "RELAY_API_TOKENS": "tok_bench", "RELAY_UPSTREAM_RATE_LIMIT": "1000000",
            "RELAY_STREAMS_PER_WORKER": str(streams), "RELAY_STREAMS_MAX": str(streams),
            "RELAY_METRICS_PORT": "0", "RELAY_LOG_LEVEL": "INFO", "RELAY_LOG_FORMAT": "text"}


def start_worker(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
    log = Path(tempfile.mkstemp(prefix="stream-memory-worker-", suffix=".log")[1])
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "relay.cli", "worker"], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while "worker started" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.1)
    return proc, log


async def sim_stats(client: httpx.AsyncClient) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get("/_sim/stats")).json()
    return body


async def measure(streams: int, redis_url: str) -> dict[str, Any]:
    redis = Redis.from_url(redis_url, decode_responses=True)
    await redis.flushdb()
    store = Store(redis)
    with simulator(None) as sim:
        async with httpx.AsyncClient(base_url=sim.url, timeout=30) as client:
            for i in range(streams):
                (await client.post("/_sim/jobs", json={"job_id": f"mem-{i:05d}", "timeline": [
                    {"status": "processing", "after": 0}, {"status": "completed",
                                                           "after": NEVER}]})).raise_for_status()
            proc, log = start_worker(worker_env(sim.url, redis_url, streams))
            try:
                await asyncio.sleep(3.0)
                before = rss_bytes(proc.pid)
                started = time.monotonic()
                for i in range(streams):
                    await store.subscribe(new_id("sub"), OWNER, f"mem-{i:05d}",
                                          "http://127.0.0.1:9/never", ["job.completed"], {},
                                          7200.0)
                while (await sim_stats(client))["streams_open"] < streams:
                    if time.monotonic() - started > 300:
                        raise RuntimeError(f"only {(await sim_stats(client))['streams_open']}"
                                           f" streams open after 300 s")
                    await asyncio.sleep(0.5)
                opened_in = time.monotonic() - started
                await asyncio.sleep(KEEPALIVE + 5)  # every stream has carried a keepalive
                after = rss_bytes(proc.pid)
                held = (await sim_stats(client))["streams_open"]
            finally:
                proc.terminate()
                proc.wait(timeout=60)
                log.unlink(missing_ok=True)
    await redis.flushdb()
    await redis.aclose()
    return {"streams": held, "rss_before_bytes": before, "rss_after_bytes": after,
            "bytes_per_stream": (after - before) / max(held, 1), "open_seconds": opened_in}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stream_memory", description=__doc__)
    parser.add_argument("--streams", type=int, action="append",
                        help="streams to hold (repeat for several runs; default 1000)")
    parser.add_argument("--redis-url", default=REDIS_URL, help="a Redis database (flushed)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/stream_memory.json"))
    args = parser.parse_args()
    runs = [asyncio.run(measure(n, args.redis_url)) for n in args.streams or [1000]]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(runs, indent=2) + "\n")
    print("| streams held | worker RSS idle | RSS holding them | per stream | all open after |")
    print("|---|---|---|---|---|")
    for run in runs:
        print(f"| {run['streams']} | {run['rss_before_bytes'] / 2**20:.1f} MiB | "
              f"{run['rss_after_bytes'] / 2**20:.1f} MiB | "
              f"{run['bytes_per_stream'] / 1024:.1f} KiB | {run['open_seconds']:.1f} s |")


if __name__ == "__main__":
    main()
