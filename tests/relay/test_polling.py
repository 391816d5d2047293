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
    decide,
    error_backoff,
    poll_value,
    rank,
)
from relay.upstream.runtimes import Limits, PollPolicy, bucket_of

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
    assert d.created_at == CREATED
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
    assert d.delay == POLICY.next_delay("fal:kling-v2.5", 300.0, LIMITS)
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


def test_repeat_terminal_teaches_nothing() -> None:
    assert run(ok("completed"), {"status": "completed"}).learn is None


# --- ranking due jobs -----------------------------------------------------------------------


def polled(model: str, created_ago: float, polled_ago: float, **extra: str) -> dict[str, str]:
    """Watch fields of a job created `created_ago` s before NOW, last polled `polled_ago` ago."""
    return {"status": "processing", "model": model, "created_at": "",
            "started_at": str(NOW - created_ago), "last_polled_at": str(NOW - polled_ago),
            "polls": "3", "first_404": "", "failures": "0", "urgent": "", **extra}


def never_polled(age: float) -> dict[str, str]:
    return {"status": "", "last_polled_at": "", "polls": "", "started_at": str(NOW - age)}


def test_a_job_never_polled_is_worth_the_chance_any_job_of_its_age_finished() -> None:
    """Its model is unknown until the first poll: the mixture of every model seen counts."""
    images = PollPolicy({"fal:flux-schnell": [0.0] * bucket_of(10.0) + [100.0]})
    assert poll_value(never_polled(0.0), NOW, LIMITS, images) == 0.0
    young, old = (poll_value(never_polled(age), NOW, LIMITS, images) for age in (5.0, 30.0))
    assert 0.0 <= young < old <= 1.0
    assert old > 0.9  # nearly every job seen had finished by 30 s


def test_a_job_never_polled_for_max_interval_is_overdue() -> None:
    assert poll_value(never_polled(61.0), NOW, LIMITS, POLICY) > OVERDUE


def test_a_fresh_image_outranks_a_job_never_polled_only_when_it_likely_finished() -> None:
    images = PollPolicy({"fal:flux-schnell": [0.0] * bucket_of(10.0) + [100.0]})
    likely = polled("fal:flux-schnell", 20, 8)  # polled at 12 s, now 20 s old
    jobs = [("new", never_polled(1.0)), ("likely", likely)]
    assert rank(jobs, NOW, LIMITS, images) == ["likely", "new"]


def test_a_new_subscription_on_a_watched_job_comes_first() -> None:
    urgent = polled("fal:kling-v2.5", 30, 2, urgent="1")
    assert poll_value(urgent, NOW, LIMITS, POLICY) == FIRST_LOOK


def test_a_job_unpolled_for_max_interval_outranks_any_chance() -> None:
    stale = polled("fal:kling-v2.5", 100, 61)
    likely = polled("fal:flux-schnell", 30, 20)  # an image at 30 s has surely finished
    assert poll_value(likely, NOW, LIMITS, POLICY) <= 1.0
    assert poll_value(stale, NOW, LIMITS, POLICY) > OVERDUE
    assert rank([("likely", likely), ("stale", stale)], NOW, LIMITS, POLICY) == ["stale", "likely"]


def test_when_all_are_overdue_the_longest_unpolled_goes_first() -> None:
    jobs = [("a", polled("m", 500, 70)), ("b", polled("m", 500, 200)), ("c", polled("m", 500, 90))]
    assert rank(jobs, NOW, LIMITS, POLICY) == ["b", "c", "a"]


def test_error_retries_and_404_looks_keep_their_schedule() -> None:
    retry = polled("fal:kling-v2.5", 30, 5, failures="2")
    grace = polled("", 10, 3, first_404=str(NOW - 10), status="")
    assert poll_value(retry, NOW, LIMITS, POLICY) == SCHEDULED
    assert poll_value(grace, NOW, LIMITS, POLICY) == SCHEDULED


def test_due_jobs_are_ranked_by_the_chance_they_changed() -> None:
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
    old = polled("fal:flux-schnell", 1, 1, created_at="2026-02-13T10:04:48Z")  # 12 s old
    young = polled("fal:flux-schnell", 1, 1)  # 1 s old by the watch's start
    assert poll_value(old, NOW, LIMITS, POLICY) > poll_value(young, NOW, LIMITS, POLICY)
