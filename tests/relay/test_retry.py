"""relay.delivery.retry: the retry delay (jitter, floor, Retry-After) and Retry-After parsing."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from relay.delivery.retry import (
    JITTER,
    OVERLOAD_FLOOR,
    RETRY_AFTER_CAP,
    Failure,
    parse_retry_after,
    retry_delay,
)

SCHEDULE = (5.0, 300.0, 1800.0)
SERVER_ERROR = Failure(status_code=500)


@pytest.mark.parametrize("seed", range(20))
def test_schedule_delays_within_jitter(seed: int) -> None:
    rng = random.Random(seed)
    for failures, base in enumerate(SCHEDULE, start=1):
        delay = retry_delay(failures, SCHEDULE, SERVER_ERROR, rng)
        assert delay is not None
        assert base * (1 - JITTER) <= delay <= base * (1 + JITTER)


def test_jitter_spreads_delays() -> None:
    rng = random.Random(7)
    delays = [retry_delay(2, SCHEDULE, SERVER_ERROR, rng) or 0.0 for _ in range(200)]
    assert min(delays) < 300 * 0.9
    assert max(delays) > 300 * 1.1


def test_seeded_rng_is_reproducible() -> None:
    first = retry_delay(1, SCHEDULE, SERVER_ERROR, random.Random(3))
    assert first == retry_delay(1, SCHEDULE, SERVER_ERROR, random.Random(3))


def test_none_when_schedule_is_spent() -> None:
    assert retry_delay(len(SCHEDULE) + 1, SCHEDULE, SERVER_ERROR, random.Random(0)) is None
    assert retry_delay(len(SCHEDULE), SCHEDULE, SERVER_ERROR, random.Random(0)) is not None


def test_no_floor_after_a_plain_error() -> None:
    delay = retry_delay(1, SCHEDULE, SERVER_ERROR, random.Random(0))
    assert delay is not None and delay < OVERLOAD_FLOOR


@pytest.mark.parametrize(
    "failure", [Failure(timed_out=True), Failure(status_code=429)], ids=["timeout", "429"]
)
def test_floor_after_timeout_or_429(failure: Failure) -> None:
    assert retry_delay(1, SCHEDULE, failure, random.Random(0)) == OVERLOAD_FLOOR


def test_floor_does_not_shorten_long_delays() -> None:
    delay = retry_delay(3, SCHEDULE, Failure(timed_out=True), random.Random(0))
    assert delay is not None and delay >= 1800 * (1 - JITTER)


@pytest.mark.parametrize("code", [429, 503])
def test_retry_after_honoured_for_429_and_503(code: int) -> None:
    delay = retry_delay(1, SCHEDULE, Failure(status_code=code, retry_after=120.0), random.Random(0))
    assert delay == 120.0


@pytest.mark.parametrize("code", [429, 503])
def test_retry_after_clamped_at_cap(code: int) -> None:
    failure = Failure(status_code=code, retry_after=10 * RETRY_AFTER_CAP)
    assert retry_delay(1, SCHEDULE, failure, random.Random(0)) == RETRY_AFTER_CAP


@pytest.mark.parametrize("code", [500, 502, 404, None])
def test_retry_after_ignored_for_other_answers(code: int | None) -> None:
    delay = retry_delay(1, SCHEDULE, Failure(status_code=code, retry_after=120.0),
                        random.Random(0))
    assert delay is not None and delay <= 5 * (1 + JITTER)


def test_short_retry_after_does_not_shorten_the_schedule() -> None:
    delay = retry_delay(2, SCHEDULE, Failure(status_code=503, retry_after=1.0), random.Random(0))
    assert delay is not None and delay >= 300 * (1 - JITTER)


@pytest.mark.parametrize(("value", "seconds"), [("120", 120.0), (" 7 ", 7.0), ("0", 0.0)])
def test_parse_retry_after_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after(value, now=1_000_000.0) == seconds


def test_parse_retry_after_http_date() -> None:
    moment = datetime(2015, 10, 21, 7, 28, tzinfo=UTC)
    value = format_datetime(moment, usegmt=True)
    assert value == "Wed, 21 Oct 2015 07:28:00 GMT"
    assert parse_retry_after(value, now=moment.timestamp() - 90) == 90.0


def test_parse_retry_after_past_date_is_zero() -> None:
    moment = datetime(2015, 10, 21, 7, 28, tzinfo=UTC)
    value = format_datetime(moment, usegmt=True)
    assert parse_retry_after(value, now=moment.timestamp() + 90) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", "5 apples", "Wed, 99 Foo"])
def test_parse_retry_after_garbage(value: str | None) -> None:
    assert parse_retry_after(value, now=1_000_000.0) is None
