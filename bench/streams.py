"""`python -m bench --streams`: polling, streaming, and streaming under a cap, side by side.

The same steady schedule is replayed three times, one run after another (each with its own
simulator and a flushed Redis DB), at the plan's budget: the relay polling only
(`RELAY_STREAM=off`), streaming (`RELAY_STREAM=auto`, the default), and streaming with
`RELAY_STREAMS_PER_WORKER` at half the jobs live at once, so the cap decides who streams.
Lags are unscaled seconds, as in the main benchmark.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from bench import workload
from bench.lags import ArmResult
from bench.plan import Plan
from bench.relay_run import run_relay
from bench.report import Target, fmt, notice, triple

log = logging.getLogger("bench")
LEAD = 3.0  # wall seconds for the servers to start before the first arrival


def live_jobs(rate: float) -> float:
    """Jobs live at once in steady state (Little's law: arrival rate x mean run time)."""
    mean = sum(k.share * (k.min_seconds + k.max_seconds) / 2 for k in workload.MIX)
    return rate * mean


def arms(plan: Plan) -> dict[str, dict[str, str]]:
    cap = max(1, int(live_jobs(plan.rate) / 2))
    return {
        "poll": {"RELAY_STREAM": "off"},
        "stream": {"RELAY_STREAM": "auto"},
        "stream_capped": {"RELAY_STREAM": "auto", "RELAY_STREAMS_PER_WORKER": str(cap)},
    }


async def stream_comparison(plan: Plan) -> dict[str, Any]:
    steady = workload.steady(plan.seed, plan.rate, plan.warmup, plan.measure, plan.scale)
    results: dict[str, ArmResult] = {}
    for name, env in arms(plan).items():
        log.info("arm %s: %s", name, env)
        results[name] = await run_relay(steady, plan.scaled_budget, plan.redis_url,
                                        time.time() + LEAD, False, plan.max_interval,
                                        name=name, env=env)
    return {"live_jobs": live_jobs(plan.rate), "arms": results,
            "cap": arms(plan)["stream_capped"]["RELAY_STREAMS_PER_WORKER"],
            "measured_jobs": len(steady.measured)}


def stream_targets(result: dict[str, Any]) -> list[Target]:
    stream: ArmResult = result["arms"]["stream"]
    terminal = stream.lags["terminal"]
    all_429 = sum(arm.rate_limited for arm in result["arms"].values())
    return [
        Target("stream: terminal lag p50 (webhook), s", terminal.p50, "≤ 0.1",
               terminal.p50 <= 0.1),
        Target("stream: terminal lag p99 (webhook), s", terminal.p99, "≤ 1", terminal.p99 <= 1),
        Target("stream: upstream requests per job", stream.requests_per_job, "≤ 1.3",
               stream.requests_per_job <= 1.3),
        Target("429s, every arm", all_429, "0", all_429 == 0),
    ]


def stream_markdown(result: dict[str, Any], plan: Plan) -> str:
    names = list(result["arms"])
    lines = [
        f"Polling vs streaming, steady traffic ({result['measured_jobs']} measured jobs, about "
        f"{result['live_jobs']:.0f} live at once), budget {plan.budget}/min scaled "
        f"x{plan.scale}; capped arm: RELAY_STREAMS_PER_WORKER={result['cap']}. "
        "Lags p50 / p90 / p99 in UNSCALED seconds.",
        "",
        "| measure | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    arms_: list[ArmResult] = [result["arms"][n] for n in names]
    for category in ("terminal", "intermediate"):
        lines.append(f"| {category}: change -> webhook | "
                     + " | ".join(triple(a.lags[category]) for a in arms_) + " |")
        lines.append(f"| {category}: change -> noticed | "
                     + " | ".join(triple(notice(a, category)) for a in arms_) + " |")
        lines.append(f"| {category}: never reported | "
                     + " | ".join(str(a.lags[category].missed) for a in arms_) + " |")
    lines.append("| upstream requests per job | "
                 + " | ".join(fmt(a.requests_per_job) for a in arms_) + " |")
    lines.append("| 429s | " + " | ".join(str(a.rate_limited) for a in arms_) + " |")
    lines.append("| streams opened | " + " | ".join(
        str(a.extra.get("streams_opened", 0)) for a in arms_) + " |")
    lines += ["", "| target | value | goal | met |", "|---|---|---|---|"]
    lines += [t.row() for t in stream_targets(result)]
    return "\n".join(lines)


def stream_json(result: dict[str, Any]) -> dict[str, Any]:
    return result | {"arms": {n: a.as_dict() for n, a in result["arms"].items()},
                     "targets": [t.__dict__ for t in stream_targets(result)]}
