"""Everything the relay keeps, in one Redis, behind named operations.

Keys (all under `vr:`; the Lua scripts in `lua/` beside this module use the same names, so the
store needs a single Redis, not a cluster):

    sub:{sid}        hash   a subscription (without its id: the key has it); timestamps are
                            Unix seconds; events as letters (relay/events.py EVENT_CODES)
    sub:{sid}:url    string the url, when longer than 64 bytes (then not in the hash)
    sub:{sid}:metadata      the metadata JSON, likewise
    owner:{owner}    zset   the owner's subscription ids, in id (creation) order
    jobsubs:{job}    hash   every retained subscription of the job: sid -> 1 while it still
                            wants events from the job, else 0; and d:{digest} -> the live
                            subscription with that owner, url and events (`dedupe_digest`)
    watch:{job}      hash   the relay's view of the job: status, lease, counters
    job:{job}        string the job's JSON as last seen; expires with its watch
    due              zset   watched job ids by next poll time
    msg:{mid}        hash   a delivery: event body, status, next attempt
    attempts:{mid}   list   the delivery's attempts, as JSON
    outbox:{sid}     list   undelivered events of a subscription, oldest first
    msgs:{sid}       list   every event of a subscription, oldest first
    outboxes         set    subscriptions whose outbox is not empty (for the sweeper)
    finished         zset   finished subscriptions by finish time (for retention)
    active           hash   owner -> its active subscriptions (the cap counts these)
    rl:*, pause      the upstream budget and the deployment-wide pause after a 429 or 401
    upstream:429s    zset   when Varg answered 429, for an hour (the dashboard's chart)
    upstream:*       what workers last found wrong with Varg, for /readyz: unauthorized (a 401),
                     unreachable (no answer, with the reason); each expires unless refreshed
    streams          zset   jobs followed on Varg's stream, by when their stream lease ends
    stream:off       string why stream mode is off for a while (the upstream does not stream)
    hint:{digest}    string a Varg webhook already taken, until it is too old to replay
    durations        hash   run-time histogram per model: `model\tbucket` -> count
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import itertools
import json
import secrets
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from typing import Any

from arq.constants import in_progress_key_prefix, job_key_prefix
from redis.asyncio import Redis

from relay.events import EVENT_CODES, encode_events
from relay.store import keys as key
from relay.store.decision import Decision
from relay.store.keys import (
    ACTIVE,
    DUE,
    DURATIONS,
    FINISHED,
    OUTBOXES,
    PAUSE,
    RATE_LIMITED,
    RL_CAP,
    RL_PACE,
    RL_WINDOW,
    STREAM_OFF,
    STREAMS,
    UPSTREAM_UNAUTHORIZED,
    UPSTREAM_UNREACHABLE,
)

RATE_LIMITED_KEEP = 3600.0  # how long the 429s the dashboard charts are kept
# Subscription fields that subscribe.lua keeps in a key of their own when long (see above).
SPILLED = ("url", "metadata")
# The watch fields a lease returns per job, and a candidate comes with; the scripts are given
# these names. The job JSON lives in job:{job}: the write-back reads it itself when a decision
# carries none (a 404 past the grace, an expiry).
WATCH_FIELDS = (
    "status", "model", "created_at", "started_at", "deadline", "first_404",
    "failures", "polls", "last_polled_at",
)
CANDIDATE_FIELDS = (
    "status", "model", "created_at", "started_at", "last_polled_at", "polls",
    "first_404", "failures", "urgent",
)


def _lua_table(pairs: dict[str, str]) -> str:
    return "{" + ", ".join(f"[{json.dumps(k)}] = {json.dumps(v)}" for k, v in pairs.items()) + "}"


def lua_prelude() -> str:
    """What every script is given from the Python side, so nothing is written twice: the key
    names (`K.sub .. sid`) and the one-letter event codes."""
    names = key.PER_RECORD | key.LUA_FIXED
    codes = {str(event): code for event, code in EVENT_CODES.items()}
    return f"local K = {_lua_table(names)}\nlocal EVENT_CODES = {_lua_table(codes)}\n"


def _script(*names: str) -> str:
    """The Lua files joined into one script, after the prelude (common.lua holds what several
    of them share)."""
    lua = resources.files("relay.store") / "lua"
    return lua_prelude() + "\n".join((lua / f"{n}.lua").read_text() for n in names)


def compact_json(value: Any) -> str:
    """JSON without spaces, as the rest of an event body is; shorter values stay in the hash.
    Strict: NaN or Infinity raise ValueError rather than reach a webhook body."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def dedupe_digest(owner: str, url: str, events: list[str]) -> str:
    """What makes two subscriptions of one job the same, in 22 characters (128 bits of SHA-256):
    short enough to keep the hashes that hold it in Redis's compact encoding."""
    identity = json.dumps([owner, url, sorted(events)]).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(identity).digest()[:16]).decode().rstrip("=")


class CapReached(Exception):
    """The owner already holds its cap of active subscriptions."""

    def __init__(self, cap: int) -> None:
        super().__init__(f"cap of {cap} active subscriptions reached")
        self.cap = cap


class Resent(StrEnum):
    """What asking for a delivery again did (resend.lua)."""

    queued = "queued"  # queued again, same webhook-id
    pending = "pending"  # already queued: it is sent once
    missing = "missing"  # no such delivery of that subscription (or it was purged)
    deleted = "deleted"  # the subscription is deleted: nothing more is sent for it


@dataclass(frozen=True)
class LeasedJob:
    job_id: str
    fields: dict[str, str]


@dataclass(frozen=True)
class Candidates:
    now: float  # Redis time of the call
    wait: float  # when there are no candidates: seconds until there may be
    allowance: int  # requests the budget allows now
    kicked: list[str]  # subscriptions that got events from the decisions written back
    reason: str  # due (candidates follow), idle (nothing to poll), budget (they wait), pause
    jobs: list[LeasedJob]  # pollable jobs with CANDIDATE_FIELDS, not leased
    first_looks: dict[str, str] = dataclasses.field(default_factory=dict)  # vr:firstlooks


@dataclass(frozen=True)
class UpstreamCounts:
    requests: list[int]  # upstream requests per interval
    rate_limited: list[int]  # 429s per interval
    cap: int | None  # Varg's lower per-minute limit, while in force
    unauthorized: bool  # Varg refused the key lately
    paused_for: float  # seconds every worker still waits (after a 429 or 401)


@dataclass(frozen=True)
class Budget:
    limit: int  # requests per window
    window: float  # seconds
    pace: float  # seconds between requests, on average
    burst: int  # requests that may go at once, ahead of the pace

    def args(self) -> list[float]:
        return [self.limit, self.window, self.pace, self.burst]


class Store:
    def __init__(self, redis: Redis) -> None:
        # redis-py's stubs type async commands as `Awaitable[T] | T`; Any keeps that noise out.
        self.redis: Any = redis
        self._subscribe = redis.register_script(_script("common", "subscribe"))
        self._poll = redis.register_script(_script("common", "budget", "poll"))
        self._lease = redis.register_script(_script("common", "budget", "lease"))
        self._attempt = redis.register_script(_script("common", "attempt"))
        self._delete = redis.register_script(_script("common", "delete"))
        self._resend = redis.register_script(_script("resend"))
        self._pause = redis.register_script(_script("pause"))
        self._stream_lease = redis.register_script(_script("common", "budget", "stream_lease"))
        self._stream_renew = redis.register_script(_script("stream_renew"))
        self._stream_spend = redis.register_script(_script("budget", "stream_spend"))
        self._hint = redis.register_script(_script("hint"))

    # --- subscriptions -------------------------------------------------------------------

    async def subscribe(
        self, sid: str, owner: str, job_id: str, url: str, events: list[str],
        metadata: dict[str, Any], watch_timeout: float, cap: int | None = None,
    ) -> tuple[str, bool]:
        """(subscription id, created); a live duplicate is returned instead of a new one.
        Raises CapReached when `owner` already holds `cap` active subscriptions."""
        keys = [key.sub(sid), key.owner(owner), key.jobsubs(job_id),
                key.watch(job_id), DUE, key.job(job_id)]
        args = [sid, owner, job_id, url, encode_events(events), compact_json(metadata),
                watch_timeout, dedupe_digest(owner, url, events), -1 if cap is None else cap]
        found, created = await self._subscribe(keys=keys, args=args)  # type: ignore[arg-type]
        if created < 0:
            raise CapReached(cap or 0)
        return str(found), bool(created)

    async def active_count(self, owner: str) -> int:
        """How many active subscriptions `owner` holds (what the cap counts)."""
        return int(await self.redis.hget(ACTIVE, owner) or 0)

    async def subscription(self, sid: str) -> dict[str, str] | None:
        found = await self.subscriptions([sid])
        return found[0] if found else None

    async def subscriptions(self, sids: list[str]) -> list[dict[str, str]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for sid in sids:
                pipe.hgetall(key.sub(sid))
            found: list[dict[str, str]] = await pipe.execute()
        subs = {sid: sub for sid, sub in zip(sids, found, strict=True) if sub}
        await self._complete(subs)
        return list(subs.values())

    async def _complete(self, subs: dict[str, dict[str, str]]) -> None:
        """Add what the hashes leave out: the id (their key says it), and the long values that
        have keys of their own (one more round trip, only when there are any)."""
        for sid, sub in subs.items():
            sub["id"] = sid
        missing = [(sid, field) for sid, sub in subs.items() for field in SPILLED
                   if field not in sub]
        if not missing:
            return
        values = await self.redis.mget([key.spilled(sid, field) for sid, field in missing])
        for (sid, field), value in zip(missing, values, strict=True):
            if value is not None:
                subs[sid][field] = value

    async def owner_page(self, owner: str, after: str | None, limit: int) -> list[str]:
        start = f"({after}" if after else "-"
        ids: list[str] = await self.redis.zrangebylex(
            key.owner(owner), start, "+", start=0, num=limit
        )
        return ids

    async def job_subscription_ids(self, job_id: str) -> list[str]:
        fields: list[str] = await self.redis.hkeys(key.jobsubs(job_id))
        return sorted(f for f in fields if not f.startswith("d:"))  # not the dedupe entries

    async def delete(self, sid: str) -> bool:
        """Delete a subscription; False when there is none (it was purged)."""
        keys = [key.sub(sid), key.outbox(sid), OUTBOXES]
        return bool(await self._delete(keys=keys, args=[sid]))

    # --- deliveries ----------------------------------------------------------------------

    async def delivery_ids(self, sid: str) -> list[str]:
        ids: list[str] = await self.redis.lrange(key.msgs(sid), 0, -1)
        return ids

    async def deliveries(self, mids: list[str]) -> list[tuple[dict[str, str], list[str]]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for mid in mids:
                pipe.hgetall(key.msg(mid))
                pipe.lrange(key.attempts(mid), 0, -1)
            found = await pipe.execute()
        pairs = zip(found[::2], found[1::2], strict=True)
        return [(msg, attempts) for msg, attempts in pairs if msg]

    async def resend(self, mid: str, sid: str) -> Resent:
        """Queue a delivery of `sid` again, unless it is queued already, gone or deleted."""
        keys = [key.msg(mid), key.outbox(sid), key.attempts(mid), OUTBOXES, key.sub(sid)]
        return Resent(await self._resend(keys=keys, args=[mid, sid]))

    async def outbox_head(self, sid: str) -> tuple[dict[str, str], dict[str, str], int] | None:
        """The oldest undelivered event of a subscription, the subscription, and attempts so far."""
        mid = await self.redis.lindex(key.outbox(sid), 0)
        if mid is None:
            return None
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(key.msg(mid))
            pipe.hgetall(key.sub(sid))
            pipe.llen(key.attempts(mid))
            msg, sub, attempts = await pipe.execute()
        if not msg:  # retention removed it under us; drop the dangling id
            await self.redis.lrem(key.outbox(sid), 1, mid)
            return await self.outbox_head(sid)
        await self._complete({sid: sub} if sub else {})
        return msg, sub, int(attempts)

    async def record_attempt(
        self, msg: dict[str, str], attempt: dict[str, Any], outcome: str, next_at: float | None
    ) -> bool:
        """Record an attempt; False (nothing written) when the delivery was purged meanwhile."""
        mid, sid = msg["id"], msg["sub_id"]
        keys = [key.msg(mid), key.outbox(sid), key.sub(sid), key.attempts(mid),
                OUTBOXES]
        args = [mid, json.dumps(attempt), outcome, "" if next_at is None else next_at]
        return bool(await self._attempt(keys=keys, args=args))

    async def pending_outboxes(self) -> list[str]:
        return sorted(await self.redis.smembers(OUTBOXES))

    async def jobs_alive(self, job_ids: list[str]) -> list[bool]:
        """Whether arq holds each job id, queued or in progress (arq's own key names)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.exists(job_key_prefix + job_id, in_progress_key_prefix + job_id)
            return [bool(n) for n in await pipe.execute()]

    async def ping(self) -> None:
        await self.redis.ping()

    # --- watches and polling -------------------------------------------------------------

    async def watch(self, job_id: str) -> dict[str, str] | None:
        """The watch hash, with the job's last seen JSON (kept in a key of its own) as `job`."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(key.watch(job_id))
            pipe.get(key.job(job_id))
            watch, job = await pipe.execute()
        if watch and job is not None:
            watch["job"] = job
        return watch or None

    async def poll_cycle(
        self, decisions: list[Decision], retention: float, max_candidates: int,
        budget: Budget, min_interval: float | None = None,
    ) -> Candidates:
        """Write back the last batch's decisions and name the jobs that may be polled now: due,
        or not polled within `min_interval` (None: due only). One round trip."""
        keys = [DUE, OUTBOXES, RL_WINDOW, RL_PACE, PAUSE, DURATIONS]
        written = json.dumps([d.lua() for d in decisions]) if decisions else "[]"
        args = [written, retention, max_candidates, *budget.args(), _interval(min_interval),
                *CANDIDATE_FIELDS]
        raw: list[str] = await self._poll(keys=keys, args=args)  # type: ignore[arg-type]
        jobs = _rows(raw[6:], CANDIDATE_FIELDS)
        return Candidates(float(raw[0]), float(raw[1]), int(raw[2]), json.loads(raw[3]), raw[4],
                          jobs, json.loads(raw[5]))

    async def lease(self, job_ids: list[str], token: str, lease_s: float,
                    budget: Budget, min_interval: float | None = None) -> list[LeasedJob]:
        """Lease these jobs (best first) while the budget allows and they may still be polled
        (as `poll_cycle` says)."""
        if not job_ids:
            return []
        keys = [DUE, RL_WINDOW, RL_PACE, PAUSE]
        args = [token, lease_s, *budget.args(), len(WATCH_FIELDS), *WATCH_FIELDS,
                _interval(min_interval), *job_ids]
        raw: list[str] = await self._lease(keys=keys, args=args)  # type: ignore[arg-type]
        return _rows(raw, WATCH_FIELDS)

    # --- streams (relay/upstream/streams.py) ----------------------------------------------

    async def stream_lease(self, job_ids: list[str], token: str, lease_s: float, budget: Budget,
                           cap: int, min_interval: float | None = None,
                           ) -> tuple[str, list[LeasedJob]]:
        """Lease these jobs (best first) for streaming, within the budget and the deployment's
        cap on open streams; nothing while the upstream is known not to stream. Returns what
        stopped it short (`ok` when nothing did: see stream_lease.lua) and the jobs leased."""
        if not job_ids:
            return "ok", []
        keys = [DUE, RL_WINDOW, RL_PACE, PAUSE]
        args = [token, lease_s, *budget.args(), cap, len(WATCH_FIELDS), *WATCH_FIELDS,
                _interval(min_interval), *job_ids]
        raw: list[str] = await self._stream_lease(keys=keys, args=args)  # type: ignore[arg-type]
        return raw[0], _rows(raw[1:], WATCH_FIELDS)

    async def stream_renew(self, held: list[tuple[str, str]],
                           lease_s: float) -> tuple[list[str], list[str]]:
        """Renew the leases of (job_id, token); returns (jobs to give up, jobs with a new
        subscription waiting for their status)."""
        if not held:
            return [], []
        args: list[str | float] = [lease_s]
        for job_id, token in held:
            args += [job_id, token]
        raw: list[Any] = await self._stream_renew(keys=[DUE], args=args)
        lost = int(raw[0])
        return [str(j) for j in raw[1 : 1 + lost]], [str(j) for j in raw[1 + lost :]]

    async def stream_spend(self, budget: Budget) -> bool:
        """Take one request of the shared budget for a reconnection, if it allows one now."""
        keys = [RL_WINDOW, RL_PACE, PAUSE]
        return bool(await self._stream_spend(keys=keys, args=budget.args()))

    async def set_stream_off(self, reason: str, seconds: float) -> bool:
        """Stream mode off for every worker for `seconds`; True when it was on."""
        previous = await self.redis.set(STREAM_OFF, reason, ex=max(1, int(seconds)), get=True)
        return previous is None

    async def stream_off(self) -> str | None:
        reason: str | None = await self.redis.get(STREAM_OFF)
        return reason

    async def streams_open(self, now: float) -> int:
        """Streams whose lease is current, in the whole deployment."""
        return int(await self.redis.zcount(STREAMS, now, "+inf"))

    async def hint(self, job_id: str, min_interval: float, digest: str,
                   remember_s: float) -> str:
        """Poll this job at once (a Varg webhook said it changed); see hint.lua."""
        args: list[str | float] = [job_id, min_interval, digest, max(1, int(remember_s))]
        return str(await self._hint(keys=[DUE], args=args))

    async def durations(self) -> dict[str, str]:
        counts: dict[str, str] = await self.redis.hgetall(DURATIONS)
        return counts

    async def pause_upstream(self, seconds: float) -> None:
        """Every worker stops polling for `seconds` (a 429's Retry-After, a refused key, a spent
        X-RateLimit budget). A pause in force that is longer stays: a pause only ever grows
        (atomically)."""
        await self._pause(keys=[PAUSE], args=[max(1, int(seconds * 1000))])

    async def upstream_rate_limited(self, count: int, seconds: float, now: float) -> None:
        """Varg answered 429 `count` times (a poll batch, or a stream's connection): every worker
        pauses `seconds`, and the dashboard's chart counts them."""
        await self.pause_upstream(seconds)
        await self.note_rate_limited(count, now)

    async def cap_upstream(self, per_minute: int, seconds: float) -> bool:
        """Varg's own per-minute limit for the key, when below ours; True when it is news."""
        previous = await self.redis.set(RL_CAP, per_minute, ex=max(1, int(seconds)), get=True)
        return bool(previous != str(per_minute))

    async def upstream_cap(self) -> int | None:
        """Varg's per-minute limit for the key, while a worker has lately seen it below ours."""
        cap = await self.redis.get(RL_CAP)
        return int(cap) if cap else None

    async def set_upstream_unauthorized(self, seconds: float) -> None:
        await self.redis.set(UPSTREAM_UNAUTHORIZED, "1", ex=max(1, int(seconds)))

    async def clear_upstream_unauthorized(self) -> None:
        await self.redis.delete(UPSTREAM_UNAUTHORIZED)

    async def upstream_unauthorized(self) -> bool:
        return bool(await self.redis.exists(UPSTREAM_UNAUTHORIZED))

    async def set_upstream_unreachable(self, reason: str, seconds: float) -> None:
        await self.redis.set(UPSTREAM_UNREACHABLE, reason, ex=max(1, int(seconds)))

    async def clear_upstream_unreachable(self) -> None:
        await self.redis.delete(UPSTREAM_UNREACHABLE)

    async def upstream_unreachable(self) -> str | None:
        """Why a worker got no answer from Varg lately, or None."""
        reason = await self.redis.get(UPSTREAM_UNREACHABLE)
        return None if reason is None else str(reason)

    async def due_counts(self, now: float) -> tuple[int, int]:
        """(watched jobs, jobs whose poll time has passed)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(DUE)
            pipe.zcount(DUE, "-inf", now)
            total, due = await pipe.execute()
        return int(total), int(due)

    # --- dashboard reads (relay/api/dashboard.py) ------------------------------------------

    async def owner_page_desc(self, owner: str, before: str | None, limit: int,
                              inclusive: bool = False) -> list[str]:
        """The owner's subscription ids, newest first, from just before `before` (or from it)."""
        start = "+" if not before else f"{'[' if inclusive else '('}{before}"
        ids: list[str] = await self.redis.zrevrangebylex(
            key.owner(owner), start, "-", start=0, num=limit
        )
        return ids

    async def subscription_fields(self, sids: list[str],
                                  fields: tuple[str, ...]) -> list[dict[str, str]]:
        """A few fields of each subscription ({} for one that is gone)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for sid in sids:
                pipe.hmget(key.sub(sid), *fields)
            found: list[list[str | None]] = await pipe.execute()
        return [{f: v for f, v in zip(fields, values, strict=True) if v is not None}
                for values in found]

    async def jobs_subscription_ids(self, job_ids: list[str]) -> list[list[str]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hkeys(key.jobsubs(job_id))
            found: list[list[str]] = await pipe.execute()
        return [sorted(f for f in fields if not f.startswith("d:")) for fields in found]

    async def watch_hashes(self, job_ids: list[str]) -> list[dict[str, str]]:
        """The watch hashes, without the job JSON ({} for a job no longer watched)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(key.watch(job_id))
            found: list[dict[str, str]] = await pipe.execute()
        return found

    async def delivery_id_lists(self, sids: list[str]) -> list[list[str]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for sid in sids:
                pipe.lrange(key.msgs(sid), 0, -1)
            found: list[list[str]] = await pipe.execute()
        return found

    async def delivery_fields(self, mids: list[str],
                              fields: tuple[str, ...]) -> list[dict[str, str]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for mid in mids:
                pipe.hmget(key.msg(mid), *fields)
            found: list[list[str | None]] = await pipe.execute()
        return [{f: v for f, v in zip(fields, values, strict=True) if v is not None}
                for values in found]

    async def note_rate_limited(self, count: int, now: float) -> None:
        """Remember that Varg answered 429 `count` times (for the dashboard, an hour)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            for _ in range(count):
                pipe.zadd(RATE_LIMITED, {f"{now:.6f}:{secrets.token_hex(4)}": now})
            pipe.zremrangebyscore(RATE_LIMITED, "-inf", now - RATE_LIMITED_KEEP)
            pipe.expire(RATE_LIMITED, int(RATE_LIMITED_KEEP))
            await pipe.execute()

    async def upstream_counts(self, edges: list[float],
                              rate_limited_edges: list[float]) -> UpstreamCounts:
        """Upstream requests (the budget's window) between consecutive `edges`, 429s between
        consecutive `rate_limited_edges`, and the state the workers share."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for lo, hi in itertools.pairwise(edges):
                pipe.zcount(RL_WINDOW, f"({lo}", hi)
            for lo, hi in itertools.pairwise(rate_limited_edges):
                pipe.zcount(RATE_LIMITED, f"({lo}", hi)
            pipe.get(RL_CAP)
            pipe.exists(UPSTREAM_UNAUTHORIZED)
            pipe.pttl(PAUSE)
            found = await pipe.execute()
        n = len(edges) - 1
        m = len(rate_limited_edges) - 1
        cap, unauthorized, pause_ms = found[n + m:]
        return UpstreamCounts(
            requests=[int(c) for c in found[:n]],
            rate_limited=[int(c) for c in found[n:n + m]],
            cap=int(cap) if cap else None,
            unauthorized=bool(unauthorized),
            paused_for=max(0, int(pause_ms)) / 1000,
        )

    async def now(self) -> float:
        """Redis's clock, which the budget's window uses."""
        seconds, micros = await self.redis.time()
        return float(seconds) + float(micros) / 1e6

    # --- retention -----------------------------------------------------------------------

    async def purge_finished(self, before: float, limit: int = 500) -> int:
        """Forget subscriptions (and their delivery logs) that finished before `before`."""
        sids: list[str] = await self.redis.zrangebyscore(FINISHED, "-inf", before, 0, limit)
        for sid in sids:
            await self._purge(sid)
        return len(sids)

    async def _purge(self, sid: str) -> None:
        sub = await self.subscription(sid)
        mids = await self.delivery_ids(sid)
        async with self.redis.pipeline(transaction=True) as pipe:
            for mid in mids:
                pipe.delete(key.msg(mid), key.attempts(mid))
            pipe.delete(key.sub(sid), key.msgs(sid), key.outbox(sid),
                        *(key.spilled(sid, field) for field in SPILLED))
            if sub:
                pipe.zrem(key.owner(sub['owner']), sid)
                pipe.hdel(key.jobsubs(sub['job_id']), sid)
            pipe.zrem(FINISHED, sid)
            await pipe.execute()


def _interval(min_interval: float | None) -> float:
    """The scripts' minimum interval: -1 when only due jobs may be polled."""
    return -1.0 if min_interval is None else min_interval


def _rows(raw: list[str], fields: tuple[str, ...]) -> list[LeasedJob]:
    """`job_id, field values..., job_id, ...` from a script's reply."""
    width = len(fields) + 1
    return [LeasedJob(raw[i], dict(zip(fields, raw[i + 1 : i + width], strict=True)))
            for i in range(0, len(raw), width)]
