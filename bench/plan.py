"""What a run measures and at what size: `--quick` and the full plan."""

from __future__ import annotations

from dataclasses import dataclass, replace

ARMS = ("everyday", "steady", "burst", "throughput", "footprint")


@dataclass(frozen=True)
class Plan:
    scale: float = 0.1  # wall seconds per unscaled second
    budget: int = 120  # upstream requests per unscaled minute
    rate: float = 0.5  # steady arrivals per unscaled second
    warmup: float = 600.0  # unscaled seconds of steady traffic before measuring
    measure: float = 1200.0  # unscaled seconds of measured arrivals
    burst: int = 100
    seed: int = 7
    throughput_seconds: float = 10.0  # wall seconds per throughput measurement
    poll_jobs: int = 1000
    delivery_jobs: int = 400
    subs_per_job: int = 10
    footprint_watches: int = 1000
    monitor_seconds: float = 2.0
    redis_url: str = ""  # "": a throwaway redis-server of the run's own (bench/__main__.py)
    scaled_timestamps: bool = True
    max_interval: float = 60.0  # unscaled RELAY_POLL_MAX_INTERVAL for the relay under test
    min_interval: float | None = None  # unscaled RELAY_POLL_MIN_INTERVAL (None: its default)
    # The everyday arm, in real time: a new user's few jobs under the default budget.
    everyday_jobs: int = 40
    everyday_rate: float = 0.4  # arrivals a second
    everyday_budget: int = 100  # RELAY_UPSTREAM_RATE_LIMIT's default
    arms: tuple[str, ...] = ARMS

    @property
    def scaled_budget(self) -> int:
        return round(self.budget / self.scale)


FULL = Plan()
QUICK = replace(FULL, warmup=300.0, measure=300.0, throughput_seconds=5.0, poll_jobs=500,
                delivery_jobs=200)
