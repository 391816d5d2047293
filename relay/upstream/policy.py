"""What to do after one poll: the pure decision, given the watch as leased and the result."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Any, TypeVar

from relay.events import NOT_FOUND, WATCH_EXPIRED, is_terminal
from relay.store.decision import Decision
from relay.times import iso, parse_time
from relay.upstream.client import Outcome, PollResult
from relay.upstream.runtimes import Limits, PollPolicy, learn_field

T = TypeVar("T")
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
    created = _created(job, watch, now)
    learn = None
    if is_terminal(status) and watch.get("status") != status:
        # Teach the schedule how long this model takes, by Varg's own times when it gives
        # them (so a run is counted right even when the relay saw its end late).
        finished = _finished(job, watch, now)
        learn = learn_field(model, finished - created, cache_hit=_cache_hit(job))
    return replace(
        base, status=status, job=json.dumps(job, separators=(",", ":")), model=model,
        created_at=iso(created), end_watch=is_terminal(status),
        delay=policy.next_delay(model, now - created, limits), learn=learn,
    )


def varg_span(text: Any) -> tuple[float, float] | None:
    """The span a Varg time stands for: the second it names, unless it gives a fraction."""
    at = parse_time(text) if isinstance(text, str) else None
    if at is None:
        return None
    return (at, at) if "." in text else (at, at + 1.0)


def _created(job: dict[str, Any], watch: dict[str, str], now: float) -> float:
    """When Varg created the job: within the second its `created_at` names, and not after
    the relay was told of it. A second is most of a fast job's run."""
    registered = float(watch.get("started_at") or now)
    span = varg_span(job["created_at"])
    if span is None:
        return registered
    lo, hi = span
    return (lo + max(lo, min(hi, registered))) / 2


def _finished(job: dict[str, Any], watch: dict[str, str], now: float) -> float:
    """When the job finished: within the second its `completed_at` names, after the last
    poll that saw it running and before this one (when the clocks agree on that)."""
    span = varg_span(job.get("completed_at"))
    if span is None:
        return now
    lo, hi = span
    after, before = max(lo, float(watch.get("last_polled_at") or 0)), min(hi, now)
    return (after + before) / 2 if after <= before else (lo + hi) / 2


def _cache_hit(job: dict[str, Any]) -> bool:
    cache = job.get("cache")
    return isinstance(cache, dict) and cache.get("hit") is True


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


class Tier(IntEnum):
    """Who is polled first when the budget is short; within a tier, by `priority`'s second
    part."""

    VALUE = 0  # what a poll is worth (relay/upstream/runtimes.py)
    SCHEDULED = 1  # a retry after an upstream error, or a look within the 404 grace
    OVERDUE = 2  # not polled for max_interval: longest-unpolled first, so no live job starves
    FIRST_LOOK = 3  # a new subscription on a job already polled waits for its first status


FIRST_LOOK, OVERDUE, SCHEDULED = Tier.FIRST_LOOK, Tier.OVERDUE, Tier.SCHEDULED
Priority = tuple[Tier, float]


def priority(fields: dict[str, str], now: float, limits: Limits, policy: PollPolicy,
             scale: float = math.inf) -> Priority:
    """How urgent polling a candidate is: its tier, then its value within the tier. `scale`
    is the time the budget needs to poll every candidate once (how much a wait counts)."""
    started = float(fields.get("started_at") or now)
    last = float(fields.get("last_polled_at") or 0)
    if not last:
        # Its model is not known until the first poll: with budget to spare it is polled at
        # once (any candidate is); when short, when jobs of its age have likely finished.
        if now - started >= limits.max_interval:
            return Tier.OVERDUE, now - started
        return Tier.VALUE, policy.first_look_value(now - started, scale)
    if fields.get("urgent"):
        return Tier.FIRST_LOOK, 0.0
    if now - last >= limits.max_interval:
        return Tier.OVERDUE, now - last
    if fields.get("first_404") or int(fields.get("failures") or 0):
        return Tier.SCHEDULED, 0.0
    created = parse_time(fields.get("created_at")) or started
    return Tier.VALUE, policy.value(fields.get("model") or "", last - created, now - created,
                                    scale)


# vr:firstlooks: each owner's last first look, and the last poll of each kind (lease.lua).
RESUBSCRIBED, OTHER = "tier", "other"


@dataclass(frozen=True)
class FirstLooks:
    """When each owner last had a first look leased, when a first look of an already polled
    job (the top tier) was last leased, and when any other job was."""

    by_owner: Mapping[str, float]
    tier_at: float = 0.0
    other_at: float = 0.0

    @classmethod
    def from_fields(cls, raw: Mapping[str, str]) -> FirstLooks:
        times = {k: float(v) for k, v in raw.items()}
        tier, other = times.pop(RESUBSCRIBED, 0.0), times.pop(OTHER, 0.0)
        return cls(times, tier, other)


NO_LOOKS = FirstLooks({})
Candidate = tuple[str, dict[str, str]]


def rank(candidates: list[Candidate], now: float, limits: Limits, policy: PollPolicy,
         scale: float = math.inf, looks: FirstLooks = NO_LOOKS) -> list[str]:
    """Candidate job ids, first to poll first (see `ranked`)."""
    return [job_id for job_id, _ in ranked(candidates, now, limits, policy, scale, looks)]


def ranked(candidates: list[Candidate], now: float, limits: Limits, policy: PollPolicy,
           scale: float = math.inf, looks: FirstLooks = NO_LOOKS) -> list[tuple[str, Priority]]:
    """Candidates with their priorities, first to poll first.

    First looks that a new subscription waits for (the top tier) are shared between owners in
    turn, least recently served first, and take at most every other poll while other jobs
    wait: a tenant re-subscribing its jobs over and over slows only itself. While the tier
    is in use, an owner with nothing in it gets its jobs never polled into it. Equal
    priorities (to 4 places: a prior sure that nothing can have changed yet) go longest
    unpolled first, as round robin would.
    """
    tier = first_look_tier(candidates)
    in_tier = {job_id for job_id, _ in tier}
    valued = [(priority(f, now, limits, policy, scale), _since(f), j) for j, f in candidates
              if j not in in_tier]
    valued.sort(key=lambda row: (-row[0][0], -round(row[0][1], 4), row[1]))
    others = [(job_id, p) for p, _, job_id in valued]
    firsts = [(job_id, (Tier.FIRST_LOOK, 0.0)) for job_id in by_owner_in_turn(tier, looks)]
    if looks.tier_at > looks.other_at:
        return alternate(others, firsts)
    return alternate(firsts, others)


def first_look_tier(candidates: list[Candidate]) -> list[Candidate]:
    """Re-subscribed jobs (polled, marked urgent by the owner waiting), and while there are
    any, the jobs never polled of every owner without one."""
    tier = [(j, f) for j, f in candidates if f.get("urgent") and f.get("last_polled_at")]
    if not tier:
        return []
    waiting = {f["urgent"] for _, f in tier}
    return tier + [(j, f) for j, f in candidates if f.get("urgent") and
                   not f.get("last_polled_at") and f["urgent"] not in waiting]


def _since(fields: dict[str, str]) -> float:
    """When the job was last polled, or registered."""
    return float(fields.get("last_polled_at") or fields.get("started_at") or 0)


def by_owner_in_turn(tier: list[Candidate], looks: FirstLooks) -> list[str]:
    """Round robin by owner, least recently served first; an owner's own longest waiting
    first (re-subscriptions by their last poll, then jobs never polled by registration)."""
    queues: dict[str, list[tuple[float, str]]] = {}
    for job_id, fields in tier:
        since = float(fields.get("last_polled_at") or 0) or 1e12 + float(
            fields.get("started_at") or 0)
        queues.setdefault(fields["urgent"], []).append((since, job_id))
    owners = sorted(queues, key=lambda owner: (looks.by_owner.get(owner, 0.0), owner))
    turns = [[job_id for _, job_id in sorted(queues[owner])] for owner in owners]
    return alternate(*turns)


def alternate(*queues: list[T]) -> list[T]:
    """The first of each queue, then the second of each, and so on."""
    out: list[T] = []
    for i in range(max((len(q) for q in queues), default=0)):
        out += [q[i] for q in queues if i < len(q)]
    return out
