"""Stream mode: each worker follows its most valuable jobs on Varg's job stream.

A job on a stream is not polled. The poller offers its due jobs here first (`offer`); the most
valuable, up to `RELAY_STREAMS_PER_WORKER` here and `RELAY_STREAMS_MAX` in the deployment, are
leased for streaming (stream_lease.lua, one request of the shared budget each) and the rest
are polled as before. Every `status` event becomes a `Decision` written back through poll.lua,
the same atomic status + outbox step as a poll, under the same lease token, so a change seen
by a stream and by a poll makes one event. The lease is renewed every second while the worker
holds the stream (stream_renew.lua); a worker killed with `kill -9` stops renewing and another
worker takes the job within one lease (`STREAM_LEASE`).

When a stream ends without a terminal status (Varg's 10-minute limit, a network error, a
deadline, a 5xx) it reconnects, with backoff after errors, if the budget allows one more
request; otherwise, and after repeated failures, the job goes back to polling. An upstream
that answers the stream with 405 or 501, a non-SSE content type, or 404 for a job it knows,
has no stream: stream mode goes off for every worker for `OFF_SECONDS`, logged and shown on
/readyz.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import httpx

from relay import metrics
from relay.events import JobStatus
from relay.resources import Resources
from relay.store.decision import Decision
from relay.store.store import Budget, LeasedJob
from relay.times import parse_time
from relay.upstream.client import Outcome, PollResult
from relay.upstream.policy import decide, error_backoff
from relay.upstream.poller import CAP_SECONDS, Rechecks, rate_header_limit, rate_header_pause
from relay.upstream.runtimes import Limits, PollPolicy
from relay.upstream.stream import End, StreamEnd, read_stream

log = logging.getLogger("relay.streams")

STREAM_LEASE = 10.0  # seconds a stream lease lasts unless renewed: a dead worker's job waits this
RENEW_EVERY = 1.0  # seconds between renewals (also how soon a new subscriber hears the status)
OFF_SECONDS = 600.0  # stream mode stays off this long once the upstream shows it has no stream
MAX_FAILURES = 3  # failed connections in a row before the job goes back to polling
RECONNECT_CAP = 30.0  # the longest backoff before reconnecting
QUIET_SECONDS = 1.0  # offers wait this long after stream mode was off, paused or capped
PREEMPT_RATIO = 2.0  # a waiting job worth this many times a streamed one takes its stream
PREEMPT_EVERY = 1.0  # seconds between looks for streams to hand over
MIN_HOLD = 5  # a stream is not handed over before RELAY_POLL_MIN_INTERVAL x this
DEFAULT_429_PAUSE = 10.0
TROUBLE = ("errors", "unauthorized", "rate_limited")  # fallbacks a poll must clear first

Kick = Callable[[str], Awaitable[bool]]


class Step(StrEnum):
    """What follows the end of one stream connection."""

    done = "done"  # the job is terminal
    reconnect = "reconnect"  # after `delay`, if the budget allows
    release = "release"  # back to polling
    off = "off"  # the upstream has no stream: stream mode off, this job back to polling


@dataclass(frozen=True)
class Next:
    step: Step
    delay: float = 0.0
    reason: str = ""


def after_end(end: StreamEnd, failures: int, status_known: bool, limits: Limits) -> Next:
    """The pure rule for a connection that ended; `failures` counts this one if it failed."""
    if end.end is End.terminal:
        return Next(Step.done)
    if end.end is End.unsupported:
        return Next(Step.off, reason=end.detail)
    if end.end is End.not_found:
        # Varg answers 404 for a job it does not know yet too: only a job it has shown us
        # proves the endpoint missing. Until then the poll's 404 grace handles the job.
        if status_known:
            return Next(Step.off, reason="HTTP 404 for a job the poll finds")
        return Next(Step.release, reason="not_found")
    if end.end in (End.unauthorized, End.rate_limited):
        return Next(Step.release, reason=end.end.value)
    if end.end is End.closed and end.events:
        return Next(Step.reconnect, reason="closed")  # Varg's 10-minute limit: go on at once
    if failures >= MAX_FAILURES:
        return Next(Step.release, reason="errors")
    delay = min(RECONNECT_CAP, error_backoff(failures, limits))
    return Next(Step.reconnect, delay, reason=end.detail or end.end.value)


def stream_value(fields: dict[str, str], now: float, limits: Limits,
                 policy: PollPolicy) -> float:
    """What following a job on a stream is worth: the chance it finishes within the next
    `max_interval` (the longest a poll would leave it unseen), given it has not finished yet.
    Streams go where changes are near, so each slot turns over and saves the most lag."""
    started = float(fields.get("started_at") or now)
    created = parse_time(fields.get("created_at")) or started
    model = fields.get("model")
    durations = policy.durations(model) if model else policy.mixture()
    age = max(0.0, now - created)
    alive = 1.0 - durations.cdf(age)
    if alive <= 1e-9:
        return 1.0  # older than anything seen: likely to end any time
    return (durations.cdf(age + limits.max_interval) - durations.cdf(age)) / alive


def stream_order(fields: dict[str, str], now: float, limits: Limits,
                 policy: PollPolicy) -> tuple[bool, float]:
    """Who gets a stream first: a job unseen for `max_interval` (by a poll or a stream,
    counted from registration when never seen), so none starves while the budget is short
    of a stream for every job; then by `stream_value`."""
    seen = float(fields.get("last_polled_at") or fields.get("started_at") or now)
    return now - seen >= limits.max_interval, stream_value(fields, now, limits, policy)


Ranked = list[tuple[tuple[bool, float], str]]  # (stream_order, job_id)


def stream_ranking(ranked: Ranked, free: int) -> Ranked:
    """Best first. With a slot for each, the budget decides who is first: jobs unseen for
    `max_interval` go ahead. With fewer slots than jobs, streams go by value alone (as
    hand-overs do), and the jobs left over are polled, overdue ones first."""
    if free >= len(ranked):
        return sorted(ranked, reverse=True)
    return sorted(ranked, key=lambda row: (row[0][1], row[1]), reverse=True)


def goes_quiet(short: str, poll_waiting: bool) -> bool:
    """Whether offers pause for QUIET_SECONDS after a lease came back `short`. Off, paused
    or at the deployment's cap: yes. Short of budget: no, since the poller steps again at
    the next request and that request buys more as a stream (the whole job) than as a poll
    (one look); quiet for a second, the polls took every request and 100 jobs at once cost
    3.8 requests each, not 1. Unless a due job cannot stream (upstream errors, a 404
    grace): the pause is what lets its poll through."""
    if short == "ok":
        return False
    return short != "budget" or poll_waiting


def to_preempt(waiting: list[float], held: list[tuple[float, str]],
               ratio: float = PREEMPT_RATIO) -> list[str]:
    """Streams to hand over: the least valuable held ones, each to a waiting job worth
    `ratio` times as much (best waiting first). `held` is (value, job_id)."""
    best_first = sorted(waiting, reverse=True)
    worst_first = sorted(held)
    return [job_id for want, (value, job_id) in zip(best_first, worst_first, strict=False)
            if want > ratio * value]


def streamable(fields: dict[str, str]) -> bool:
    """Jobs in a 404 grace or after upstream errors stay with the poll's own schedule."""
    return not fields.get("first_404") and not int(fields.get("failures") or 0)


@dataclass
class Held:
    """A job this worker follows on a stream."""

    job_id: str
    token: str
    fields: dict[str, str]  # the watch as leased, its status kept current
    alive_at: float  # unix time the stream last showed it was alive (a byte, an event)
    last_job: dict[str, Any] | None = None  # the job as last seen: told to new subscribers
    task: asyncio.Task[None] | None = None
    since: float = field(default_factory=time.monotonic)


class StreamManager:
    def __init__(self, res: Resources, kick: Kick, budget: Budget, limits: Limits,
                 http: httpx.AsyncClient) -> None:
        self.res = res
        self.kick = kick
        self.budget = budget
        self.limits = limits
        self.http = http
        self.policy = PollPolicy()
        self.held: dict[str, Held] = {}
        self._pending: list[Decision] = []
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._quiet_until = -math.inf
        self._not_found: set[str] = set()  # streams answered 404 before any status was seen
        self._rechecks = Rechecks()
        self._writer: asyncio.Task[None] | None = None
        self._preempted_at = -math.inf

    # --- choosing what to stream (called by the poller) -------------------------------------

    async def offer(self, candidates: list[LeasedJob], now: float,
                    policy: PollPolicy) -> set[str]:
        """Lease the most valuable of these due jobs for streaming while this worker has
        free slots, or streams it may hand over; the ids taken (the poller polls the rest)."""
        self.policy = policy
        if self._stopping.is_set() or time.monotonic() < self._quiet_until:
            return set()
        eligible = [c for c in candidates if self._eligible(c)]
        free = self.res.settings.streams_per_worker - len(self.held)
        ranked = stream_ranking(
            [(stream_order(c.fields, now, self.limits, policy), c.job_id) for c in eligible],
            free)
        if ranked and free < len(ranked):
            free += self._preempt([value for (_, value), _ in ranked[max(free, 0):]], now)
        want = [job_id for _, job_id in ranked[: max(free, 0)]]
        if not want:
            return set()
        token = secrets.token_hex(8)
        short, leased = await self.res.store.stream_lease(
            want, token, STREAM_LEASE, self.budget, self.res.settings.streams_max,
            self.limits.min_interval)
        if goes_quiet(short, poll_waiting=len(eligible) < len(candidates)):
            self._quiet_until = time.monotonic() + QUIET_SECONDS
        for job in leased:
            self._start(Held(job.job_id, token, dict(job.fields), time.time()))
        return {job.job_id for job in leased}

    def _preempt(self, waiting: list[float], now: float) -> int:
        """Hand the least valuable streams over to more valuable waiting jobs (at most once a
        second; a stream is kept at least MIN_HOLD x RELAY_POLL_MIN_INTERVAL); how many."""
        if time.monotonic() - self._preempted_at < PREEMPT_EVERY:
            return 0
        self._preempted_at = time.monotonic()
        settled = time.monotonic() - MIN_HOLD * self.limits.min_interval
        held = [(stream_value(h.fields, now, self.limits, self.policy), h.job_id)
                for h in self.held.values() if h.since <= settled]
        handed = to_preempt(waiting, held)
        for job_id in handed:
            h = self.held[job_id]
            if h.task is not None:
                h.task.cancel()
            self._release(h, "preempted")
        return len(handed)

    def _eligible(self, candidate: LeasedJob) -> bool:
        if candidate.job_id in self.held or not streamable(candidate.fields):
            return False
        if candidate.job_id in self._not_found:
            if not candidate.fields.get("status"):
                return False
            self._not_found.discard(candidate.job_id)  # it exists now: a 404 would be telling
        return True

    def _start(self, held: Held) -> None:
        self.held[held.job_id] = held
        held.task = asyncio.create_task(self._follow(held), name=f"stream {held.job_id}")
        metrics.STREAMS_OPEN.set(len(self.held))

    # --- one job's stream ---------------------------------------------------------------------

    async def _follow(self, held: Held) -> None:
        failures = 0
        try:
            while True:
                end = await self._connect(held)
                failures = 0 if end.events else failures + 1
                step = after_end(end, failures, bool(held.fields.get("status")), self.limits)
                if not await self._next(held, end, step):
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("stream of %s failed; back to polling", held.job_id,
                          extra={"job_id": held.job_id})
            self._release(held, "errors")

    async def _connect(self, held: Held) -> StreamEnd:
        varg = self.res.varg

        async def on_job(job: dict[str, Any]) -> None:
            self._observe(held, job)

        def on_alive() -> None:
            held.alive_at = time.time()

        return await read_stream(self.http, varg.stream_url(held.job_id), varg.headers,
                                 self.res.settings.stream_idle_timeout, on_job, on_alive,
                                 job_id=held.job_id, on_open=self._respect_rate_headers)

    async def _next(self, held: Held, end: StreamEnd, step: Next) -> bool:
        """Act on how a connection ended; True to connect again."""
        if step.step is Step.done:
            self._forget(held)
            return False
        if step.step is Step.off:
            await self._turn_off(held, step.reason)
            self._release(held, "unsupported")
            return False
        if end.end is End.not_found and step.step is Step.release:
            self._not_found.add(held.job_id)
        if end.end is End.rate_limited:
            await self.res.store.upstream_rate_limited(
                1, end.retry_after or DEFAULT_429_PAUSE, time.time())
        if step.step is Step.release:
            self._release(held, step.reason)
            return False
        await self._sleep(step.delay)
        if self._stopping.is_set():
            return False
        if not await self.res.store.stream_spend(self.budget):
            self._release(held, "budget")
            return False
        metrics.STREAM_RECONNECTS.inc()
        log.debug("stream of %s: %s; reconnecting", held.job_id, step.reason,
                  extra={"job_id": held.job_id})
        return True

    async def _respect_rate_headers(self, headers: dict[str, str]) -> None:
        """As a poll's: Varg's lower X-RateLimit-Limit becomes the budget, a spent one waits."""
        limit = rate_header_limit(headers)
        if limit and limit < self.res.settings.upstream_rate_limit:
            await self.res.store.cap_upstream(limit, CAP_SECONDS)
        pause = rate_header_pause(headers, time.time())
        if pause:
            await self.res.store.pause_upstream(pause)

    def _observe(self, held: Held, job: dict[str, Any]) -> None:
        """One `status` event: decide as for a poll, and write it back keeping the lease."""
        now = time.time()
        held.alive_at = now
        result = PollResult(Outcome.ok, job=job, status_code=200)
        decision = decide(held.job_id, held.token, held.fields, result, now, self.limits,
                          self.policy)
        hold = 0.0 if decision.end_watch else STREAM_LEASE
        self._queue(replace(decision, stream=True, hold=hold))
        status = str(job["status"])
        if status != held.fields.get("status"):
            known = status in JobStatus.__members__
            metrics.STATUS_CHANGES.labels(status if known else "other").inc()
            log.info("job %s is %s (stream)", held.job_id, status,
                     extra={"job_id": held.job_id, "status": status})
        held.fields["status"] = status
        held.fields["model"] = str(job["model"])  # what the value of its stream is read from
        held.fields["created_at"] = str(job["created_at"])
        held.last_job = job

    def _release(self, held: Held, reason: str) -> None:
        """Hand the job back to polling, due when its value says from what the stream knew.
        After upstream trouble it counts one failure, so it is not streamed again before a
        poll has succeeded (the poll's own backoff and pauses apply)."""
        metrics.STREAM_FALLBACKS.labels(reason).inc()
        now = time.time()
        model = held.fields.get("model") or ""
        created = parse_time(held.fields.get("created_at")) or held.alive_at
        delay = 0.0
        if model and held.fields.get("status") and reason in ("budget", "preempted"):
            planned = self.policy.next_delay(model, held.alive_at - created, self.limits)
            delay = max(0.0, planned - (now - held.alive_at))
        failures = 1 if reason in TROUBLE else 0
        self._queue(Decision(held.job_id, held.token, observed_at=held.alive_at, delay=delay,
                             failures=failures, stream=True))
        self._forget(held)

    def _forget(self, held: Held) -> None:
        if self.held.get(held.job_id) is held:
            del self.held[held.job_id]
        metrics.STREAMS_OPEN.set(len(self.held))

    async def _turn_off(self, held: Held, reason: str) -> None:
        self._quiet_until = time.monotonic() + OFF_SECONDS
        if await self.res.store.set_stream_off(reason, OFF_SECONDS):
            log.warning("stream mode off for %d minutes: the upstream does not serve "
                        "GET /jobs/{job_id}/stream (%s); polling every job",
                        OFF_SECONDS // 60, reason, extra={"job_id": held.job_id})

    # --- write-back, renewals, start and stop -------------------------------------------------

    def _queue(self, decision: Decision) -> None:
        self._pending.append(decision)
        self._wake.set()

    async def _write(self) -> None:
        """Write back what the streams saw, in the order they saw it: one Lua call for all."""
        decisions, self._pending = self._pending, []
        if not decisions:
            return
        try:
            found = await self.res.store.poll_cycle(decisions, self.res.settings.retention, 0,
                                                    self.budget)
        except BaseException:
            self._pending = decisions + self._pending  # safe to repeat: tokens are checked
            raise
        for sid in dict.fromkeys(found.kicked):
            if not await self.kick(sid):
                self._rechecks.add(sid, time.monotonic())

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._write()
            except Exception:
                log.exception("stream write-back failed; retrying")
                await asyncio.sleep(1.0)
                self._wake.set()

    async def run(self) -> None:
        """Renew the leases of the streams held, until `stop`."""
        self._writer = asyncio.create_task(self._write_loop(), name="stream write-back")
        while not self._stopping.is_set():
            try:
                await self._renew()
            except Exception:
                log.exception("stream renewal failed; retrying")
            for sid in self._rechecks.due(time.monotonic()):
                await self.kick(sid)
            await self._sleep(RENEW_EVERY)

    async def _renew(self) -> None:
        held = [(job_id, h.token) for job_id, h in self.held.items()]
        lost, urgent = await self.res.store.stream_renew(held, STREAM_LEASE)
        for job_id in lost:
            if (h := self.held.get(job_id)) is not None and h.task is not None:
                h.task.cancel()
                self._release(h, "lease")
        for job_id in urgent:
            h = self.held.get(job_id)
            if h is not None and h.last_job is not None:
                self._observe(h, h.last_job)  # a new subscriber hears the status now

    def stop(self) -> None:
        self._stopping.set()

    async def close(self) -> None:
        """Close every stream and hand its job back to polling at once (another worker takes
        it); write back what was seen."""
        self.stop()
        held = list(self.held.values())
        tasks = [h.task for h in held if h.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for h in held:
            if self.held.get(h.job_id) is h:
                self._queue(Decision(h.job_id, h.token, observed_at=h.alive_at, delay=0.0,
                                     stream=True))
                self._forget(h)
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        try:
            await self._write()
        except Exception:  # Redis is gone: the leases run out by themselves (STREAM_LEASE)
            log.exception("could not hand streamed jobs back; their leases will run out")

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass


def stream_mode(settings_stream: str, api_version: str) -> bool:
    """Whether workers try the stream: RELAY_STREAM=auto, and Varg's v1 API (v2 has none)."""
    return settings_stream == "auto" and api_version == "v1"
