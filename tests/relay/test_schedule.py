"""relay.schedule: model kinds, and poll delays that grow with a job's age within the limits."""

from __future__ import annotations

import pytest

from relay.schedule import (
    DEFAULT_PRIOR,
    PRIOR_SECONDS,
    Limits,
    PollPolicy,
    model_kind,
    prior_seconds,
)

LIMITS = Limits(not_found_grace=60.0, min_interval=1.0, max_interval=60.0)
POLICY = PollPolicy()


@pytest.mark.parametrize(
    ("model", "kind"),
    [
        ("fal:flux-schnell", "image"),
        ("fal:flux-pro/kontext", "image"),
        ("fal:nano-banana", "image"),
        ("fal:recraft-v3", "image"),
        ("fal:kling-v2.5", "video"),
        ("fal:kling-video/v2.5-turbo/pro/image-to-video", "video"),
        ("fal:wan-2.2/image-to-video", "video"),
        ("fal:veo3", "video"),
        ("fal:sora-2", "video"),
        ("fal:seedance-1-pro", "video"),
        ("elevenlabs:eleven_multilingual_v2", "speech"),
        ("elevenlabs:eleven_v3", "speech"),
        ("fal:minimax/speech-02-hd", "speech"),
        ("elevenlabs:music_v1", "music"),
        ("fal:stable-audio", "music"),
        ("FAL:FLUX-DEV", "image"),
    ],
)
def test_model_kind(model: str, kind: str) -> None:
    assert model_kind(model) == kind


@pytest.mark.parametrize("model", ["openai:gpt-4o", "", "provider:model"])
def test_unknown_model_kind(model: str) -> None:
    assert model_kind(model) is None
    assert prior_seconds(model) == DEFAULT_PRIOR


def test_prior_seconds_by_kind() -> None:
    assert prior_seconds("fal:flux-schnell") == PRIOR_SECONDS["image"]
    assert prior_seconds("fal:kling-v2.5") == PRIOR_SECONDS["video"]
    assert PRIOR_SECONDS["image"] < PRIOR_SECONDS["video"]


def test_young_fast_job_clamped_to_min_interval() -> None:
    limits = Limits(not_found_grace=60.0, min_interval=2.0, max_interval=60.0)
    assert POLICY.next_delay("fal:flux-schnell", "queued", 0.0, limits) == 2.0


def test_old_job_clamped_to_max_interval() -> None:
    assert POLICY.next_delay("fal:kling-v2.5", "processing", 86400.0, LIMITS) == 60.0


def test_young_video_polled_about_ten_times_over_its_run() -> None:
    assert POLICY.next_delay("fal:kling-v2.5", "processing", 5.0, LIMITS) == 12.0


@pytest.mark.parametrize("model", ["fal:flux-schnell", "fal:kling-v2.5", "unknown:model"])
def test_older_jobs_get_longer_delays(model: str) -> None:
    limits = Limits(not_found_grace=60.0, min_interval=0.1, max_interval=3600.0)
    ages = [0.0, 30.0, 120.0, 600.0, 3600.0]
    delays = [POLICY.next_delay(model, "processing", age, limits) for age in ages]
    assert delays == sorted(delays)
    assert delays[-1] > delays[0]


@pytest.mark.parametrize("age", [0.0, 1.0, 100.0, 1e6])
def test_delay_within_limits(age: float) -> None:
    for model in ("fal:flux-schnell", "fal:kling-v2.5", "elevenlabs:eleven_v3"):
        assert 1.0 <= POLICY.next_delay(model, "queued", age, LIMITS) <= 60.0
