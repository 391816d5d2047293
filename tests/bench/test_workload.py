"""The benchmark's workload generator: seeded, the issue's mix, scaled in time."""

from __future__ import annotations

from collections import Counter

import pytest

from bench import workload


def test_same_seed_same_schedule() -> None:
    first = workload.steady(seed=3, rate=0.5, warmup=100, measure=200, scale=0.1)
    again = workload.steady(seed=3, rate=0.5, warmup=100, measure=200, scale=0.1)
    other = workload.steady(seed=4, rate=0.5, warmup=100, measure=200, scale=0.1)
    assert first == again
    assert first != other


def test_mix_proportions_and_failures() -> None:
    jobs = workload.burst(seed=1, size=5000, scale=1.0).jobs
    kinds = Counter(job.kind for job in jobs)
    assert kinds["image"] / len(jobs) == pytest.approx(0.4, abs=0.03)
    assert kinds["speech"] / len(jobs) == pytest.approx(0.2, abs=0.03)
    assert kinds["video"] / len(jobs) == pytest.approx(0.4, abs=0.03)
    assert sum(job.failed for job in jobs) / len(jobs) == pytest.approx(0.05, abs=0.015)


def test_scaling_shrinks_time_but_not_shape() -> None:
    unscaled = workload.steady(seed=9, rate=0.5, warmup=60, measure=120, scale=1.0)
    scaled = workload.steady(seed=9, rate=0.5, warmup=60, measure=120, scale=0.1)
    assert len(scaled.jobs) == len(unscaled.jobs)
    for slow, fast in zip(unscaled.jobs, scaled.jobs, strict=True):
        assert fast.duration == pytest.approx(slow.duration * 0.1)
        assert fast.arrival == pytest.approx(slow.arrival * 0.1)
        assert 0.1 <= fast.processing_at / fast.duration <= 0.2
    videos = [job.duration for job in scaled.jobs if job.kind == "video"]
    assert 6.0 <= min(videos) and max(videos) <= 30.0


def test_only_the_measure_window_is_measured() -> None:
    schedule = workload.steady(seed=2, rate=0.5, warmup=100, measure=200, scale=0.1)
    arrivals = [job.arrival for job in schedule.measured]
    assert arrivals and min(arrivals) >= 10.0 and max(arrivals) < 30.0
    # Poisson at 0.5 jobs/s over 200 unscaled seconds: about 100 jobs
    assert 60 <= len(arrivals) <= 140


def test_timeline_is_queued_processing_terminal() -> None:
    job = workload.burst(seed=5, size=1, scale=0.1).jobs[0]
    statuses = [step["status"] for step in job.timeline()]
    assert statuses == ["queued", "processing", job.final_status]


def test_everyday_is_a_few_jobs_on_wrongly_primed_models_with_cache_hits() -> None:
    """The issue's case: ~0.4 jobs/s, half a "video" model taking 3-15 s (a quarter of those
    cache hits, done within a second and never `processing`), half an "image" model 1-3 s."""
    jobs = [job for seed in range(200) for job in workload.everyday(seed, 1.0).jobs]
    videos = [job for job in jobs if job.model == "fal:kling-v2.5"]
    images = [job for job in jobs if job.model == "fal:flux-schnell"]
    assert len(videos) / len(jobs) == pytest.approx(0.5, abs=0.02)
    hits = [job for job in videos if job.cache_hit]
    assert len(hits) / len(videos) == pytest.approx(0.25, abs=0.02)
    assert all(job.duration < 1.0 and not job.failed for job in hits)
    assert all(3.0 <= job.duration <= 15.0 for job in videos if not job.cache_hit)
    assert all(1.0 <= job.duration <= 3.0 for job in images)
    assert [step["status"] for step in hits[0].timeline()] == ["queued", "completed"]
    one = workload.everyday(7, 1.0)
    assert len(one.jobs) == 40 and one == workload.everyday(7, 1.0)
    assert 70 < one.jobs[-1].arrival < 130  # about 0.4 a second
