"""Replay a schedule through the poll policy offline: no Redis, no HTTP, simulated time.

A fast stand-in for the real benchmark while tuning `relay/upstream/policy.py`: the same
arrivals, the same pure decisions (`rank`, `decide`), the budget as lease.lua counts it, and
round robin beside it. Lags are change -> noticed, unscaled seconds.

    python -m bench.offline [--arm steady|burst|everyday] [--seed 7]
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from bench import workload
from bench.lags import percentile
from relay.events import is_terminal
from relay.times import iso
from relay.upstream.client import Outcome, PollResult
from relay.upstream.policy import decide, rank
from relay.upstream.poller import TAIL_CYCLES
from relay.upstream.runtimes import Limits, PollPolicy

T0 = 1_800_000_000.0
RTT = 0.05  # unscaled seconds a poll takes (5 ms wall at x0.1)
WHOLE_SECONDS = False  # Varg's own resolution (the everyday arm's), else milliseconds


def varg_iso(at: float) -> str | None:
    if WHOLE_SECONDS:
        return (iso(float(int(at))) or "").replace(".000Z", "Z")
    return iso(at)


@dataclass
class Budget:
    """Unscaled requests a minute; the burst as the relay computes it from the budget the bench
    gives it (scaled: 2 s of budget at x0.1 is 20 unscaled seconds' worth)."""

    per_minute: int
    scale: float = 1.0
    tokens: float = 0.0
    at: float = 0.0

    @property
    def pace(self) -> float:
        return 61.0 / self.per_minute

    @property
    def burst(self) -> int:
        return max(1, int(self.per_minute / self.scale * 2 / 60))

    def allowance(self, now: float) -> int:
        self.tokens = min(self.burst, self.tokens + (now - self.at) / self.pace)
        self.at = now
        return int(self.tokens + 1e-6)

    def take(self, n: int) -> None:
        self.tokens -= n

    def next_token(self, now: float) -> float:
        return now + max(1e-3, (1 - self.tokens) * self.pace)


def job_json(spec: workload.JobSpec, now: float) -> dict[str, Any]:
    age = now - (T0 + spec.arrival)
    status = "queued"
    if age >= spec.processing_at and not spec.cache_hit:
        status = "processing"
    if age >= spec.duration:
        status = spec.final_status
    body: dict[str, Any] = {"job_id": spec.job_id, "status": status, "model": spec.model,
                            "created_at": varg_iso(T0 + spec.arrival),
                            "cache": {"hit": spec.cache_hit, "key": "k"}}
    if status in ("completed", "failed"):
        body["completed_at"] = varg_iso(T0 + spec.arrival + spec.duration)
    return body


def changes_of(spec: workload.JobSpec) -> list[tuple[str, float]]:
    out = [("queued", T0 + spec.arrival)]
    if spec.processing_at < spec.duration and not spec.cache_hit:
        out.append(("processing", T0 + spec.arrival + spec.processing_at))
    out.append((spec.final_status, T0 + spec.arrival + spec.duration))
    return out


@dataclass
class Relay:
    limits: Limits
    budget: Budget
    refresh: float = 100.0
    batch: int = 50
    counts: dict[str, float] = field(default_factory=dict)
    watches: dict[str, dict[str, str]] = field(default_factory=dict)
    due: dict[str, float] = field(default_factory=dict)
    noticed: dict[tuple[str, str], float] = field(default_factory=dict)
    polls: int = 0
    per_kind: dict[str, int] = field(default_factory=dict)
    trace: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.policy = PollPolicy()
        self.policy_at = -1e18

    def register(self, spec: workload.JobSpec, now: float) -> None:
        self.watches[spec.job_id] = {"started_at": str(now), "urgent": "owner", "status": "",
                                     "last_polled_at": "", "polls": "", "model": "",
                                     "created_at": "", "first_404": "", "failures": "0",
                                     "deadline": str(now + 7200)}
        self.due[spec.job_id] = now

    def pollable_at(self, job_id: str) -> float:
        """As common.lua `pollable_at` has it (no errors or leases here)."""
        last = self.watches[job_id]["last_polled_at"]
        at = self.due[job_id]
        return min(at, float(last) + self.limits.min_interval) if last else at

    def candidates(self, now: float) -> list[tuple[str, dict[str, str]]]:
        return [(j, self.watches[j]) for j in self.due if self.pollable_at(j) <= now]

    def next_due(self) -> float:
        return min((self.pollable_at(j) for j in self.due), default=float("inf"))

    def step(self, now: float, specs: dict[str, workload.JobSpec]) -> float:
        """One worker step at `now`; returns when the next step may happen."""
        if now - self.policy_at > self.refresh:
            self.policy = PollPolicy.from_fields({k: str(v) for k, v in self.counts.items()})
            self.policy_at = now
        found = self.candidates(now)
        if not found:
            return max(now + 0.001, min(self.next_due(), now + 2.5))
        allowance = self.budget.allowance(now)
        if allowance <= 0:
            return self.budget.next_token(now)
        scale = TAIL_CYCLES * len(found) * 60.0 / self.budget.per_minute
        best = rank(found, now, self.limits, self.policy, scale)[: min(allowance, self.batch)]
        self.budget.take(len(best))
        seen_at = now + RTT / 2
        done = now + RTT
        for job_id in best:
            spec = specs[job_id]
            body = job_json(spec, seen_at)
            self.polls += 1
            if spec.measured:
                self.per_kind[spec.kind] = self.per_kind.get(spec.kind, 0) + 1
                self.trace.setdefault(job_id, []).append(round(seen_at - T0 - spec.arrival, 1))
            self.noticed.setdefault((job_id, body["status"]), seen_at)
            result = PollResult(Outcome.ok, job=body, status_code=200)
            fields = self.watches[job_id]
            d = decide(job_id, "t", fields, result, done, self.limits, self.policy)
            self.apply(job_id, fields, d, done)
        return done

    def apply(self, job_id: str, fields: dict[str, str], d: Any, now: float) -> None:
        fields.pop("urgent", None)
        fields["last_polled_at"] = str(d.observed_at)
        fields["polls"] = str(int(fields.get("polls") or 0) + 1)
        fields["failures"] = str(d.failures)
        if d.learn:
            self.counts[d.learn] = self.counts.get(d.learn, 0) + 1
            self.policy.learn(d.learn)
        if d.status:
            fields["status"] = d.status
            fields["model"] = d.model or fields["model"]
            fields["created_at"] = d.created_at or fields["created_at"]
        if d.end_watch or (d.status and is_terminal(d.status)):
            del self.due[job_id]
        else:
            self.due[job_id] = now + d.delay


@dataclass
class RoundRobin:
    budget: Budget
    active: deque[str] = field(default_factory=deque)
    noticed: dict[tuple[str, str], float] = field(default_factory=dict)
    polls: int = 0
    tick: float = 0.0

    def register(self, spec: workload.JobSpec, now: float) -> None:
        self.active.append(spec.job_id)

    def step(self, now: float, specs: dict[str, workload.JobSpec]) -> float:
        if not self.active:
            self.tick = now
            return now + 0.05
        job_id = self.active.popleft()
        body = job_json(specs[job_id], now)
        self.polls += 1
        self.noticed.setdefault((job_id, body["status"]), now)
        if body["status"] not in workload.TERMINAL:
            self.active.append(job_id)
        self.tick = max(self.tick + self.budget.pace, now)
        return self.tick


@dataclass
class FixedInterval:
    """Varg's SDK: every job every `interval` seconds from its arrival, no budget."""

    interval: float = 2.0
    noticed: dict[tuple[str, str], float] = field(default_factory=dict)
    polls: int = 0
    specs: dict[str, workload.JobSpec] = field(default_factory=dict)

    def register(self, spec: workload.JobSpec, now: float) -> None:
        at = now
        while True:
            self.polls += 1
            status = job_json(spec, at)["status"]
            self.noticed.setdefault((spec.job_id, status), at)
            if status in workload.TERMINAL:
                return
            at += self.interval

    def step(self, now: float, specs: dict[str, workload.JobSpec]) -> float:
        return now + 1000.0


def simulate(arm: Any, schedule: workload.Schedule) -> dict[str, Any]:
    specs = {s.job_id: s for s in schedule.jobs}
    arrivals = sorted((T0 + s.arrival, s.job_id) for s in schedule.jobs)
    end = T0 + max(s.arrival + s.duration for s in schedule.jobs) + 400
    events: list[tuple[float, int, str]] = [(at, 0, jid) for at, jid in arrivals]
    heapq.heapify(events)
    heapq.heappush(events, (T0, 1, ""))
    while events:
        now, kind, job_id = heapq.heappop(events)
        if now > end:
            break
        if kind == 0:
            arm.register(specs[job_id], now)
            continue
        heapq.heappush(events, (arm.step(now, specs), 1, ""))
    kinds: dict[str, int] = {}
    for spec in schedule.measured:
        kinds[spec.kind] = kinds.get(spec.kind, 0) + 1
    per_kind = {k: round(n / kinds[k], 2) for k, n in getattr(arm, "per_kind", {}).items()}
    return lag_stats(schedule, arm.noticed) | {"polls": arm.polls, "per_kind": per_kind}


def lag_stats(schedule: workload.Schedule,
              noticed: dict[tuple[str, str], float]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for category in ("terminal", "processing"):
        lags = []
        for spec in schedule.measured:
            for status, at in changes_of(spec):
                wanted = status in workload.TERMINAL if category == "terminal" else (
                    status == "processing")
                if wanted and (spec.job_id, status) in noticed:
                    lags.append((noticed[(spec.job_id, status)] - at) / schedule.scale)
        out[category] = [round(percentile(lags, p), 2) for p in (0.5, 0.9, 0.99)]
    by_kind: dict[str, list[float]] = {}
    for spec in schedule.measured:
        at = changes_of(spec)[-1][1]
        if (spec.job_id, spec.final_status) in noticed:
            lag = (noticed[(spec.job_id, spec.final_status)] - at) / schedule.scale
            by_kind.setdefault(spec.kind, []).append(lag)
    out["by_kind"] = {k: [round(percentile(v, p), 1) for p in (0.25, 0.5, 0.75, 0.9)]
                      for k, v in by_kind.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arm", default="steady")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--budget", type=int, default=0)
    parser.add_argument("--min", type=float, default=1.0)
    parser.add_argument("--max", type=float, default=60.0)
    args = parser.parse_args()
    budget = args.budget or (100 if args.arm == "everyday" else 120)
    scale = 1.0 if args.arm == "everyday" else 0.1
    limits = Limits(60.0, args.min, args.max)
    relay = Relay(limits, Budget(budget, scale))
    if args.arm == "steady":
        schedule = workload.steady(args.seed, 0.5, 600, 1200, 1.0)
    elif args.arm == "burst":
        simulate(relay, workload.steady(args.seed, 0.5, 600, 1200, 1.0))
        relay = Relay(limits, Budget(budget, scale), counts=relay.counts)
        schedule = workload.burst(args.seed + 1, 100, 1.0)
    else:
        global WHOLE_SECONDS
        WHOLE_SECONDS = True
        relay.refresh = 10.0
        schedule = workload.everyday(args.seed, 1.0)
    mine = simulate(relay, schedule)
    rr = simulate(RoundRobin(Budget(budget)), schedule)
    sdk = simulate(FixedInterval(), schedule)
    print(json.dumps({"relay": mine, "round_robin": rr, "sdk": sdk}))
    best = [min(a, b) for a, b in zip(rr["terminal"], sdk["terminal"], strict=True)]
    ratio = [round(a / b, 2) for a, b in zip(mine["terminal"], rr["terminal"], strict=True)]
    print("terminal ratio p50/p90/p99 vs round robin", ratio, "vs the better baseline",
          [round(a / b, 2) for a, b in zip(mine["terminal"], best, strict=True)],
          "processing vs round robin",
          [round(a / b, 2) for a, b in zip(mine["processing"], rr["processing"], strict=True)])


if __name__ == "__main__":
    random.seed(0)
    main()
