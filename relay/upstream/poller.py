"""The poll loop each worker runs beside its arq jobs.

Not an arq job per poll. Each step is two Lua calls and one concurrent batch of requests:
write back the last batch and fetch the jobs that may be polled now (poll.lua: due, or not
polled within RELAY_POLL_MIN_INTERVAL), rank them by the value of polling each now
(relay/upstream/policy.py `rank`), lease the best the budget allows (lease.lua), poll them.
A lease that is never written back (the worker died) expires by itself after
`RELAY_POLL_LEASE`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from relay import metrics
from relay.events import JobStatus
from relay.resources import Resources
from relay.store.decision import Decision
from relay.store.store import Budget, Candidates, LeasedJob
from relay.upstream.client import Outcome, PollResult, unreachable
from relay.upstream.policy import FirstLooks, decide, rank
from relay.upstream.runtimes import Limits, PollPolicy

log = logging.getLogger("relay.poller")

IDLE_WAIT_CAP = 0.1  # a new registration makes a job due at once: look again this often
WINDOW_MARGIN = 1.0  # count the budget over 61 s so a late request cannot spill into a minute
UNAUTHORIZED_PAUSE = 30.0
DEFAULT_429_PAUSE = 10.0
CAP_SECONDS = 600.0  # how long Varg's X-RateLimit-Limit holds after the last response saying it
POLICY_REFRESH = 10.0  # seconds between reloads of the learned run times
BURST_SECONDS = 2.0  # the budget may run this far ahead of its pace (after an idle spell)
MIN_CANDIDATES = 100  # jobs ranked per step, at least (4 batches' worth when larger)
# How much a job's wait counts in its value (relay/upstream/runtimes.py): its lag so far is
# weighed against this many round-robin cycles (the time the budget takes to poll every
# candidate once). Replaying the benchmark's steady mix offline (bench/offline.py), 1 keeps the
# p90 at round robin's while the median stays a fifth of it; less favours the tail.
TAIL_CYCLES = 1.0

RECHECK_SECONDS = 1.0  # when a kick found a chain already running: kick once more after this
UNREACHABLE_TTL = 90.0  # /readyz names an unreachable upstream this long after the last miss
PROBE_FIRST, PROBE_MAX = 1.0, 30.0  # idle and unreachable: probe after 1 s, 2 s, ... up to 30 s

Kick = Callable[[str], Awaitable[bool]]  # start a subscription's delivery chain; was one queued


class Streams(Protocol):
    """Stream mode (relay/upstream/streams.py): takes the due jobs it will follow on a stream."""

    async def offer(self, candidates: list[LeasedJob], now: float,
                    policy: PollPolicy) -> set[str]: ...


class Rechecks:
    """Subscriptions to kick once more. A kick is dropped while the subscription's chain is
    queued or running; that chain delivers the new event, unless it was just finishing (it
    had found its outbox empty). Kicking again a moment later starts a new chain in that
    case, instead of leaving the event to the sweeper (up to 5 s)."""

    def __init__(self, delay: float = RECHECK_SECONDS) -> None:
        self.delay = delay
        self._at: dict[str, float] = {}

    def add(self, sid: str, now: float) -> None:
        self._at.setdefault(sid, now + self.delay)

    def due(self, now: float) -> list[str]:
        ready = [sid for sid, at in self._at.items() if at <= now]
        for sid in ready:
            del self._at[sid]
        return ready


def upstream_budget(per_minute: int) -> Budget:
    """The deployment's budget for RELAY_UPSTREAM_RATE_LIMIT=per_minute: one request short of
    it in any 61 s (Varg counts 60), paced evenly over those 61 s. With the whole limit, the
    relay's own requests filled Varg's window once a minute (a burst after any pause made sure
    of it), and `X-RateLimit-Remaining: 0` then paused every worker until the reset, given in
    whole seconds: one to three seconds a minute without a poll, for nothing."""
    window = 60.0 + WINDOW_MARGIN
    limit = max(1, per_minute - 1)
    return Budget(limit, window, window / limit, max(1, int(per_minute * BURST_SECONDS / 60)))


class Poller:
    def __init__(self, res: Resources, kick: Kick, recheck: float = RECHECK_SECONDS,
                 streams: Streams | None = None) -> None:
        self.res = res
        self.kick = kick
        self.streams = streams
        self.policy = PollPolicy()
        s = res.settings
        self.limits = Limits(s.not_found_grace, s.poll_min_interval, s.poll_max_interval)
        self.budget = upstream_budget(s.upstream_rate_limit)
        self.candidates = max(MIN_CANDIDATES, 4 * s.poll_batch_size)
        self._stopping = asyncio.Event()
        self._unauthorized = False
        self._unreachable = False
        self._probed = False  # probe at the first idle step, then again only while unreachable
        self._probe_at = 0.0  # monotonic time of the next probe
        self._probe_wait = PROBE_FIRST
        self._pending: list[Decision] = []
        self._token = secrets.token_hex(8)
        self._policy_at = -math.inf
        self._rechecks = Rechecks(recheck)

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                wait = await self.step()
            except Exception:
                log.exception("poll step failed; retrying")
                wait = 1.0
            if wait > 0:
                await self._sleep(min(wait, IDLE_WAIT_CAP))
        await self.flush()

    def stop(self) -> None:
        self._stopping.set()

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass

    async def step(self) -> float:
        """Write back the last batch, lease the most valuable due jobs, and poll them.

        Returns how long to wait before the next step: nothing when a batch was polled, since
        its results are written back by the next call.
        """
        found = await self._cycle(self.candidates)
        if not found.jobs:
            if found.reason in ("budget", "pause"):
                metrics.RATE_LIMIT_WAITS.labels(found.reason).inc()
            await self._probe_when_due()
            return found.wait
        listed = time.monotonic()
        policy = await self._policy()
        cycle = len(found.jobs) * self.budget.pace
        best = rank([(j.job_id, j.fields) for j in found.jobs], found.now, self.limits, policy,
                    TAIL_CYCLES * cycle, FirstLooks.from_fields(found.first_looks))
        if self.streams is not None:  # stream mode: streams take their pick first
            streamed = await self.streams.offer(found.jobs, found.now, policy)
            best = [job_id for job_id in best if job_id not in streamed]
        take = best[: min(found.allowance, self.res.settings.poll_batch_size)]
        jobs = await self.res.store.lease(take, self._token, self.res.settings.poll_lease,
                                          self.budget, self.limits.min_interval)
        if not jobs:
            return 0.0  # another worker leased them first; look again
        results = await asyncio.gather(*(self.res.varg.get_job(j.job_id) for j in jobs))
        now = found.now + (time.monotonic() - listed)
        self._pending = [
            decide(j.job_id, self._token, j.fields, r, now, self.limits, policy)
            for j, r in zip(jobs, results, strict=True)
        ]
        for decision in self._pending:
            if decision.learn:  # at once: the next reload from Redis has it too
                policy.learn(decision.learn)
        await self._after_batch(jobs, results)
        return 0.0

    async def flush(self) -> None:
        """Write back what was polled, leasing nothing (on shutdown)."""
        if self._pending:
            await self._cycle(0)

    async def _cycle(self, max_candidates: int) -> Candidates:
        # Each decision carries the token of the lease it answers; the next lease gets a new one.
        decisions, self._pending = self._pending, []
        self._token = secrets.token_hex(8)
        try:
            found = await self.res.store.poll_cycle(
                decisions, self.res.settings.retention, max_candidates, self.budget,
                self.limits.min_interval,
            )
        except BaseException:
            # Keep what was seen: retrying is safe, poll.lua checks each lease token once.
            self._pending = decisions + self._pending
            raise
        for sid in dict.fromkeys(found.kicked):
            if not await self.kick(sid):
                self._rechecks.add(sid, time.monotonic())
        for sid in self._rechecks.due(time.monotonic()):
            await self.kick(sid)
        return found

    async def _policy(self) -> PollPolicy:
        """The schedule, with run times learned by every worker, refreshed now and then."""
        if time.monotonic() - self._policy_at > POLICY_REFRESH:
            self.policy = PollPolicy.from_fields(await self.res.store.durations())
            self._policy_at = time.monotonic()
        return self.policy

    async def _after_batch(self, jobs: list[LeasedJob], results: list[PollResult]) -> None:
        for job, result in zip(jobs, results, strict=True):
            self._observe(job, result)
        outcomes = {r.outcome for r in results}
        if Outcome.rate_limited in outcomes:
            pause = max((r.retry_after or DEFAULT_429_PAUSE) for r in results
                        if r.outcome is Outcome.rate_limited)
            log.warning("upstream rate limit hit; every worker pauses %.1fs", pause)
            limited = sum(r.outcome is Outcome.rate_limited for r in results)
            await self.res.store.upstream_rate_limited(limited, pause, time.time())
        await self._auth_state(outcomes)
        await self._reach_state([r.error for r in results])
        await self._respect_rate_headers(results)

    def _observe(self, job: LeasedJob, result: PollResult) -> None:
        metrics.POLLS.labels(result.outcome.value).inc()
        metrics.UPSTREAM_LATENCY.observe(result.duration)
        if result.outcome is Outcome.ok and result.status != (job.fields.get("status") or None):
            known = result.status in JobStatus.__members__
            metrics.STATUS_CHANGES.labels(result.status if known else "other").inc()
            log.info("job %s is %s", job.job_id, result.status,
                     extra={"job_id": job.job_id, "status": result.status})
        elif result.outcome not in (Outcome.ok, Outcome.not_found):
            log.warning("poll of %s: %s (HTTP %s)", job.job_id, result.outcome.value,
                        result.status_code, extra={"job_id": job.job_id})

    async def _auth_state(self, outcomes: set[Outcome]) -> None:
        if Outcome.unauthorized in outcomes:
            if not self._unauthorized:
                log.error("upstream: unauthorized (VARG_API_KEY refused); polling backs off")
            self._unauthorized = True
            await self.res.store.set_upstream_unauthorized(4 * UNAUTHORIZED_PAUSE)
            await self.res.store.pause_upstream(UNAUTHORIZED_PAUSE)
        elif self._unauthorized and Outcome.ok in outcomes:
            log.info("upstream: authorized again")
            self._unauthorized = False
            await self.res.store.clear_upstream_unauthorized()

    async def _probe_when_due(self) -> None:
        """With nothing to poll, nothing says whether Varg answers: ask it at start, and
        again while it does not (backing off), so /readyz shows a wrong VARG_API_URL at once."""
        if (self._probed and not self._unreachable) or time.monotonic() < self._probe_at:
            return
        self._probed = True
        error = await self.res.varg.probe()
        self._probe_at = time.monotonic() + self._probe_wait
        self._probe_wait = min(2 * self._probe_wait, PROBE_MAX)
        await self._reach_state([error])

    async def _reach_state(self, errors: list[str | None]) -> None:
        reason = unreachable(errors)
        if reason is not None:
            if not self._unreachable:
                log.error("upstream: unreachable (%s); polls back off", reason)
            self._unreachable = True
            await self.res.store.set_upstream_unreachable(reason, UNREACHABLE_TTL)
        else:
            self._probe_wait = PROBE_FIRST
            if self._unreachable:
                log.info("upstream: reachable again")
                self._unreachable = False
                await self.res.store.clear_upstream_unreachable()

    async def _respect_rate_headers(self, results: list[PollResult]) -> None:
        """Varg's `X-RateLimit-Limit` below the configured budget tightens it (its docs
        disagree on the limit; the headers do not). When Varg says the key's budget is spent
        (the user's product shares it), wait."""
        limits = [limit for r in results if (limit := rate_header_limit(r.rate_headers))]
        ours = self.res.settings.upstream_rate_limit
        if limits and min(limits) < ours and await self.res.store.cap_upstream(
            min(limits), CAP_SECONDS
        ):
            log.warning("Varg allows this key %d requests a minute (X-RateLimit-Limit); the "
                        "budget tightens from RELAY_UPSTREAM_RATE_LIMIT=%d", min(limits), ours)
        for result in results:
            pause = rate_header_pause(result.rate_headers, time.time())
            if pause:
                log.warning("upstream budget spent per X-RateLimit headers; pausing %.1fs", pause)
                await self.res.store.pause_upstream(pause)
                return


def rate_header_limit(headers: dict[str, str]) -> int | None:
    """`X-RateLimit-Limit` as requests per minute, when it is a positive integer."""
    try:
        limit = int(headers["x-ratelimit-limit"])
    except (KeyError, ValueError):
        return None
    return limit if limit > 0 else None


def rate_header_pause(headers: dict[str, str], now: float) -> float | None:
    """Seconds to pause when `X-RateLimit-Remaining` is 0, until `X-RateLimit-Reset`."""
    try:
        remaining = int(headers["x-ratelimit-remaining"])
        reset = float(headers.get("x-ratelimit-reset", "1"))
    except (KeyError, ValueError):
        return None
    if remaining > 0:
        return None
    # Reset is either a Unix time or a number of seconds; both are seen in the wild.
    seconds = reset - now if reset > 1_000_000_000 else reset
    return min(max(seconds, 0.5), 60.0)
