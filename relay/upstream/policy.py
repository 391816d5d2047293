"""What to do after one poll: the pure decision, given the watch as leased and the result."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from typing import Any

from relay.events import NOT_FOUND, WATCH_EXPIRED, is_terminal
from relay.store.decision import Decision
from relay.times import parse_time
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
) -> Decision:
    """The write-back for one job: what to record, whether the watch ends, when to poll next."""
    base = Decision(job_id, token, observed_at=now, delay=limits.min_interval)
    if result.outcome is Outcome.ok and result.job is not None:
        decision = _observed(base, result.job, watch, now, limits, policy)
        if result.received is not None:  # v2: announce the job as Varg sent it
            decision = replace(decision, job=json.dumps(result.received, separators=(",", ":")))
    elif result.outcome is Outcome.not_found:
        decision = _not_found(base, watch, now, limits)
    else:
        failures = int(watch.get("failures") or 0) + 1
        delay = error_backoff(failures, limits)
        if result.outcome is Outcome.rate_limited and result.retry_after:
            delay = max(delay, result.retry_after)
        decision = replace(base, failures=failures, delay=delay)
    return _expire_if_overdue(decision, watch, now)


def _observed(
    base: Decision, job: dict[str, Any], watch: dict[str, str], now: float,
    limits: Limits, policy: PollPolicy,
) -> Decision:
    status, model = str(job["status"]), str(job["model"])
    created = parse_time(job["created_at"]) or float(watch.get("started_at") or now)
    learn = None
    if is_terminal(status) and watch.get("status") != status:
        # Teach the schedule how long this model takes (Varg's own times when it gives them).
        finished = parse_time(job.get("completed_at")) or now
        learn = learn_field(model, finished - created)
    return replace(
        base, status=status, job=json.dumps(job, separators=(",", ":")), model=model,
        created_at=job["created_at"], end_watch=is_terminal(status),
        delay=policy.next_delay(model, now - created, limits), learn=learn,
    )


def _not_found(base: Decision, watch: dict[str, str], now: float, limits: Limits) -> Decision:
    first = float(watch.get("first_404") or now)
    found = replace(base, first_404=first, failures=int(watch.get("failures") or 0))
    remaining = first + limits.not_found_grace - now
    if remaining <= 0:
        return replace(found, status=NOT_FOUND, end_watch=True)  # with the job last seen
    # A job id handed over before Varg has stored it shows up within seconds: look often.
    return replace(found, delay=min(remaining, max(limits.min_interval, (now - first) / 4 + 1)))


def _expire_if_overdue(decision: Decision, watch: dict[str, str], now: float) -> Decision:
    deadline = float(watch.get("deadline") or "inf")
    if not decision.end_watch and now >= deadline:
        return replace(decision, status=WATCH_EXPIRED, end_watch=True)
    return decision


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
