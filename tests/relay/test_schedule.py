"""relay.upstream.runtimes: model kinds, and poll delays that grow with a job's age."""

from __future__ import annotations

import pytest

from relay.upstream.runtimes import (
    BUCKETS,
    CACHE_HIT_SECONDS,
    DEFAULT_PRIOR,
    EDGES,
    FIRST_LOOK_WEIGHT,
    PRIOR_SECONDS,
    PRIOR_WEIGHT,
    Durations,
    Limits,
    PollPolicy,
    bucket_of,
    cache_share,
    learn_field,
    model_kind,
    parse_cache_hits,
    parse_counts,
    prior_counts,
    prior_seconds,
    prior_weight,
)

LIMITS = Limits(not_found_grace=60.0, min_interval=1.0, max_interval=60.0)


def EDGES_AT(i: int) -> float:
    return EDGES[i]


def EDGES_WIDTH(i: int) -> float:
    return EDGES[i] - EDGES[i - 1]
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
    assert values == sorted(values) and values[-1] > 0.9


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
    # 30 of 40 jobs seen end by 20 s (the prior, centred on their median, now counts for
    # 2 / 41 of a job)
    assert 0.74 < mixture.cdf(20.0) < 0.76
    assert mixture.cdf(400.0) > 0.95


def test_a_first_look_is_worth_more_than_the_bare_chance_but_at_most_one() -> None:
    policy = PollPolicy({"img": [0.0] * bucket_of(10.0) + [30.0]})
    chance = policy.mixture().cdf(9.0)
    assert 0 < chance < 0.5
    assert policy.first_look_value(9.0) == pytest.approx(FIRST_LOOK_WEIGHT * chance)
    assert policy.first_look_value(1e5) == 1.0


def runs(*seconds: float) -> list[float]:
    counts = [0.0] * BUCKETS
    for t in seconds:
        counts[bucket_of(t)] += 1
    return counts


def test_a_wrong_prior_is_corrected_after_a_handful_of_runs() -> None:
    """A "video" model that really takes 2-5 s: its prior (about two minutes) says it cannot
    be done at 8 s; after 5 runs the relay expects nearly every job done by then, and values a
    poll of one at 8 s (last polled at 4 s) as likely to find it done."""
    video = "fal:kling-v2.5"
    assert POLICY.durations(video).cdf(8.0) < 0.05
    assert POLICY.value(video, 4.0, 8.0) < 0.05
    learned = PollPolicy({video: runs(2.0, 3.0, 3.5, 4.0, 5.0)})
    assert learned.durations(video).cdf(8.0) > 0.9
    assert learned.value(video, 4.0, 8.0) > 0.5


def test_the_prior_fades_as_runs_are_seen() -> None:
    assert prior_weight(0) == PRIOR_WEIGHT
    assert prior_weight(1) == PRIOR_WEIGHT / 2
    assert prior_weight(9) == pytest.approx(PRIOR_WEIGHT / 10)


def test_cache_hits_do_not_drag_the_real_runs() -> None:
    """Ten runs of about 10 s and ten cache hits (done at once): the model's real runs still
    have a median near 10 s, while a look at a job half a second old is worth the chance it
    was one of the cache hits (half the jobs seen)."""
    policy = PollPolicy({"m": runs(*[10.0] * 10)}, {"m": 10.0})
    assert 8.0 < policy.durations("m").quantile(0.5) < 12.0
    share = policy.runtimes("m").cache_share
    assert share == pytest.approx(cache_share(10, 10)) == pytest.approx(11 / 24)
    early = policy.value("m", 0.0, CACHE_HIT_SECONDS)
    assert early == pytest.approx(share, abs=0.01)
    # Once past the cache hits, only the real runs count.
    assert policy.value("m", 2.0, 5.0) < 0.01


def test_cache_hits_come_from_their_own_field() -> None:
    raw = {"fal:a\tcache": "3", "fal:a\t5": "2", "fal:b\tcache": "1", "junk": "4"}
    assert parse_cache_hits(raw) == {"fal:a": 3.0, "fal:b": 1.0}
    assert parse_counts(raw)["fal:a"][5] == 2.0
    policy = PollPolicy.from_fields(raw)
    assert policy.cache_hits == {"fal:a": 3.0, "fal:b": 1.0}
    assert learn_field("fal:a", 0.1, cache_hit=True) == "fal:a\tcache"


def test_a_first_look_counts_cache_hits_of_any_model() -> None:
    """Never polled, its model unknown: a quarter of the jobs seen were cache hits, so at
    a second old it is worth at least that chance (weighed up by FIRST_LOOK_WEIGHT)."""
    policy = PollPolicy({"m": runs(*[10.0] * 30)}, {"m": 10.0})
    assert policy.first_look_value(CACHE_HIT_SECONDS) >= FIRST_LOOK_WEIGHT * 11 / 44 - 1e-9


def test_cache_hits_are_possible_until_jobs_show_otherwise() -> None:
    """Nothing seen yet: a quarter of jobs may be cache hits (a first look a second in is worth
    making); after 300 real runs and no hit, hardly any."""
    assert cache_share(0, 0) == 0.25
    assert PollPolicy().value("fal:kling-v2.5", 0.0, CACHE_HIT_SECONDS) >= 0.25
    seen = PollPolicy({"fal:kling-v2.5": runs(*[100.0] * 300)})
    assert seen.value("fal:kling-v2.5", 0.0, CACHE_HIT_SECONDS) < 0.01


def test_the_lag_so_far_is_the_area_under_the_chance() -> None:
    """Runs spread evenly from one bucket edge near 10 s to one near 20 s (a cdf linear in
    between): a job alive at the first, polled at the second, finished surely, on average
    halfway."""
    first, last = bucket_of(10.0), bucket_of(20.0)
    start, end = EDGES[first], EDGES[last]
    spread = [0.0] * BUCKETS
    for i in range(first + 1, last + 1):
        spread[i] = 1000.0 * (EDGES[i] - EDGES[i - 1])
    times = PollPolicy({"m": spread}).runtimes("m")
    assert times.chance(start, end) == pytest.approx(1.0, abs=0.01)
    assert times.lag_so_far(start, end) == pytest.approx((end - start) / 2, rel=0.02)
    assert times.value(start, end, scale=5.0) == pytest.approx(1 + (end - start) / 10, rel=0.02)
