"""relay.delivery.chain: what an attempt's result means for the delivery; the arq job timeout."""

from __future__ import annotations

import pytest

from relay.delivery.chain import MARGIN, classify, job_timeout
from relay.delivery.retry import JITTER, OVERLOAD_FLOOR
from relay.delivery.send import Attempt

SCHEDULE = (5.0, 300.0)


def attempt(
    status_code: int | None, retry_after: float | None = None, timed_out: bool = False
) -> Attempt:
    return Attempt(at=0.0, status_code=status_code, duration_ms=12, error=None,
                   response_body=None, retry_after=retry_after, timed_out=timed_out)


@pytest.mark.parametrize("code", [200, 201, 202, 204, 299])
def test_2xx_succeeds(code: int) -> None:
    assert classify(attempt(code), 1, SCHEDULE) == ("succeeded", None)


def test_2xx_succeeds_even_after_the_schedule() -> None:
    assert classify(attempt(200), 99, SCHEDULE) == ("succeeded", None)


def test_410_disables() -> None:
    assert classify(attempt(410), 1, SCHEDULE) == ("disabled", None)


@pytest.mark.parametrize("code", [400, 404, 500, 502, 301, 302, 199])
def test_other_answers_retry_on_schedule(code: int) -> None:
    outcome, delay = classify(attempt(code), 1, SCHEDULE)
    assert outcome == "retry"
    assert delay is not None and 5 * (1 - JITTER) <= delay <= 5 * (1 + JITTER)


def test_second_failure_uses_second_delay() -> None:
    _, delay = classify(attempt(500), 2, SCHEDULE)
    assert delay is not None and 300 * (1 - JITTER) <= delay <= 300 * (1 + JITTER)


def test_timeout_retries_after_floor() -> None:
    outcome, delay = classify(attempt(None, timed_out=True), 1, SCHEDULE)
    assert outcome == "retry"
    assert delay is not None and delay >= OVERLOAD_FLOOR


def test_refused_connection_retries() -> None:
    assert classify(attempt(None), 1, SCHEDULE)[0] == "retry"


def test_429_retry_after_honoured() -> None:
    _, delay = classify(attempt(429, retry_after=120.0), 1, SCHEDULE)
    assert delay is not None and delay >= 120.0


@pytest.mark.parametrize("code", [500, None, 429])
def test_failed_when_schedule_spent(code: int | None) -> None:
    assert classify(attempt(code), len(SCHEDULE) + 1, SCHEDULE) == ("failed", None)


def test_job_timeout_leaves_room_for_two_attempts() -> None:
    assert job_timeout(15.0) == 2 * 15.0 + 2 * MARGIN
    assert job_timeout(3.0) > 2 * 3.0

