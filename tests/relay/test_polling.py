"""relay.upstream.policy: the write-back decided after one poll, without Redis or HTTP."""

from __future__ import annotations

import itertools
import json
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from relay.store.decision import Decision
from relay.times import parse_time
from relay.upstream.client import Outcome, PollResult
from relay.upstream.policy import (
    ERROR_BACKOFF_CAP,
    FIRST_LOOK,
    OVERDUE,
    SCHEDULED,
    FirstLooks,
    Tier,
    decide,
    error_backoff,
    priority,
    rank,
)
from relay.upstream.runtimes import BUCKETS, Limits, PollPolicy, bucket_of, learn_field

LIMITS = Limits(not_found_grace=60.0, min_interval=1.0, max_interval=60.0)
POLICY = PollPolicy()
NOW = datetime(2026, 2, 13, 10, 5, tzinfo=UTC).timestamp()
CREATED = "2026-02-13T10:00:00Z"


class Highest(random.Random):
    """Always the top of the jitter range."""

    def uniform(self, a: float, b: float) -> float:
        return b


class Lowest(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return a


def job(status: str = "processing", **extra: Any) -> dict[str, Any]:
    return {"job_id": "job_1", "status": status, "model": "fal:kling-v2.5",
            "created_at": CREATED, **extra}


def ok(status: str = "processing", **extra: Any) -> PollResult:
    return PollResult(Outcome.ok, job=job(status, **extra), status_code=200)


def run(result: PollResult, watch: dict[str, str] | None = None,
        now: float = NOW) -> Decision:
    return decide("job_1", "lease-token", watch or {}, result, now, LIMITS, POLICY)


def test_ok_records_status_and_compact_job() -> None:
    d = run(ok("processing", cache={"hit": False, "key": "sha256:x"}))
    assert d.status == "processing"
    assert d.end_watch is False
    assert d.job == json.dumps(job("processing", cache={"hit": False, "key": "sha256:x"}),
                                  separators=(",", ":"))
    assert " " not in d.job
    assert d.model == "fal:kling-v2.5"
    assert d.created_at == "2026-02-13T10:00:00.500Z"  # within the second Varg names
    assert d.failures == 0
    assert d.first_404 == ""
    assert (d.job_id, d.token) == ("job_1", "lease-token")
    assert d.observed_at == NOW
    lua = d.lua()
    assert lua["last_polled_at"] == NOW
    assert lua["observed_iso"] == "2026-02-13T10:05:00.000Z"
    assert (lua["event_type"], lua["terminal"]) == ("job.processing", False)


def test_ok_resets_failures() -> None:
    assert run(ok(), {"failures": "4"}).failures == 0


def test_ok_delay_follows_policy() -> None:
    d = run(ok())
    assert d.delay == POLICY.next_delay("fal:kling-v2.5", 299.5, LIMITS)
    assert LIMITS.min_interval <= d.delay <= LIMITS.max_interval


def test_age_falls_back_to_watch_start_when_created_at_is_unreadable() -> None:
    result = PollResult(Outcome.ok, job=job(created_at="yesterday"), status_code=200)
    d = run(result, {"started_at": str(NOW - 300)})
    assert d.delay == POLICY.next_delay("fal:kling-v2.5", 300.0, LIMITS)


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
def test_terminal_status_ends_watch(status: str) -> None:
    d = run(ok(status))
    assert d.status == status
    assert d.end_watch is True


def test_unknown_status_keeps_watching() -> None:
    d = run(ok("upscaling"))
    assert d.status == "upscaling"
    assert d.end_watch is False


def test_first_not_found_starts_grace() -> None:
    d = run(PollResult(Outcome.not_found, status_code=404))
    assert d.status is None
    assert d.end_watch is False
    assert d.first_404 == NOW
    assert LIMITS.min_interval <= d.delay <= LIMITS.not_found_grace


def test_not_found_within_grace_keeps_first_404() -> None:
    d = run(PollResult(Outcome.not_found, status_code=404), {"first_404": str(NOW - 50)})
    assert d.status is None
    assert d.end_watch is False
    assert d.first_404 == NOW - 50
    assert 0 < d.delay <= 10.0  # never sleeps past the end of the grace


def test_not_found_past_grace_ends_watch() -> None:
    watch = {"first_404": str(NOW - 61), "failures": "2"}
    d = run(PollResult(Outcome.not_found, status_code=404), watch)
    assert d.status == "not_found"
    assert d.end_watch is True
    assert d.job is None  # poll.lua announces the job as last seen (tests/relay/test_store.py)
    assert d.failures == 2


def test_not_found_past_grace_without_a_job_seen() -> None:
    d = run(PollResult(Outcome.not_found, status_code=404), {"first_404": str(NOW - 60)})
    assert d.status == "not_found"
    assert d.job is None


@pytest.mark.parametrize(
    "outcome", [Outcome.server_error, Outcome.timeout, Outcome.unauthorized, Outcome.malformed]
)
def test_error_counts_a_failure_and_keeps_watching(outcome: Outcome) -> None:
    d = run(PollResult(outcome), {"failures": "2", "status": "queued"})
    assert d.failures == 3
    assert d.status is None
    assert d.end_watch is False
    assert 8 * 0.8 <= d.delay <= 8 * 1.2  # min_interval * 2**3, ±20%


def test_errors_back_off_exponentially() -> None:
    delays = [run(PollResult(Outcome.server_error), {"failures": str(n)}).delay
              for n in range(6)]
    for shorter, longer in itertools.pairwise(delays):
        assert longer > shorter * 1.3


def test_error_backoff_is_capped() -> None:
    d = run(PollResult(Outcome.timeout), {"failures": "40"})
    assert d.failures == 41
    assert ERROR_BACKOFF_CAP * 0.8 <= d.delay <= ERROR_BACKOFF_CAP


def test_429_waits_at_least_retry_after() -> None:
    result = PollResult(Outcome.rate_limited, retry_after=45.0, status_code=429)
    d = run(result)
    assert d.failures == 1
    assert d.delay >= 45.0


def test_429_without_retry_after_backs_off() -> None:
    d = run(PollResult(Outcome.rate_limited, status_code=429))
    assert 1.0 <= d.delay <= 2.4


def test_watch_deadline_passed_expires() -> None:
    d = run(ok("processing"), {"deadline": str(NOW - 1)})
    assert d.status == "watch_expired"
    assert d.end_watch is True
    assert json.loads(d.job or "")["status"] == "processing"


def test_watch_deadline_passed_during_errors_expires_without_a_new_job() -> None:
    d = run(PollResult(Outcome.server_error), {"deadline": str(NOW)})
    assert d.status == "watch_expired"
    assert d.job is None  # poll.lua announces the job as last seen


def test_terminal_status_wins_over_deadline() -> None:
    d = run(ok("completed"), {"deadline": str(NOW - 1)})
    assert d.status == "completed"


def test_deadline_in_future_keeps_watching() -> None:
    d = run(ok("processing"), {"deadline": str(NOW + 1)})
    assert d.status == "processing"
    assert d.end_watch is False


def test_parse_time_utc() -> None:
    assert parse_time(CREATED) == datetime(2026, 2, 13, 10, tzinfo=UTC).timestamp()


def test_parse_time_offset() -> None:
    assert parse_time("2026-02-13T11:00:00+01:00") == parse_time(CREATED)
    half_past = datetime(2026, 2, 13, 10, 0, 0, 500_000, tzinfo=UTC).timestamp()
    assert parse_time("2026-02-13T10:00:00.500Z") == half_past


@pytest.fixture
def far_west_local_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "XYZ+07")  # POSIX: seven hours behind UTC
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("far_west_local_time")
def test_parse_time_without_offset_is_utc() -> None:
    assert parse_time("2026-02-13T10:00:00") == parse_time(CREATED)


@pytest.mark.parametrize("text", [None, "", "yesterday", "2026-13-45T00:00:00Z"])
def test_parse_time_garbage(text: str | None) -> None:
    assert parse_time(text) is None


@pytest.mark.parametrize("failures", [1, 2, 3, 5])
def test_error_backoff_doubles_within_jitter(failures: int) -> None:
    base = LIMITS.min_interval * 2**failures
    assert error_backoff(failures, LIMITS, Lowest()) == pytest.approx(base * 0.8)
    assert error_backoff(failures, LIMITS, Highest()) == pytest.approx(base * 1.2)


def test_error_backoff_cap_includes_jitter() -> None:
    assert error_backoff(20, LIMITS, Highest()) == ERROR_BACKOFF_CAP


def test_error_backoff_never_below_min_interval() -> None:
    limits = Limits(not_found_grace=60.0, min_interval=5.0, max_interval=60.0)
    assert error_backoff(0, limits, Lowest()) == 5.0


def test_error_backoff_huge_failure_count() -> None:
    assert error_backoff(10_000, LIMITS, random.Random(1)) <= ERROR_BACKOFF_CAP


def test_terminal_change_teaches_run_time() -> None:
    d = run(ok("completed"), {"status": "processing"})
    model, _, bucket = (d.learn or "").rpartition("\t")
    assert model == "fal:kling-v2.5"
    assert int(bucket) == bucket_of(300.0) or int(bucket) > 0


def test_a_run_is_learned_from_varg_s_times_even_when_seen_late() -> None:
    """Created 10:00:00, completed 10:00:04, seen at 10:05:00: the run took 4 s, not 300."""
    d = run(ok("completed", completed_at="2026-02-13T10:00:04Z"), {"status": "processing"})
    assert d.learn == learn_field("fal:kling-v2.5", 4.0)


def test_varg_s_whole_seconds_are_narrowed_by_what_the_relay_saw() -> None:
    """Created in the second 10:00:00 but registered with the relay at 10:00:00.2: created
    about 10:00:00.1. Completed in the second 10:00:01, last seen running at 10:00:01.6 and
    seen done at 10:00:01.8: finished about 10:00:01.7. The run: 1.6 s (whole seconds alone
    say 1 s, or 2 s: a fast model would be learned wrong by half)."""
    at = NOW - 300
    watch = {"status": "processing", "started_at": str(at + 0.2),
             "last_polled_at": str(at + 1.6)}
    result = ok("completed", completed_at="2026-02-13T10:00:01Z")
    d = decide("job_1", "t", watch, result, at + 1.8, LIMITS, POLICY)
    assert d.learn == learn_field("fal:kling-v2.5", 1.6)
    assert parse_time(d.created_at) == pytest.approx(at + 0.1)


def test_fractions_of_a_second_are_taken_as_given() -> None:
    result = ok("completed", created_at="2026-02-13T10:00:00.250Z",
                completed_at="2026-02-13T10:00:03.750Z")
    d = run(result, {"status": "processing"})
    assert d.learn == learn_field("fal:kling-v2.5", 3.5)
    assert d.created_at == "2026-02-13T10:00:00.250Z"


def test_a_cache_hit_is_counted_apart_from_real_runs() -> None:
    hit = ok("completed", completed_at=CREATED, cache={"hit": True, "key": "sha256:x"})
    assert run(hit, {"status": "queued"}).learn == "fal:kling-v2.5\tcache"
    miss = ok("completed", completed_at=CREATED, cache={"hit": False, "key": "sha256:x"})
    assert run(miss, {"status": "queued"}).learn == learn_field("fal:kling-v2.5", 0.0)


def test_repeat_terminal_teaches_nothing() -> None:
    assert run(ok("completed"), {"status": "completed"}).learn is None


# --- ranking candidates ---------------------------------------------------------------------


def polled(model: str, created_ago: float, polled_ago: float, **extra: str) -> dict[str, str]:
    """Watch fields of a job created `created_ago` s before NOW, last polled `polled_ago` ago."""
    return {"status": "processing", "model": model, "created_at": "",
            "started_at": str(NOW - created_ago), "last_polled_at": str(NOW - polled_ago),
            "polls": "3", "first_404": "", "failures": "0", "urgent": "", **extra}


def never_polled(age: float, owner: str = "") -> dict[str, str]:
    return {"status": "", "last_polled_at": "", "polls": "", "started_at": str(NOW - age),
            "urgent": owner}


IMAGES = PollPolicy({"fal:flux-schnell": [0.0] * bucket_of(10.0) + [100.0]})


def test_a_job_never_polled_is_worth_the_chance_any_job_of_its_age_finished() -> None:
    """Its model is unknown until the first poll: the mixture of every model seen counts."""
    assert priority(never_polled(0.0), NOW, LIMITS, IMAGES) == (Tier.VALUE, 0.0)
    young, old = (priority(never_polled(age), NOW, LIMITS, IMAGES)[1] for age in (5.0, 30.0))
    assert 0.0 <= young < old <= 1.0
    assert old > 0.9  # nearly every job seen had finished by 30 s


def test_a_job_never_polled_for_max_interval_is_overdue() -> None:
    assert priority(never_polled(61.0), NOW, LIMITS, POLICY) == (OVERDUE, 61.0)


def test_a_fresh_image_outranks_a_job_never_polled_only_when_it_likely_finished() -> None:
    likely = polled("fal:flux-schnell", 20, 8)  # polled at 12 s, now 20 s old
    jobs = [("new", never_polled(1.0)), ("likely", likely)]
    assert rank(jobs, NOW, LIMITS, IMAGES) == ["likely", "new"]


def test_a_new_subscription_on_a_watched_job_comes_first() -> None:
    urgent = polled("fal:kling-v2.5", 30, 2, urgent="owner_a")
    assert priority(urgent, NOW, LIMITS, POLICY) == (FIRST_LOOK, 0.0)
    stale = polled("fal:kling-v2.5", 100, 61)
    assert rank([("stale", stale), ("urgent", urgent)], NOW, LIMITS, POLICY) == [
        "urgent", "stale"]


def test_a_job_unpolled_for_max_interval_outranks_any_chance() -> None:
    stale = polled("fal:kling-v2.5", 100, 61)
    likely = polled("fal:flux-schnell", 30, 20)  # an image at 30 s has surely finished
    assert priority(likely, NOW, LIMITS, POLICY)[0] == Tier.VALUE
    assert priority(stale, NOW, LIMITS, POLICY) == (OVERDUE, pytest.approx(61.0))
    assert rank([("likely", likely), ("stale", stale)], NOW, LIMITS, POLICY) == ["stale", "likely"]


def test_when_all_are_overdue_the_longest_unpolled_goes_first() -> None:
    jobs = [("a", polled("m", 500, 70)), ("b", polled("m", 500, 200)), ("c", polled("m", 500, 90))]
    assert rank(jobs, NOW, LIMITS, POLICY) == ["b", "c", "a"]


def test_error_retries_and_404_looks_keep_their_schedule() -> None:
    retry = polled("fal:kling-v2.5", 30, 5, failures="2")
    grace = polled("", 10, 3, first_404=str(NOW - 10), status="")
    assert priority(retry, NOW, LIMITS, POLICY) == (SCHEDULED, 0.0)
    assert priority(grace, NOW, LIMITS, POLICY) == (SCHEDULED, 0.0)


def test_candidates_are_ranked_by_the_chance_they_changed() -> None:
    """An image past its typical run time beats a young video polled just as long ago,
    and a long wait beats a short one for the same model."""
    jobs = [
        ("video", polled("fal:kling-v2.5", 15, 5)),
        ("image_short_wait", polled("fal:flux-schnell", 10, 1)),
        ("image_long_wait", polled("fal:flux-schnell", 12, 5)),
    ]
    assert rank(jobs, NOW, LIMITS, POLICY) == ["image_long_wait", "image_short_wait", "video"]


def test_value_uses_varg_created_at_over_the_watch_start() -> None:
    """The job's own age counts, not how long the relay has watched it."""
    old = polled("fal:flux-schnell", 3, 1, created_at="2026-02-13T10:04:49Z")  # 11 s old
    young = polled("fal:flux-schnell", 3, 1)  # 3 s old by the watch's start
    assert priority(old, NOW, LIMITS, IMAGES) > priority(young, NOW, LIMITS, IMAGES)


def test_a_job_whose_prior_says_not_yet_is_still_a_candidate() -> None:
    """A video of 2 s, polled 1 s ago: its prior (minutes) puts its value near zero, but it is
    ranked, not left out: with budget to spare, every candidate is polled (lease.lua takes as
    many as the budget allows, best first)."""
    video = polled("fal:kling-v2.5", 2, 1)
    assert priority(video, NOW, LIMITS, POLICY) < (Tier.VALUE, 0.01)
    assert rank([("video", video)], NOW, LIMITS, POLICY) == ["video"]


def test_equal_values_go_longest_unpolled_first() -> None:
    """Two jobs a prior is sure cannot have finished: the one waiting longer goes first
    (round robin), so a wrong prior cannot starve one of them."""
    learned = PollPolicy({"slow": [0.0] * bucket_of(3000.0) + [500.0]})
    jobs = [("recent", polled("slow", 10, 2)), ("waiting", polled("slow", 10, 8))]
    assert [priority(f, NOW, LIMITS, learned)[1] for _, f in jobs] == pytest.approx([0, 0])
    assert rank(jobs, NOW, LIMITS, learned) == ["waiting", "recent"]


def test_a_long_wait_outranks_a_likely_change_when_the_budget_is_short() -> None:
    """The tail is bounded: a video (1-5 minutes) unpolled for 55 s has a modest chance of
    having finished but has likely built up lag; an image (about 10 s) polled 2 s ago likely
    finished just now. Without the wait counted (scale infinite) the image goes first; with a
    5 s round-robin cycle, the video."""
    spread = [0.0] * BUCKETS
    for i in range(bucket_of(60.0), bucket_of(300.0) + 1):
        spread[i] = 10.0
    policy = PollPolicy({"vid": spread, "img": [0.0] * bucket_of(10.0) + [100.0]})
    limits = Limits(not_found_grace=60.0, min_interval=1.0, max_interval=600.0)
    jobs = [("image", polled("img", 11, 2)), ("video", polled("vid", 150, 55))]
    assert rank(jobs, NOW, limits, policy) == ["image", "video"]
    assert rank(jobs, NOW, limits, policy, scale=5.0) == ["video", "image"]


def test_the_value_grows_with_the_time_since_the_last_poll() -> None:
    waits = [0.0, 2.0, 5.0, 10.0, 20.0]
    with_lag = [priority(polled("fal:kling-v2.5", 100, w), NOW, LIMITS, POLICY, 10.0)[1]
                for w in waits]
    chance_only = [priority(polled("fal:kling-v2.5", 100, w), NOW, LIMITS, POLICY)[1]
                   for w in waits]
    assert with_lag == sorted(with_lag) and with_lag[0] == 0.0
    assert all(a > b for a, b in zip(with_lag[1:], chance_only[1:], strict=True))
    # The lag term grows faster than the wait: doubling the wait more than doubles it.
    lag = [a - b for a, b in zip(with_lag, chance_only, strict=True)]
    assert lag[4] > 2 * lag[3] > 4 * lag[2]


# --- first looks, shared between owners -----------------------------------------------------


def resubscribed(owner: str, polled_ago: float) -> dict[str, str]:
    return polled("fal:kling-v2.5", 60, polled_ago, urgent=owner)


def test_first_looks_go_to_owners_in_turn_least_recently_served_first() -> None:
    """B has three re-subscribed jobs, A one; B was served a first look lately, A long ago:
    A's goes first, then B's, longest waiting first."""
    jobs = [("b1", resubscribed("b", 5)), ("b2", resubscribed("b", 9)),
            ("b3", resubscribed("b", 7)), ("a1", resubscribed("a", 1))]
    looks = FirstLooks({"a": NOW - 60, "b": NOW - 1})
    assert rank(jobs, NOW, LIMITS, POLICY, looks=looks) == ["a1", "b2", "b3", "b1"]


def test_an_owner_never_served_goes_before_any_served() -> None:
    jobs = [("b1", resubscribed("b", 5)), ("c1", resubscribed("c", 1))]
    assert rank(jobs, NOW, LIMITS, POLICY, looks=FirstLooks({"b": NOW - 600})) == ["c1", "b1"]


def test_while_first_looks_are_waited_for_another_owner_s_new_job_joins_them() -> None:
    """B floods re-subscriptions; A registers a job never polled. A has nothing in the top tier,
    so its new job joins it, in turn: it goes first (A was served least recently), though by
    value (age 0) it is worth nothing."""
    jobs = [("b1", resubscribed("b", 1)), ("b2", resubscribed("b", 2)),
            ("a_new", never_polled(0.0, owner="a"))]
    looks = FirstLooks({"a": NOW - 30, "b": NOW - 0.5})
    assert rank(jobs, NOW, LIMITS, POLICY, looks=looks)[0] == "a_new"


def test_a_new_job_stays_ranked_by_value_while_nobody_waits_for_a_first_look() -> None:
    jobs = [("new", never_polled(0.0, owner="a")), ("image", polled("fal:flux-schnell", 12, 4))]
    assert rank(jobs, NOW, LIMITS, POLICY, looks=FirstLooks({"a": NOW - 30})) == [
        "image", "new"]


def test_first_looks_take_every_other_poll_while_other_jobs_wait() -> None:
    """When the last lease was a first look of the top tier, another job goes next: a tenant
    re-subscribing its jobs cannot take the whole budget from everyone else's polls."""
    jobs = [("b1", resubscribed("b", 1)), ("b2", resubscribed("b", 2)),
            ("a_polled", polled("fal:flux-schnell", 12, 4)),
            ("a_other", polled("fal:flux-schnell", 11, 3))]
    tier_last = FirstLooks({"b": NOW - 1}, tier_at=NOW - 1, other_at=NOW - 2)
    assert rank(jobs, NOW, LIMITS, POLICY, looks=tier_last) == [
        "a_polled", "b2", "a_other", "b1"]
    other_last = FirstLooks({"b": NOW - 1}, tier_at=NOW - 2, other_at=NOW - 1)
    assert rank(jobs, NOW, LIMITS, POLICY, looks=other_last)[0] == "b2"


def test_first_looks_from_the_redis_hash() -> None:
    looks = FirstLooks.from_fields({"a": "10.5", "tier": "12.0", "other": "11.0"})
    assert looks == FirstLooks({"a": 10.5}, tier_at=12.0, other_at=11.0)
    assert FirstLooks.from_fields({}) == FirstLooks({})


def test_learned_runs_count_at_once() -> None:
    policy = PollPolicy()
    before = policy.durations("fal:kling-v2.5").cdf(3.0)
    for _ in range(5):
        policy.learn(learn_field("fal:kling-v2.5", 2.0))
    assert policy.durations("fal:kling-v2.5").cdf(3.0) > 0.8 > before
    assert sum(policy.observed["fal:kling-v2.5"]) == 5 and len(
        policy.observed["fal:kling-v2.5"]) == BUCKETS
