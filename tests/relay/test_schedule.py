"""relay.upstream.runtimes: model kinds, and poll delays that grow with a job's age."""

from __future__ import annotations

import pytest

from relay.upstream.runtimes import (
    BUCKETS,
    DEFAULT_PRIOR,
    FIRST_LOOK_WEIGHT,
    PRIOR_SECONDS,
    PRIOR_WEIGHT,
    Durations,
    Limits,
    PollPolicy,
    bucket_of,
    learn_field,
    model_kind,
    parse_counts,
    prior_counts,
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


def test_young_image_is_polled_soon() -> None:
    assert POLICY.next_delay("fal:flux-schnell", 0.0, LIMITS) < 10.0


def test_old_job_clamped_to_max_interval() -> None:
    assert POLICY.next_delay("fal:kling-v2.5", 86400.0, LIMITS) == 60.0


def test_young_video_waits_longer_than_young_image() -> None:
    video = POLICY.next_delay("fal:kling-v2.5", 1.0, LIMITS)
    image = POLICY.next_delay("fal:flux-schnell", 1.0, LIMITS)
    assert video > image


def test_polls_are_dense_near_the_typical_run_time() -> None:
    limits = Limits(60.0, 0.01, 3600.0)
    early = POLICY.next_delay("fal:kling-v2.5", 10.0, limits)
    typical = POLICY.next_delay("fal:kling-v2.5", 120.0, limits)
    assert typical < early


def test_a_larger_chance_is_reached_later() -> None:
    small = POLICY.next_delay("fal:kling-v2.5", 60.0, LIMITS, chance=0.02)
    large = POLICY.next_delay("fal:kling-v2.5", 60.0, LIMITS, chance=0.3)
    assert large > small


def test_value_grows_with_time_since_the_last_poll() -> None:
    values = [POLICY.value("fal:flux-schnell", 5.0, 5.0 + wait) for wait in (0, 2, 5, 20, 60)]
    assert values[0] == 0.0
    assert values == sorted(values) and values[-1] > 0.99


def test_value_is_the_chance_of_finishing_since_the_last_poll() -> None:
    dist = POLICY.durations("fal:flux-schnell")
    expected = (dist.cdf(12.0) - dist.cdf(8.0)) / (1 - dist.cdf(8.0))
    assert POLICY.value("fal:flux-schnell", 8.0, 12.0) == pytest.approx(expected)


def test_an_image_is_worth_more_than_a_video_after_the_same_wait() -> None:
    """The same 5 s since the last poll: an image near its typical run time has likely
    finished; a video of the same age has hardly started."""
    image = POLICY.value("fal:flux-schnell", 8.0, 13.0)
    assert image > 5 * POLICY.value("fal:kling-v2.5", 8.0, 13.0)


def test_value_past_every_seen_run_time_grows_with_the_wait() -> None:
    assert 0 < POLICY.value("fal:flux-schnell", 1e4, 1e4 + 10) < POLICY.value(
        "fal:flux-schnell", 1e4, 1e4 + 1000) <= 1.0


@pytest.mark.parametrize("age", [0.0, 1.0, 100.0, 1e6])
def test_delay_within_limits(age: float) -> None:
    for model in ("fal:flux-schnell", "fal:kling-v2.5", "unknown:model"):
        for chance in (0.01, 0.05, 0.5):
            assert 1.0 <= POLICY.next_delay(model, age, LIMITS, chance) <= 60.0


def test_prior_counts_weigh_prior_weight() -> None:
    counts = prior_counts(10.0)
    assert len(counts) == BUCKETS
    assert sum(counts) == pytest.approx(PRIOR_WEIGHT)
    assert max(range(BUCKETS), key=counts.__getitem__) == bucket_of(10.0)


def test_durations_cdf_and_quantile_invert() -> None:
    dist = Durations(prior_counts(30.0))
    for p in (0.1, 0.5, 0.9):
        assert dist.cdf(dist.quantile(p)) == pytest.approx(p, abs=1e-6)
    assert dist.cdf(0.0) == 0.0
    assert dist.cdf(1e9) == 1.0


def test_observed_run_times_move_the_schedule() -> None:
    learned = [0.0] * BUCKETS
    learned[bucket_of(2.0)] = 200.0  # this "video" model actually takes about 2 s
    policy = PollPolicy({"fal:kling-v2.5": learned})
    limits = Limits(60.0, 0.01, 3600.0)
    assert policy.next_delay("fal:kling-v2.5", 0.5, limits) < 3.0
    assert POLICY.next_delay("fal:kling-v2.5", 0.5, limits) > 3.0


def test_parse_counts_ignores_junk() -> None:
    raw = {"fal:a\t3": "4", "fal:a\t5": "1", "junk": "9", "fal:b\t999": "1"}
    counts = parse_counts(raw)
    assert list(counts) == ["fal:a"]
    assert counts["fal:a"][3] == 4.0 and counts["fal:a"][5] == 1.0


def test_learn_field_names_model_and_bucket() -> None:
    assert learn_field("fal:x", 10.0) == f"fal:x\t{bucket_of(10.0)}"


def test_the_mixture_sums_every_model_seen() -> None:
    seen = {"img": [0.0] * bucket_of(10.0) + [30.0], "vid": [0.0] * bucket_of(200.0) + [10.0]}
    mixture = PollPolicy(seen).mixture()
    # 30 of 45 (40 jobs seen plus a prior worth 5, centred on a minute) end by 20 s
    assert 0.6 < mixture.cdf(20.0) < 0.7
    assert mixture.cdf(400.0) > 0.95


def test_a_first_look_is_worth_more_than_the_bare_chance_but_at_most_one() -> None:
    policy = PollPolicy({"img": [0.0] * bucket_of(10.0) + [30.0]})
    chance = policy.mixture().cdf(9.0)
    assert 0 < chance < 0.5
    assert policy.first_look_value(9.0) == pytest.approx(FIRST_LOOK_WEIGHT * chance)
    assert policy.first_look_value(1e5) == 1.0
