"""When to try a webhook again: one pure function, as svix does it."""

from __future__ import annotations

import random
from dataclasses import dataclass

JITTER = 0.2  # ±20% so that receivers recovering from an outage are not hit in lockstep
OVERLOAD_FLOOR = 30.0  # after a timeout or 429 the receiver is struggling: wait at least this
RETRY_AFTER_CAP = 3600.0  # a Retry-After beyond an hour is not trusted


@dataclass(frozen=True)
class Failure:
    status_code: int | None = None  # None: no response (timeout, refused, DNS)
    timed_out: bool = False
    retry_after: float | None = None  # seconds, from a 429's or 503's Retry-After


def retry_delay(
    failures: int,
    schedule: tuple[float, ...],
    failure: Failure,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds to wait after failed attempt number `failures`; None once the schedule is spent."""
    if failures > len(schedule):
        return None
    delay = schedule[failures - 1] * (1 + (rng or random).uniform(-JITTER, JITTER))
    if failure.timed_out or failure.status_code == 429:
        delay = max(delay, OVERLOAD_FLOOR)
    if failure.retry_after is not None and failure.status_code in (429, 503):
        delay = max(delay, min(failure.retry_after, RETRY_AFTER_CAP))
    return delay


def parse_retry_after(value: str | None, now: float) -> float | None:
    """`Retry-After` as seconds from now; it may be seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None
