"""The stream path's Redis half, against a real Redis: stream leases (budget, caps, the off
switch), renewals, stream write-backs through poll.lua, and hints."""

from __future__ import annotations

from dataclasses import replace

import pytest
from redis.asyncio import Redis

from relay.store import keys
from relay.store.decision import Decision
from relay.store.keys import STREAMS
from relay.store.store import Budget, LeasedJob, Store
from relay.upstream.policy import decide
from relay.upstream.runtimes import PollPolicy
from tests.relay.test_store_polling import (
    FIXED,
    LEASE,
    ROOMY,
    cycle,
    due_at,
    seen,
    watch,
    watched,
)

HOLD = 10.0


@pytest.fixture
def store(redis: Redis) -> Store:
    return Store(redis)


async def lease(store: Store, ids: list[str], token: str = "stream-a", cap: int = 100,
                budget: Budget = ROOMY, short: str | None = None) -> list[LeasedJob]:
    await cycle(store, max_candidates=0)
    reason, jobs = await store.stream_lease(ids, token, HOLD, budget, cap)
    if short is not None:
        assert reason == short
    return jobs


def event(job: LeasedJob, status: str, now: float, token: str = "stream-a",
          hold: float = HOLD) -> Decision:
    """What a stream writes back when it sees `status`."""
    d = decide(job.job_id, token, job.fields, seen(job.job_id, status), now, FIXED, PollPolicy())
    return replace(d, stream=True, hold=0.0 if d.end_watch else hold)


async def events(store: Store, sid: str) -> list[str]:
    mids = await store.delivery_ids(sid)
    return [msg["event_type"] for msg, _ in await store.deliveries(mids)]


async def test_a_stream_lease_takes_due_jobs_within_the_cap_and_spends_the_budget(
    store: Store,
) -> None:
    ids = await watched(store, 4)
    jobs = await lease(store, ids, cap=3, short="cap")
    assert [j.job_id for j in jobs] == ids[:3]
    now = (await cycle(store, max_candidates=0)).now
    for job in jobs:
        assert await due_at(store, job.job_id) == pytest.approx(now + HOLD, abs=1)
        watch_hash = await store.redis.hgetall(keys.watch(job.job_id))
        assert (watch_hash["lease"], watch_hash["stream"]) == ("stream-a", "1")
    assert await store.streams_open(now) == 3
    assert await store.redis.zcard(keys.RL_WINDOW) == 3  # one request per connection
    # The deployment cap counts every worker's streams.
    assert await lease(store, ids[3:], token="stream-b", cap=3, short="cap") == []


async def test_a_leased_job_is_neither_a_poll_candidate_nor_leased_twice(store: Store) -> None:
    ids = await watched(store, 2)
    await lease(store, ids[:1])
    found = await cycle(store)
    assert [j.job_id for j in found.jobs] == ids[1:]
    assert await store.lease(ids[:1], "poll", LEASE, ROOMY) == []
    assert await lease(store, ids[:1], token="stream-b", short="ok") == []  # taken: no limit


async def test_no_stream_lease_while_stream_mode_is_off_or_paused(store: Store) -> None:
    ids = await watched(store, 1)
    assert await store.set_stream_off("HTTP 404", 60) is True
    assert await store.set_stream_off("HTTP 404", 60) is False  # already off: not news
    assert await store.stream_off() == "HTTP 404"
    assert await lease(store, ids, short="off") == []
    await store.redis.delete(keys.STREAM_OFF)
    await store.pause_upstream(5)
    assert await lease(store, ids, short="pause") == []


async def test_budget_bounds_stream_leases_and_reconnections(store: Store) -> None:
    ids = await watched(store, 3)
    tight = Budget(limit=2, window=61.0, pace=0.0625, burst=64)
    assert len(await lease(store, ids, budget=tight, short="budget")) == 2
    assert await store.stream_spend(tight) is False
    assert await store.stream_spend(ROOMY) is True


async def test_stream_events_write_back_once_and_keep_the_lease(store: Store) -> None:
    """Each status a stream sees becomes one event through poll.lua, the job stays leased
    (out of the poll schedule), and the same status seen again adds nothing."""
    sid = await watch(store, "job_s")
    [job] = await lease(store, ["job_s"])
    now = (await cycle(store, max_candidates=0)).now
    done = await cycle(store, decisions=[event(job, "queued", now)], max_candidates=0)
    assert done.kicked == [sid]
    await cycle(store, decisions=[event(job, "queued", now)], max_candidates=0)
    await cycle(store, decisions=[event(job, "processing", now)], max_candidates=0)
    assert await events(store, sid) == ["job.queued", "job.processing"]
    watch_hash = await store.redis.hgetall(keys.watch("job_s"))
    assert watch_hash["lease"] == "stream-a"
    assert watch_hash.get("polls", "0") == "0"  # stream events are not polls
    assert await due_at(store, "job_s") == pytest.approx(now + HOLD, abs=1)
    assert (await cycle(store)).jobs == []


async def test_a_terminal_event_ends_the_watch_and_frees_the_stream(store: Store) -> None:
    sid = await watch(store, "job_t")
    [job] = await lease(store, ["job_t"])
    now = (await cycle(store, max_candidates=0)).now
    await cycle(store, decisions=[event(job, "completed", now)], max_candidates=0)
    assert await events(store, sid) == ["job.completed"]
    assert await store.redis.zscore(STREAMS, "job_t") is None
    watch_hash = await store.redis.hgetall(keys.watch("job_t"))
    assert watch_hash["active"] == "0" and "lease" not in watch_hash


async def test_a_poll_and_a_stream_seeing_one_change_make_one_event(store: Store) -> None:
    """The stream's lease ran out (its worker stalled), a poll took the job and saw
    `completed`; the stream's late write of the same change is refused by its old token."""
    sid = await watch(store, "job_b")
    [job] = await lease(store, ["job_b"], token="stream-old")
    await store.redis.zadd(keys.DUE, {"job_b": 0})  # the stream lease expired
    [polled] = await store.lease(["job_b"], "poll-new", LEASE, ROOMY)
    now = (await cycle(store, max_candidates=0)).now
    by_poll = decide("job_b", "poll-new", polled.fields, seen("job_b", "completed"), now, FIXED,
                     PollPolicy())
    late = event(job, "completed", now, token="stream-old")
    await cycle(store, decisions=[by_poll, late], max_candidates=0)
    assert await events(store, sid) == ["job.completed"]


async def test_renew_extends_live_leases_and_names_the_lost_and_the_urgent(store: Store) -> None:
    ids = await watched(store, 3)
    jobs = await lease(store, ids)
    now = (await cycle(store, max_candidates=0)).now
    for job in jobs:  # their first status is known to every subscription
        await cycle(store, decisions=[event(job, "processing", now)], max_candidates=0)
    await store.redis.hset(keys.watch(ids[1]), "lease", "someone-else")
    await watch(store, ids[2], url="https://other.example.com/hook")  # a new subscription
    lost, urgent = await store.stream_renew([(j, "stream-a") for j in ids], 30.0)
    assert (lost, urgent) == ([ids[1]], [ids[2]])
    assert await due_at(store, ids[0]) == pytest.approx(now + 30.0, abs=1)


async def test_renew_gives_up_a_stream_nobody_listens_to(store: Store) -> None:
    sid = await watch(store, "job_q")
    await lease(store, ["job_q"])
    await store.delete(sid)
    lost, _ = await store.stream_renew([("job_q", "stream-a")], 30.0)
    assert lost == ["job_q"]


async def test_renew_gives_up_a_stream_past_the_watch_deadline(store: Store) -> None:
    await watch(store, "job_d")
    await lease(store, ["job_d"])
    await store.redis.hset(keys.watch("job_d"), "deadline", "1000.000")
    assert (await store.stream_renew([("job_d", "stream-a")], 30.0))[0] == ["job_d"]


async def test_a_release_hands_the_job_back_to_polling(store: Store) -> None:
    await watch(store, "job_r")
    assert len(await lease(store, ["job_r"])) == 1
    now = (await cycle(store, max_candidates=0)).now
    release = Decision("job_r", "stream-a", observed_at=now, delay=0.0, stream=True)
    await cycle(store, decisions=[release], max_candidates=0)
    assert [j.job_id for j in (await cycle(store)).jobs] == ["job_r"]
    watch_hash = await store.redis.hgetall(keys.watch("job_r"))
    assert "lease" not in watch_hash and "stream" not in watch_hash
    assert await store.redis.zscore(STREAMS, "job_r") is None


async def test_a_hint_makes_a_watched_job_due_once(store: Store) -> None:
    await watch(store, "job_h")
    await cycle(store, max_candidates=0)
    await store.redis.zadd(keys.DUE, {"job_h": 9e9})
    await store.redis.hdel(keys.watch("job_h"), "urgent")
    assert await store.hint("job_h", 0.0, "sig-1", 300) == "polled"
    assert await due_at(store, "job_h") < 9e9
    assert await store.redis.hget(keys.watch("job_h"), "urgent") == "1"
    assert await store.hint("job_h", 0.0, "sig-1", 300) == "replay"
    assert await store.hint("job_nobody", 0.0, "sig-2", 300) == "unwatched"
    [polled] = await store.lease(["job_h"], "poll", LEASE, ROOMY)
    assert await store.hint("job_h", 0.0, "sig-3", 300) == "leased"
    # The poll in flight may predate the change: after its write-back the job is due at once.
    now = (await cycle(store, max_candidates=0)).now
    answered = decide("job_h", "poll", polled.fields, seen("job_h"), now, FIXED, PollPolicy())
    await cycle(store, decisions=[answered], max_candidates=0)
    assert await due_at(store, "job_h") == pytest.approx(now, abs=1)
    assert await store.redis.hget("vr:watch:job_h", "hinted") is None


async def test_a_hint_while_streamed_needs_nothing(store: Store) -> None:
    await watch(store, "job_hs")
    await lease(store, ["job_hs"])
    assert await store.hint("job_hs", 0.0, "sig-s", 300) == "leased"
    assert await store.redis.hget("vr:watch:job_hs", "hinted") is None


async def test_a_hint_makes_the_job_due_at_once_even_within_the_min_interval(
    store: Store,
) -> None:
    await watch(store, "job_m")
    now = (await cycle(store, max_candidates=0)).now
    await store.redis.hset(keys.watch("job_m"), "last_polled_at", f"{now:.3f}")
    await store.redis.zadd(keys.DUE, {"job_m": now + 500})
    assert await store.hint("job_m", 30.0, "sig-m", 300) == "polled"
    assert await due_at(store, "job_m") == pytest.approx(now, abs=1)
