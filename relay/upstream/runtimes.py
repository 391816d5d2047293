"""When a job is worth polling: spend the upstream budget where a change is likely.

Each model has a distribution of run times (from Varg's `created_at` to its `completed_at`): a
prior by kind of model (images take seconds, speech tens of seconds, video minutes) blended with a
histogram of the runs the relay has seen, kept in Redis as counts in log-spaced buckets. The
prior only matters until a model has history: after n runs it counts as PRIOR_WEIGHT / (1 + n)
jobs, so a wrong prior (a new model, a faster provider, a simulator) is outvoted within a
handful of runs. Cache hits (`cache.hit` in the job) are counted apart, as a share of the
model's jobs that finish within CACHE_HIT_SECONDS: they do not drag the distribution of real runs.

The value of polling a job now, last polled alive at age `a`, is the lag a poll now would end:
the chance that it finished since, plus the lag it has probably built up since finishing,
counted against `scale`, the time the budget needs to poll every candidate once:

    chance = (F(age) - F(a)) / (1 - F(a))
    value  = chance + E[lag so far] / scale,  E[lag so far] = ∫ₐ^age (F(u) - F(a)) du / (1 - F(a))

The chance alone spends a short budget where a change is most likely, best for the median, but
lets a long job wait; the lag term grows with the square of the wait, so no job waits much
longer than a round robin would make it. `rank` in relay/upstream/policy.py orders candidates
by value; any job not polled within RELAY_POLL_MIN_INTERVAL is a candidate, whatever its value.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

BUCKET_BASE = 0.25  # seconds: the upper edge of the first bucket
# Quarter steps of log2 (each bucket 19% wider than the last) from 0.25 s to about 7.5 hours;
# the last bucket is open-ended. Finer buckets place polls closer to where jobs really end.
BUCKETS = 68
EDGES = tuple(BUCKET_BASE * 2 ** (i / 4) for i in range(BUCKETS))
PRIOR_WEIGHT = 2.0  # the prior counts as this many jobs, divided by 1 + the runs seen
PRIOR_SPREAD = 1.0  # standard deviation of ln(run time) in the prior: a wide guess
# The due time a poll writes back (`next_delay`): when a job's chance reaches this. It orders the
# jobs a worker is shown first when there are more than it ranks; it is no longer a wait.
ELIGIBLE_CHANCE = 0.02
CACHE_HIT_SECONDS = 1.0  # a cache hit is done within this
CACHE_PRIOR_HITS, CACHE_PRIOR_JOBS = 1.0, 4.0
CACHE_FIELD = "cache"  # `model\tcache` counts a model's cache hits in the histogram hash
# Replaying the benchmark's steady mix offline, weights from 1.5 to 5 all cut the median lag by
# 10-20% against 1 (and a first look at age 0 by far more); 2 is the middle of that plateau.
FIRST_LOOK_WEIGHT = 2.0


@dataclass(frozen=True)
class Limits:
    not_found_grace: float
    min_interval: float
    max_interval: float


# Typical run time in seconds by kind of model, until a model has history of its own.
PRIOR_SECONDS = {"image": 10.0, "speech": 20.0, "music": 60.0, "video": 120.0}
DEFAULT_PRIOR = 60.0
# Checked in this order: "image-to-video" is video, "elevenlabs music" is music.
_KIND_HINTS = {
    "video": ("video", "kling", "veo", "sora", "wan", "hailuo", "runway", "luma", "seedance"),
    "music": ("music", "suno", "udio", "song", "sfx"),
    "speech": ("tts", "speech", "voice", "eleven", "whisper", "audio"),
    "image": ("flux", "image", "sdxl", "imagen", "recraft", "ideogram", "seedream", "nano-banana"),
}


def model_kind(model: str) -> str | None:
    name = model.lower()
    for kind, hints in _KIND_HINTS.items():
        if any(hint in name for hint in hints):
            return kind
    return None


def prior_seconds(model: str) -> float:
    kind = model_kind(model)
    return PRIOR_SECONDS[kind] if kind else DEFAULT_PRIOR


def bucket_of(seconds: float) -> int:
    return min(bisect.bisect_left(EDGES, max(seconds, 0.0)), BUCKETS - 1)


def prior_weight(seen: float) -> float:
    """What a prior counts for once `seen` runs of the model are known."""
    return PRIOR_WEIGHT / (1.0 + seen)


def prior_counts(median: float, weight: float = PRIOR_WEIGHT) -> list[float]:
    """A log-normal around `median`, spread over the buckets, worth `weight` jobs."""
    def cdf(t: float) -> float:
        return 0.5 * (1 + math.erf(math.log(t / median) / (PRIOR_SPREAD * math.sqrt(2))))

    cdfs = [cdf(edge) for edge in EDGES[:-1]] + [1.0]
    masses = [b - a for a, b in zip([0.0, *cdfs[:-1]], cdfs, strict=True)]
    return [weight * m for m in masses]


class Durations:
    """Run-time distribution from bucket counts; linear within a bucket."""

    def __init__(self, counts: Sequence[float]) -> None:
        total = sum(counts) or 1.0
        running, self.cdf_at_edges = 0.0, []
        for count in counts:
            running += count
            self.cdf_at_edges.append(running / total)

    def cdf(self, t: float) -> float:
        i = bucket_of(t)
        if i >= BUCKETS - 1:
            return self.cdf_at_edges[-2] if t < EDGES[-1] else 1.0
        lo_edge = EDGES[i - 1] if i else 0.0
        lo = self.cdf_at_edges[i - 1] if i else 0.0
        fraction = (t - lo_edge) / (EDGES[i] - lo_edge)
        return lo + (self.cdf_at_edges[i] - lo) * min(max(fraction, 0.0), 1.0)

    def quantile(self, p: float) -> float:
        i = bisect.bisect_left(self.cdf_at_edges, p)
        if i >= BUCKETS - 1:
            return math.inf
        lo_edge = EDGES[i - 1] if i else 0.0
        lo = self.cdf_at_edges[i - 1] if i else 0.0
        width = self.cdf_at_edges[i] - lo
        fraction = (p - lo) / width if width > 0 else 0.0
        return lo_edge + (EDGES[i] - lo_edge) * fraction


def parse_counts(raw: Mapping[str, str]) -> dict[str, list[float]]:
    """Redis hash fields `model\\tbucket` -> per-model bucket counts."""
    counts: dict[str, list[float]] = {}
    for key, value in raw.items():
        model, _, bucket = key.rpartition("\t")
        if model and bucket.isdigit() and int(bucket) < BUCKETS:
            counts.setdefault(model, [0.0] * BUCKETS)[int(bucket)] += float(value)
    return counts


def parse_cache_hits(raw: Mapping[str, str]) -> dict[str, float]:
    """Redis hash fields `model\tcache` -> how many cache hits of that model were seen."""
    hits: dict[str, float] = {}
    for key, value in raw.items():
        model, _, tail = key.rpartition("\t")
        if model and tail == CACHE_FIELD:
            hits[model] = hits.get(model, 0.0) + float(value)
    return hits


def learn_field(model: str, seconds: float, cache_hit: bool = False) -> str:
    """The histogram field one finished run counts in: its bucket, or the model's cache hits."""
    return f"{model}\t{CACHE_FIELD if cache_hit else bucket_of(seconds)}"


def cache_share(hits: float, runs: float) -> float:
    """The share of jobs that are cache hits: a quarter until jobs are seen (any model may
    serve from cache), then what they show (Laplace's rule, with that prior worth 4 jobs)."""
    return (hits + CACHE_PRIOR_HITS) / (hits + runs + CACHE_PRIOR_JOBS)


def cache_cdf(t: float) -> float:
    return min(max(t / CACHE_HIT_SECONDS, 0.0), 1.0)


class RunTimes:
    """A model's run times as a poll sees them: a share of cache hits, the rest real runs."""

    def __init__(self, runs: Durations, cache_share: float) -> None:
        self.runs = runs
        self.cache_share = cache_share

    def cdf(self, t: float) -> float:
        q = self.cache_share
        return q * cache_cdf(t) + (1 - q) * self.runs.cdf(t)

    def chance(self, polled_age: float, age: float) -> float:
        """The chance that a job alive at `polled_age` has finished by `age`."""
        before = self.cdf(polled_age)
        if self.runs.cdf(polled_age) > 0.999:
            # Older than anything seen: the histogram says nothing, so the wait counts.
            return min(1.0, max(0.0, age - polled_age) / max(age, 1e-9))
        return max(0.0, (self.cdf(age) - before) / (1 - before))

    def lag_so_far(self, polled_age: float, age: float) -> float:
        """E[age - finish, if it finished after polled_age] for a job alive at polled_age:
        exact for the piecewise-linear cdf (trapezoids between bucket edges)."""
        if age <= polled_age:
            return 0.0
        if self.runs.cdf(polled_age) > 0.999:
            return self.chance(polled_age, age) * (age - polled_age) / 2
        before = self.cdf(polled_age)
        lo, hi = bisect.bisect_right(EDGES, polled_age), bisect.bisect_left(EDGES, age)
        points = [polled_age, *EDGES[lo:hi], age]
        gained = [self.cdf(t) - before for t in points]
        area = sum((b - a) * (ga + gb) / 2 for a, b, ga, gb in
                   zip(points, points[1:], gained, gained[1:], strict=False))
        return area / (1 - before)

    def value(self, polled_age: float, age: float, scale: float) -> float:
        return self.chance(polled_age, age) + self.lag_so_far(polled_age, age) / scale


class PollPolicy:
    """Run-time distributions per model, from the histogram hash (`vr:durations`)."""

    def __init__(self, observed: Mapping[str, Sequence[float]] | None = None,
                 cache_hits: Mapping[str, float] | None = None) -> None:
        self.observed = {model: list(counts) for model, counts in (observed or {}).items()}
        self.cache_hits = dict(cache_hits or {})
        self._clear()

    @classmethod
    def from_fields(cls, raw: Mapping[str, str]) -> PollPolicy:
        return cls(parse_counts(raw), parse_cache_hits(raw))

    def _clear(self) -> None:
        self._cache: dict[str, Durations] = {}
        self._runtimes: dict[str, RunTimes] = {}
        self._mixture: RunTimes | None = None

    def learn(self, field: str) -> None:
        """Count one finished run (a `learn_field`) at once, before the next reload from Redis."""
        model, _, bucket = field.rpartition("\t")
        if bucket == CACHE_FIELD:
            self.cache_hits[model] = self.cache_hits.get(model, 0.0) + 1
        elif bucket.isdigit() and int(bucket) < BUCKETS:
            self.observed.setdefault(model, [0.0] * BUCKETS)[int(bucket)] += 1
        self._clear()

    def durations(self, model: str) -> Durations:
        """The model's real runs: its histogram, after a prior that fades as runs are seen and
        moves to where they are (their median) from where the model's kind suggests."""
        if model not in self._cache:
            seen = self.observed.get(model) or [0.0] * BUCKETS
            n = sum(seen)
            median = Durations(seen).quantile(0.5) if n else prior_seconds(model)
            counts = prior_counts(median, prior_weight(n))
            for i, count in enumerate(seen):
                counts[i] += count
            self._cache[model] = Durations(counts)
        return self._cache[model]

    def runtimes(self, model: str) -> RunTimes:
        if model not in self._runtimes:
            hits = self.cache_hits.get(model, 0.0)
            runs = sum(self.observed.get(model, ()))
            self._runtimes[model] = RunTimes(self.durations(model), cache_share(hits, runs))
        return self._runtimes[model]

    def mixture(self) -> RunTimes:
        """Run times of every job seen, whatever its model, after a fading prior centred on a
        minute: what a job whose model is not known yet (never polled) probably takes."""
        if self._mixture is None:
            seen = sum(sum(counts) for counts in self.observed.values())
            runs = [0.0] * BUCKETS
            for observed in self.observed.values():
                for i, count in enumerate(observed):
                    runs[i] += count
            median = Durations(runs).quantile(0.5) if seen else DEFAULT_PRIOR
            counts = prior_counts(median, prior_weight(seen))
            for i, count in enumerate(runs):
                counts[i] += count
            hits = sum(self.cache_hits.values())
            self._mixture = RunTimes(Durations(counts), cache_share(hits, seen))
        return self._mixture

    def first_look_value(self, age: float, scale: float = math.inf) -> float:
        """The value of a first look at a job never polled, `age` seconds old: the chance that
        any job of its age has finished, weighed up by FIRST_LOOK_WEIGHT (a first look also
        tells the job's model, which makes every later poll of it count), plus its lag so far."""
        mix = self.mixture()
        chance = min(1.0, FIRST_LOOK_WEIGHT * mix.chance(0.0, age))
        return chance + mix.lag_so_far(0.0, age) / scale

    def next_delay(self, model: str, age: float, limits: Limits,
                   chance: float = ELIGIBLE_CHANCE) -> float:
        """Seconds after a poll at `age` until the job's chance of a change reaches `chance`."""
        dist = self.durations(model)
        done = dist.cdf(age)
        if done > 0.999:
            # Older than anything seen: back off in proportion to age.
            return clamp(age / 4, limits)
        target = dist.quantile(done + chance * (1 - done))
        return clamp(target - age, limits)

    def value(self, model: str, polled_age: float, age: float, scale: float = math.inf) -> float:
        """What polling now is worth for a job of `model`, alive when polled at `polled_age`."""
        return self.runtimes(model).value(polled_age, age, scale)


def clamp(delay: float, limits: Limits) -> float:
    return min(limits.max_interval, max(limits.min_interval, delay))
