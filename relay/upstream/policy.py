"""What to do after one poll: the pure decision, given the watch as leased and the result."""

from __future__ import annotations

import json
import random
from typing import Any

from relay.events import NOT_FOUND, WATCH_EXPIRED, is_terminal
from relay.times import iso, parse_time
from relay.upstream.client import Outcome, PollResult
from relay.upstream.runtimes import Limits, PollPolicy, learn_field

ERROR_BACKOFF_CAP = 300.0  # an upstream in trouble is retried at least every 5 minutes


def error_backoff(failures: int, limits: Limits, rng: random.Random | None = None) -> float:
    """Exponential with ±20% jitter, from the minimum interval up to a cap (jitter included)."""
    base = limits.min_interval * 2.0 ** min(failures, 16)
    jittered = base * (1 + (rng or random).uniform(-0.2, 0.2))
    return max(limits.min_interval, min(ERROR_BACKOFF_CAP, jittered))


def decide(
    job_id: str, token: str, watch: dict[str, str], result: PollResult, now: float,
    limits: Limits, policy: PollPolicy,
) -> dict[str, Any]:
    """The write-back for one job: what to record, whether the watch ends, when to poll next."""
    decision: dict[str, Any] = {
        "job_id": job_id, "token": token, "status": None, "job": None, "end_watch": False,
        "first_404": "", "failures": 0, "observed_at": now, "observed_iso": iso(now),
        "last_polled_at": now, "delay": limits.min_interval,
    }
    if result.outcome is Outcome.ok and result.job is not None:
        _observed(decision, result.job, watch, now, limits, policy)
    elif result.outcome is Outcome.not_found:
        _not_found(decision, watch, now, limits)
    else:
        failures = int(watch.get("failures") or 0) + 1
        decision["failures"] = failures
        decision["delay"] = error_backoff(failures, limits)
        if result.outcome is Outcome.rate_limited and result.retry_after:
            decision["delay"] = max(decision["delay"], result.retry_after)
    _expire_if_overdue(decision, watch, now)
    return decision


def _observed(
    decision: dict[str, Any], job: dict[str, Any], watch: dict[str, str], now: float,
    limits: Limits, policy: PollPolicy,
) -> None:
    status, model = str(job["status"]), str(job["model"])
    decision.update(
        status=status, job=json.dumps(job, separators=(",", ":")), model=model,
        created_at=job["created_at"], end_watch=is_terminal(status),
    )
    created = parse_time(job["created_at"]) or float(watch.get("started_at") or now)
    decision["delay"] = policy.next_delay(model, now - created, limits)
    if is_terminal(status) and watch.get("status") != status:
        # Teach the schedule how long this model takes (Varg's own times when it gives them).
        finished = parse_time(job.get("completed_at")) or now
        decision["learn"] = learn_field(model, finished - created)


def _not_found(decision: dict[str, Any], watch: dict[str, str], now: float, limits: Limits) -> None:
    first = float(watch.get("first_404") or now)
    decision["first_404"] = first
    decision["failures"] = int(watch.get("failures") or 0)
    remaining = first + limits.not_found_grace - now
    if remaining <= 0:
        decision.update(status=NOT_FOUND, end_watch=True)  # poll.lua adds the job last seen
    else:
        # A job id handed over before Varg has stored it shows up within seconds: look often.
        decision["delay"] = min(remaining, max(limits.min_interval, (now - first) / 4 + 1))


def _expire_if_overdue(decision: dict[str, Any], watch: dict[str, str], now: float) -> None:
    deadline = float(watch.get("deadline") or "inf")
    if not decision["end_watch"] and now >= deadline:
        decision.update(status=WATCH_EXPIRED, end_watch=True)


# Tiers above any chance (which is at most 1): who is polled first when the budget is short.
FIRST_LOOK = 3.0  # a new subscription on a job already polled waits for its first status
OVERDUE = 2.0  # not polled for max_interval: longest-unpolled first, so no live job starves
SCHEDULED = 1.5  # a retry after an upstream error, or a look within the 404 grace


def poll_value(fields: dict[str, str], now: float, limits: Limits, policy: PollPolicy) -> float:
    """How much polling a due job now is worth; see relay/upstream/runtimes.py."""
    started = float(fields.get("started_at") or now)
    last = float(fields.get("last_polled_at") or 0)
    if not last:
        # Its model is not known until the first poll: with budget to spare it is polled at
        # once (any due job is); when short, when jobs of its age have likely finished.
        if now - started >= limits.max_interval:
            return OVERDUE + (now - started) / 1e6
        return policy.first_look_value(now - started)
    if fields.get("urgent"):
        return FIRST_LOOK
    if now - last >= limits.max_interval:
        return OVERDUE + (now - last) / 1e6
    if fields.get("first_404") or int(fields.get("failures") or 0):
        return SCHEDULED
    created = parse_time(fields.get("created_at")) or started
    return policy.value(fields.get("model") or "", last - created, now - created)


def rank(candidates: list[tuple[str, dict[str, str]]], now: float, limits: Limits,
         policy: PollPolicy) -> list[str]:
    """Due job ids, most valuable first."""
    valued = [(poll_value(fields, now, limits, policy), job_id) for job_id, fields in candidates]
    return [job_id for _, job_id in sorted(valued, key=lambda pair: -pair[0])]
