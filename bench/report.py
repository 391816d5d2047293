"""The markdown table and the JSON document of a run."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.lags import ArmResult, LagSummary

KIB = 1024


@dataclass(frozen=True)
class Target:
    name: str
    value: float
    goal: str
    met: bool

    def row(self) -> str:
        mark = "✓" if self.met else "✗"
        return f"| {self.name} | {fmt(self.value)} | {self.goal} | {mark} |"


def fmt(value: float) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value)}"
    return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"


def triple(summary: LagSummary) -> str:
    return " / ".join(fmt(round(v, 1)) for v in (summary.p50, summary.p90, summary.p99))


def notice(arm: ArmResult, category: str) -> LagSummary:
    raw = arm.extra["notice_lag_unscaled_seconds"][category]
    p50, p90, p99 = (math.nan if raw[k] is None else float(raw[k]) for k in ("p50", "p90", "p99"))
    return LagSummary(int(raw["count"]), int(raw["missed"]), p50, p90, p99)


def lag_rows(shape: str, arms: dict[str, ArmResult]) -> list[str]:
    relay, rr, sdk = arms["relay"], arms["round_robin"], arms["sdk_fixed_2s"]
    rows = []
    for category in ("terminal", "intermediate"):
        cells = [triple(relay.lags[category]), triple(notice(relay, category)),
                 triple(rr.lags[category]), triple(sdk.lags[category])]
        rows.append(f"| {shape}: {category} lag p50 / p90 / p99 (s) | " + " | ".join(cells) + " |")
        missed = [relay.lags[category].missed, notice(relay, category).missed,
                  rr.lags[category].missed, sdk.lags[category].missed]
        counted = relay.lags[category].count + relay.lags[category].missed
        rows.append(f"| {shape}: {category} changes never reported (of {counted}) | "
                    + " | ".join(str(m) for m in missed) + " |")
    per_job = [relay.requests_per_job, relay.requests_per_job, rr.requests_per_job,
               sdk.requests_per_job]
    rows.append(f"| {shape}: upstream requests per job | " + " | ".join(fmt(v) for v in per_job)
                + " |")
    rows.append(f"| {shape}: 429s | {relay.rate_limited} | {relay.rate_limited} | "
                f"{rr.rate_limited} | {sdk.rate_limited} |")
    if "relay_defaults" in arms:
        rows += defaults_rows(shape, arms["relay_defaults"])
    return rows


def defaults_rows(shape: str, defaults: ArmResult) -> list[str]:
    """The relay with its defaults (stream mode) on the same arrivals, webhook and noticed."""
    rows = [f"| {shape}, relay defaults (streams): {category} lag p50 / p90 / p99 (s) | "
            f"{triple(defaults.lags[category])} | {triple(notice(defaults, category))} | | |"
            for category in ("terminal", "intermediate")]
    rows.append(f"| {shape}, relay defaults (streams): requests per job · 429s | "
                f"{fmt(defaults.requests_per_job)} · {defaults.rate_limited} | | | |")
    return rows


def ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


SHIPPED = ("relay_defaults", "relay defaults (streams)")


def lag_targets(lag: dict[str, dict[str, ArmResult]]) -> list[Target]:
    """Relay (webhook arrival) against the baselines in the same run, per arm present: the
    polling relay's, then the relay as shipped where the run has it."""
    found: list[Target] = []
    for relay, label in (("relay", "relay"), SHIPPED):
        if "everyday" in lag and relay in lag["everyday"]:
            found += everyday_targets(lag["everyday"], relay, label)
        if "steady" in lag and relay in lag["steady"]:
            found += [ratio_target(lag["steady"], relay, label, "steady", p, goal)
                      for p, goal in (("p50", 0.2), ("p90", 1.0))]
        if "burst" in lag and relay in lag["burst"]:
            found.append(ratio_target(lag["burst"], relay, label, "burst", "p50", 0.7))
    if lag:
        caused = sum(arm.rate_limited for arms in lag.values()
                     for name, arm in arms.items() if name.startswith("relay"))
        found.append(Target(f"429s caused by the relay ({' + '.join(lag)})", caused, "0",
                            caused == 0))
    return found


def ratio_target(arms: dict[str, ArmResult], relay: str, label: str, shape: str, p: str,
                 goal: float) -> Target:
    """Terminal lag at percentile `p`, the relay arm `relay` over round robin's."""
    value = ratio(getattr(arms[relay].lags["terminal"], p),
                  getattr(arms["round_robin"].lags["terminal"], p))
    return Target(f"{shape} terminal lag {p}, {label} / round robin", value, f"≤ {goal:g}",
                  value <= goal)


def everyday_targets(arms: dict[str, ArmResult], name: str, label: str) -> list[Target]:
    """The everyday ratios for the relay arm `name` (polling only, or as a new user runs it)."""
    relay, rr, sdk = (arms[n].lags for n in (name, "round_robin", "sdk_fixed_2s"))
    found = []
    for p in ("p50", "p90"):
        better = min(getattr(rr["terminal"], p), getattr(sdk["terminal"], p))
        value = ratio(getattr(relay["terminal"], p), better)
        found.append(Target(f"everyday terminal lag {p}, {label} / better of round robin and "
                            "SDK 2 s", value, "≤ 0.7", value <= 0.7))
    value = ratio(relay["intermediate"].p50, rr["intermediate"].p50)
    found.append(Target(f"everyday processing lag p50, {label} / round robin", value, "≤ 0.7",
                        value <= 0.7))
    return found


def targets(result: dict[str, Any]) -> list[Target]:
    found = lag_targets(result["lag"])
    if result["throughput"]:
        polls, deliveries = result["throughput"]["polls"], result["throughput"]["deliveries"]
        found += [
            Target("polls/s, relay / raw httpx", polls["ratio"], "≥ 0.5", polls["ratio"] >= 0.5),
            Target("deliveries/s, relay / raw httpx", deliveries["ratio"], "≥ 0.5",
                   deliveries["ratio"] >= 0.5),
            Target("Redis round trips per poll", polls["round_trips_per_poll"], "≤ 1",
                   polls["round_trips_per_poll"] <= 1),
        ]
    if result["footprint"]:
        per_watch = result["footprint"]["bytes_per_watch"]
        found.append(Target("Redis bytes per watch (+1 subscription)", per_watch, "≤ 2048",
                            per_watch <= 2 * KIB))
    return found


def markdown(result: dict[str, Any]) -> str:
    plan = result["plan"]
    lines = [
        f"Steady and burst: a budget of {plan['budget']}/min, time scaled x{plan['scale']} "
        f"(budget {plan['scaled_budget']}/min), relay RELAY_POLL_MAX_INTERVAL "
        f"{plan.get('max_interval', 60.0):g} s. Everyday: real time, "
        f"{plan.get('everyday_budget', 100)}/min. Lags in UNSCALED seconds. Relay: change -> "
        "webhook arrival (and -> relay noticed); baselines: change -> loop noticed.",
        "",
        "| measure | relay (webhook) | relay (noticed) | round robin | SDK fixed 2 s |",
        "|---|---|---|---|---|",
    ]
    for shape, arms in result["lag"].items():
        lines += lag_rows(shape, arms)
    if result["throughput"]:
        polls, deliveries = result["throughput"]["polls"], result["throughput"]["deliveries"]
        lines += [
            "",
            f"Throughput, no budget: {fmt(polls['polls_per_s'])} polls/s "
            f"(raw {fmt(polls['raw_polls_per_s'])}), {fmt(deliveries['deliveries_per_s'])} "
            f"deliveries/s (raw {fmt(deliveries['raw_deliveries_per_s'])}); Redis commands per "
            f"poll {fmt(polls['commands_per_poll'])} incl. inside Lua, "
            f"{fmt(polls['client_commands_per_poll'])} sent by clients.",
        ]
    lines += ["", "| target | value | goal | met |", "|---|---|---|---|"]
    lines += [t.row() for t in targets(result)]
    return "\n".join(lines)


def to_json(result: dict[str, Any]) -> dict[str, Any]:
    lag = {shape: {name: arm.as_dict() for name, arm in arms.items()}
           for shape, arms in result["lag"].items()}
    return result | {"lag": lag, "targets": [t.__dict__ for t in targets(result)]}


def write_json(result: dict[str, Any], path: Path) -> None:
    write_json_document(to_json(result), path)


def write_json_document(document: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(clean(document), indent=2, default=str) + "\n")


def clean(value: Any) -> Any:
    """NaN is not JSON: write null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value
