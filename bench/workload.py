"""The job mix and traffic shapes the benchmark replays: pure, seeded, no I/O.

Every duration here is generated in unscaled seconds (what Varg really takes) and then
multiplied by `scale`, so a run at `scale=0.1` plays ten times faster with the same shape.
A `Schedule` is what every arm of the benchmark replays, so all arms see the same jobs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

TERMINAL = frozenset({"completed", "failed"})
FAILED_SHARE = 0.05
PROCESSING_FROM, PROCESSING_TO = 0.10, 0.20  # processing starts at 10-20 % of the run time


@dataclass(frozen=True)
class Kind:
    name: str
    model: str
    share: float
    min_seconds: float  # unscaled
    max_seconds: float


MIX: tuple[Kind, ...] = (
    Kind("image", "fal:flux-schnell", 0.4, 5.0, 15.0),
    Kind("speech", "elevenlabs:tts-v3", 0.2, 10.0, 30.0),
    Kind("video", "fal:kling-v2.5", 0.4, 60.0, 300.0),
)
LONGEST = max(kind.max_seconds for kind in MIX)


@dataclass(frozen=True)
class JobSpec:
    """One job, in scaled seconds from the start of its run."""

    job_id: str
    kind: str
    model: str
    arrival: float
    processing_at: float
    duration: float
    failed: bool
    measured: bool
    cache_hit: bool = False  # served from Varg's cache: done within a second, no processing

    @property
    def final_status(self) -> str:
        return "failed" if self.failed else "completed"

    def timeline(self) -> list[dict[str, Any]]:
        """The simulator's timeline: queued at creation, then processing (unless a cache hit),
        then terminal."""
        steps = [{"status": "queued", "after": 0.0}]
        if not self.cache_hit:
            steps.append({"status": "processing", "after": round(self.processing_at, 4)})
        return [*steps, {"status": self.final_status, "after": round(self.duration, 4)}]


@dataclass(frozen=True)
class Schedule:
    name: str
    scale: float
    jobs: tuple[JobSpec, ...]

    @property
    def measured(self) -> tuple[JobSpec, ...]:
        return tuple(job for job in self.jobs if job.measured)

    def deadline(self) -> float:
        """Scaled seconds after which a run gives up on measured jobs still unreported."""
        last = max((j.arrival + j.duration for j in self.measured), default=0.0)
        return last + 0.2 * LONGEST * self.scale + 2.0


def pick_kind(rng: random.Random) -> Kind:
    return rng.choices(MIX, weights=[kind.share for kind in MIX])[0]


def make_job(rng: random.Random, job_id: str, arrival: float, scale: float,
             measured: bool) -> JobSpec:
    """A job of a random kind arriving at `arrival` (already scaled)."""
    kind = pick_kind(rng)
    duration = rng.uniform(kind.min_seconds, kind.max_seconds)
    processing = duration * rng.uniform(PROCESSING_FROM, PROCESSING_TO)
    return JobSpec(
        job_id=job_id, kind=kind.name, model=kind.model, arrival=arrival,
        processing_at=processing * scale, duration=duration * scale,
        failed=rng.random() < FAILED_SHARE, measured=measured,
    )


def steady(seed: int, rate: float, warmup: float, measure: float, scale: float,
           tail: float = LONGEST) -> Schedule:
    """Poisson arrivals at `rate` jobs/s (unscaled) for warmup + measure + tail seconds.

    Only jobs arriving during `measure` are measured; the warm-up lets the relay learn run
    times and fills the system, the tail keeps the load up while measured jobs finish.
    """
    rng = random.Random(seed)
    jobs: list[JobSpec] = []
    at = rng.expovariate(rate)
    while at < warmup + measure + tail:
        measured = warmup <= at < warmup + measure
        jobs.append(make_job(rng, f"steady-{len(jobs):05d}", at * scale, scale, measured))
        at += rng.expovariate(rate)
    return Schedule("steady", scale, tuple(jobs))


# A new user's day (the everyday arm): a few jobs at a time under the default budget, on models
# whose priors are wrong here: this "video" model takes 3-15 s (its prior says ~2 minutes), this
# "image" model 1-3 s (prior ~10 s), and a quarter of the video jobs are cache hits.
EVERYDAY_MIX: tuple[Kind, ...] = (
    Kind("video", "fal:kling-v2.5", 0.5, 3.0, 15.0),
    Kind("image", "fal:flux-schnell", 0.5, 1.0, 3.0),
)
CACHE_HIT_SHARE = 0.25  # of the video jobs
CACHE_HIT_SECONDS = (0.2, 0.9)


def everyday(seed: int, scale: float, jobs: int = 40, rate: float = 0.4) -> Schedule:
    """`jobs` Poisson arrivals at `rate` a second, every one measured."""
    rng = random.Random(seed)
    specs: list[JobSpec] = []
    at = rng.expovariate(rate)
    for i in range(jobs):
        kind = rng.choices(EVERYDAY_MIX, weights=[k.share for k in EVERYDAY_MIX])[0]
        hit = kind.name == "video" and rng.random() < CACHE_HIT_SHARE
        duration = rng.uniform(*CACHE_HIT_SECONDS) if hit else rng.uniform(
            kind.min_seconds, kind.max_seconds)
        processing = duration * rng.uniform(PROCESSING_FROM, PROCESSING_TO)
        specs.append(JobSpec(
            job_id=f"everyday-{i:05d}", kind=kind.name, model=kind.model, arrival=at * scale,
            processing_at=processing * scale, duration=duration * scale,
            failed=not hit and rng.random() < FAILED_SHARE, measured=True, cache_hit=hit,
        ))
        at += rng.expovariate(rate)
    return Schedule("everyday", scale, tuple(specs))


def burst(seed: int, size: int, scale: float) -> Schedule:
    """`size` jobs registered at the same instant, every one measured."""
    rng = random.Random(seed)
    jobs = tuple(make_job(rng, f"burst-{i:05d}", 0.0, scale, True) for i in range(size))
    return Schedule("burst", scale, jobs)
