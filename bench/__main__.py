"""`python -m bench [--quick] [--streams] [--out bench/results/latest.json]`: the benchmark.

Prints a markdown table (targets marked ✓/✗) and writes every number as JSON. Everything runs
on 127.0.0.1, against a throwaway redis-server of its own (or `--redis-url`, which it
flushes), and every phase stops by itself. `--streams` runs only the comparison of polling and
stream mode (bench/streams.py).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench import workload
from bench.arms import LEAD, compare, start_pool
from bench.footprint import footprint
from bench.lags import ArmResult
from bench.plan import ARMS, FULL, QUICK, Plan
from bench.redis_probe import count_round_trips
from bench.relay_run import run_relay
from bench.report import markdown, write_json, write_json_document
from bench.servers import use_scaled_timestamps
from bench.streams import stream_comparison, stream_json, stream_markdown
from bench.throughput import delivery_throughput, poll_throughput
from relay.devtools.redis_server import ThrowawayRedis

log = logging.getLogger("bench")
DEFAULT_OUT = Path("bench/results/latest.json")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a 2-4 minute run")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--scale", type=float, help="wall seconds per unscaled second")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--max-interval", type=float,
                        help="the relay's RELAY_POLL_MAX_INTERVAL in unscaled seconds (default 60)")
    parser.add_argument("--min-interval", type=float,
                        help="the relay's RELAY_POLL_MIN_INTERVAL in unscaled seconds "
                             "(default: the setting's)")
    parser.add_argument("--arms", default=",".join(ARMS),
                        help="comma-separated, of " + ", ".join(ARMS) + " (default: all)")
    parser.add_argument("--redis-url",
                        help="a Redis database to use, FLUSHED on every phase (default: a "
                             "throwaway redis-server on a free port)")
    parser.add_argument("--streams", action="store_true",
                        help="compare polling, streaming and capped streaming (bench/streams.py)")
    parser.add_argument("--second-timestamps", action="store_true",
                        help="keep Varg's 1 s timestamp resolution even when time is scaled")
    return parser.parse_args()


def plan_from(args: argparse.Namespace) -> Plan:
    plan = QUICK if args.quick else FULL
    overrides: dict[str, Any] = {"scaled_timestamps": not args.second_timestamps}
    if args.scale:
        overrides["scale"] = args.scale
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.max_interval:
        overrides["max_interval"] = args.max_interval
    if args.min_interval:
        overrides["min_interval"] = args.min_interval
    if args.redis_url:
        overrides["redis_url"] = args.redis_url
    arms = tuple(a.strip() for a in args.arms.split(",") if a.strip())
    unknown = set(arms) - set(ARMS)
    if unknown:
        raise SystemExit(f"--arms: unknown {', '.join(sorted(unknown))}")
    return replace(plan, arms=arms, **overrides)


@dataclass(frozen=True)
class LagArm:
    """One arm of the lag phase: its arrivals, budget and Varg's timestamp resolution."""

    name: str
    schedule: workload.Schedule
    budget: int
    ms_timestamps: bool | None  # None: the plan's
    keep_learning: bool  # keep vr:durations from the run before


def lag_arms(plan: Plan) -> list[LagArm]:
    """The plan's arms in the order they run: burst keeps what steady taught."""
    arms = []
    if "everyday" in plan.arms:
        # Real time, Varg's whole-second timestamps, nothing learned yet: a new user.
        everyday = workload.everyday(plan.seed, 1.0, plan.everyday_jobs, plan.everyday_rate)
        arms.append(LagArm("everyday", everyday, plan.everyday_budget, False, False))
    if "steady" in plan.arms:
        steady = workload.steady(plan.seed, plan.rate, plan.warmup, plan.measure, plan.scale)
        arms.append(LagArm("steady", steady, plan.scaled_budget, None, False))
    if "burst" in plan.arms:
        burst = workload.burst(plan.seed + 1, plan.burst, plan.scale)
        arms.append(LagArm("burst", burst, plan.scaled_budget, None, True))
    return arms


async def lag_phase(plan: Plan) -> dict[str, Any]:
    """Each arm polling only, then each again through the relay as shipped (stream mode), in
    the same order: burst keeps what the steady run before it learned, in both passes."""
    arms = lag_arms(plan)
    found: dict[str, Any] = {}
    pool = start_pool()
    try:
        for arm in arms:
            log.info("%s: %d jobs (%d measured)%s", arm.name, len(arm.schedule.jobs),
                     len(arm.schedule.measured),
                     ", learned run times kept" if arm.keep_learning else "")
            found[arm.name] = await compare(arm.schedule, plan, pool, arm.keep_learning,
                                            arm.budget, arm.ms_timestamps)
    finally:
        pool.shutdown()
    for arm in arms:
        found[arm.name]["relay_defaults"] = await as_shipped(arm, plan)
    return found


async def as_shipped(arm: LagArm, plan: Plan) -> ArmResult:
    """The same arrivals through the relay as a user runs it: its defaults, stream mode on
    (the first pass polls only, RELAY_STREAM=off, to measure the poll policy)."""
    log.info("%s: the relay with its defaults (stream mode)", arm.name)
    return await run_relay(arm.schedule, arm.budget, plan.redis_url, time.time() + LEAD,
                           keep_learning=arm.keep_learning, ms_timestamps=arm.ms_timestamps,
                           name="relay_defaults", env={"RELAY_STREAM": "auto"})


async def run(plan: Plan) -> dict[str, Any]:
    started = time.monotonic()
    count_round_trips()
    lag = await lag_phase(plan)
    throughput: dict[str, Any] = {}
    if "throughput" in plan.arms:
        log.info("throughput")
        throughput = {"polls": await poll_throughput(plan),
                      "deliveries": await delivery_throughput(plan)}
    fp = None
    if "footprint" in plan.arms:
        log.info("footprint")
        fp = await footprint(plan)
    return {
        "plan": asdict(plan) | {"scaled_budget": plan.scaled_budget},
        "notes": NOTES,
        "lag": lag,
        "throughput": throughput,
        "footprint": fp,
        "run_seconds": time.monotonic() - started,
    }


async def run_with_redis(plan: Plan,
                         phase: Callable[[Plan], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """`phase` on the given Redis, or on a throwaway redis-server of the run's own."""
    if plan.redis_url:
        return await phase(plan)
    server = ThrowawayRedis()
    url = server.start()
    try:
        return await phase(replace(plan, redis_url=url))
    finally:
        server.stop()


NOTES = [
    "Lags are unscaled seconds: wall lag divided by the scale factor.",
    "Everyday runs in real time (scale 1) at the default budget, from an empty Redis (nothing"
    " learned), with Varg's whole-second timestamps; its models' priors are wrong (a 'video'"
    " model that takes 3-15 s, an 'image' model 1-3 s) and a quarter of its video jobs are"
    " cache hits.",
    "Relay lag is change -> webhook arrival at a real receiver; 'relay (noticed)' is change ->"
    " the relay's observation (the event timestamp); baselines have no webhook hop.",
    "Steady: the relay starts from an empty Redis and learns run times during the unmeasured"
    " warm-up arrivals of the same mix; burst keeps vr:durations and flushes the rest.",
    "Baselines replay the same schedule at the same time, each in a child process against its"
    " own fresh simulator.",
    "The SDK baseline keeps polling after a 429 (the real SDK throws on the first).",
    "Timestamps: the simulator reports created_at/completed_at in ms unless"
    " --second-timestamps (Varg's 1 s is 10 unscaled s at x0.1).",
    "Redis commands per poll come from MONITOR filtered to the run's database; round trips are"
    " counted at this process's redis-py connections.",
]


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("arq", "relay", "httpx", "uvicorn"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    plan = plan_from(args)
    use_scaled_timestamps(plan.scaled_timestamps)
    if args.streams:
        run_streams(plan, args.out)
        return
    result = asyncio.run(run_with_redis(plan, run))
    write_json(result, args.out)
    print(markdown(result))
    print(f"\nrun time {result['run_seconds']:.0f} s; JSON: {args.out}")


def run_streams(plan: Plan, out: Path) -> None:
    started = time.monotonic()
    result = asyncio.run(run_with_redis(plan, stream_comparison))
    if out == DEFAULT_OUT:
        out = out.with_name("streams.json")
    document = stream_json(result) | {"plan": asdict(plan),
                                      "run_seconds": time.monotonic() - started}
    write_json_document(document, out)
    print(stream_markdown(result, plan))
    print(f"\nrun time {document['run_seconds']:.0f} s; JSON: {out}")


if __name__ == "__main__":
    main()
