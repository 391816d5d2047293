"""From what the simulator says changed (and when) and what an arm noticed (and when) to lag
percentiles, in unscaled seconds."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bench.workload import TERMINAL, Schedule

Changes = Mapping[str, Sequence[tuple[str, float]]]
Observed = Mapping[tuple[str, str], float]
CATEGORIES = ("terminal", "intermediate", "queued")


def category(status: str) -> str:
    if status in TERMINAL:
        return "terminal"
    return "queued" if status == "queued" else "intermediate"


def percentile(values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class LagSummary:
    """Lags in unscaled seconds; `missed` changes happened but were never reported."""

    count: int
    missed: int
    p50: float
    p90: float
    p99: float

    @classmethod
    def of(cls, lags: Sequence[float], missed: int) -> LagSummary:
        return cls(len(lags), missed, percentile(lags, 0.5), percentile(lags, 0.9),
                   percentile(lags, 0.99))

    def as_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in asdict(self).items()}


def measured_changes(schedule: Schedule, changes: Changes) -> Iterable[tuple[str, str, float]]:
    for job in schedule.measured:
        for status, at in changes.get(job.job_id, ()):
            yield job.job_id, status, at


def summarize(schedule: Schedule, changes: Changes, observed: Observed) -> dict[str, LagSummary]:
    """Lag per category of change, from the change becoming visible to `observed`."""
    lags: dict[str, list[float]] = {name: [] for name in CATEGORIES}
    missed = dict.fromkeys(CATEGORIES, 0)
    for job_id, status, at in measured_changes(schedule, changes):
        seen = observed.get((job_id, status))
        if seen is None:
            missed[category(status)] += 1
        else:
            lags[category(status)].append(max(seen - at, 0.0) / schedule.scale)
    return {name: LagSummary.of(lags[name], missed[name]) for name in CATEGORIES}


def requests_per_job(schedule: Schedule, stats: Mapping[str, Any]) -> float:
    by_job: Mapping[str, int] = stats.get("by_job", {})
    measured = schedule.measured
    return sum(by_job.get(job.job_id, 0) for job in measured) / max(len(measured), 1)


def rate_limited(stats: Mapping[str, Any]) -> int:
    return int(stats.get("by_code", {}).get("429", 0))


@dataclass(frozen=True)
class ArmResult:
    """One arm's run over one schedule: lags by category plus upstream traffic."""

    name: str
    lags: dict[str, LagSummary]
    requests_per_job: float
    requests: int
    rate_limited: int
    wall_seconds: float
    extra: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "lag_unscaled_seconds": {k: v.as_dict() for k, v in self.lags.items()},
            "requests_per_job": self.requests_per_job,
            "requests": self.requests,
            "rate_limited_429": self.rate_limited,
            "wall_seconds": self.wall_seconds,
            **self.extra,
        }


def arm_result(name: str, schedule: Schedule, changes: Changes, stats: Mapping[str, Any],
               observed: Observed, wall: float, **extra: Any) -> ArmResult:
    return ArmResult(
        name=name, lags=summarize(schedule, changes, observed),
        requests_per_job=requests_per_job(schedule, stats), requests=int(stats["requests"]),
        rate_limited=rate_limited(stats), wall_seconds=wall, extra=extra,
    )
