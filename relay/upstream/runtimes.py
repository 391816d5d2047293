"""When a job is worth polling: spend the upstream budget where a change is likely.

Each model has a distribution of run times (from `created_at` to a terminal status): a prior
by kind of model (images take seconds, speech tens of seconds, video minutes) blended with a
histogram of what the relay has seen, kept in Redis as counts in log-spaced buckets.

The value of polling a job now is the chance that it finished since it was last polled, at age
`a`, given that it had not:

    value = (F(age now) - F(a)) / (1 - F(a))

Workers lease the due jobs of highest value first (`rank` in relay/upstream/policy.py), so a short
budget goes where a change is most likely. A job becomes due (a candidate) once its value
reaches ELIGIBLE_CHANCE, so a generous budget buys lower lag without polling jobs that are
certainly still running.
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
PRIOR_WEIGHT = 5.0  # the prior counts as this many observed jobs
PRIOR_SPREAD = 0.6  # standard deviation of ln(run time) in the prior
ELIGIBLE_CHANCE = 0.02  # a job is not polled before its value reaches this
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


def prior_counts(median: float) -> list[float]:
    """A log-normal around `median`, spread over the buckets, worth PRIOR_WEIGHT jobs."""
    def cdf(t: float) -> float:
        return 0.5 * (1 + math.erf(math.log(t / median) / (PRIOR_SPREAD * math.sqrt(2))))

    cdfs = [cdf(edge) for edge in EDGES[:-1]] + [1.0]
    masses = [b - a for a, b in zip([0.0, *cdfs[:-1]], cdfs, strict=True)]
    return [PRIOR_WEIGHT * m for m in masses]


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


def learn_field(model: str, seconds: float) -> str:
    return f"{model}\t{bucket_of(seconds)}"


class PollPolicy:
    def __init__(self, observed: Mapping[str, Sequence[float]] | None = None) -> None:
        self.observed = dict(observed or {})
        self._cache: dict[str, Durations] = {}
        self._mixture: Durations | None = None

    def mixture(self) -> Durations:
        """Run times of every job seen, whatever its model, after a prior worth PRIOR_WEIGHT
        jobs: what a job whose model is not known yet (never polled) probably takes."""
        if self._mixture is None:
            counts = prior_counts(DEFAULT_PRIOR)
            for seen in self.observed.values():
                for i, count in enumerate(seen):
                    counts[i] += count
            self._mixture = Durations(counts)
        return self._mixture

    def first_look_value(self, age: float) -> float:
        """The chance a job never polled, `age` seconds old, has finished, weighed up by
        FIRST_LOOK_WEIGHT: a first look also tells the job's model, which makes every later
        poll of it count."""
        return min(1.0, FIRST_LOOK_WEIGHT * self.mixture().cdf(age))

    def durations(self, model: str) -> Durations:
        if model not in self._cache:
            counts = prior_counts(prior_seconds(model))
            for i, seen in enumerate(self.observed.get(model, ())):
                counts[i] += seen
            self._cache[model] = Durations(counts)
        return self._cache[model]

    def next_delay(self, model: str, age: float, limits: Limits,
                   chance: float = ELIGIBLE_CHANCE) -> float:
        """Seconds after a poll at `age` until the job's value reaches `chance`."""
        dist = self.durations(model)
        done = dist.cdf(age)
        if done > 0.999:
            # Older than anything seen: back off in proportion to age.
            return clamp(age / 4, limits)
        target = dist.quantile(done + chance * (1 - done))
        return clamp(target - age, limits)

    def value(self, model: str, polled_age: float, age: float) -> float:
        """The chance that a job alive when polled at `polled_age` has finished by `age`."""
        dist = self.durations(model)
        before = dist.cdf(polled_age)
        if before > 0.999:
            # Older than anything seen: the histogram says nothing, so wait counts.
            return min(1.0, (age - polled_age) / max(age, 1e-9))
        return max(0.0, (dist.cdf(age) - before) / (1 - before))


def clamp(delay: float, limits: Limits) -> float:
    return min(limits.max_interval, max(limits.min_interval, delay))
