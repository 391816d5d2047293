"""The poll path's Redis half, against a real Redis (no HTTP): poll.lua names due jobs as
candidates with the budget's allowance, lease.lua takes the ones a worker chose within that
budget, and the next poll.lua call writes back what the poll saw.

Budgets here use paces and bursts that are exact binary fractions (2.0, 0.5, 0.0625, ...), so
the arithmetic under test is exact; `test_an_unused_budget_allows_its_whole_burst` is about
the paces the worker really computes (61 / limit), which mostly are not.

Each test runs in well under 3 s; the ones that sleep say so.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from relay.ids import new_id
from relay.store import keys
from relay.store.store import CANDIDATE_FIELDS, WATCH_FIELDS, Budget, Candidates, LeasedJob, Store
from relay.upstream.client import Outcome, PollResult
from relay.upstream.policy import FIRST_LOOK, decide, priority
from relay.upstream.poller import upstream_budget
from relay.upstream.runtimes import Limits, PollPolicy

OWNER = "0123456789abcdef0123456789abcdef"
URL = "https://hooks.example.com/varg"
EVENTS = ["job.queued", "job.processing", "job.completed"]
RETENTION = 3600.0
LEASE = 30.0
# Room for 50 requests, and a pace that never binds: the allowance is exactly the room left.
ROOMY = Budget(limit=50, window=61.0, pace=0.0625, burst=64)
# Every poll is rescheduled exactly DELAY seconds out (the schedule is clamped to it).
DELAY = 7.0
FIXED = Limits(not_found_grace=60.0, min_interval=DELAY, max_interval=DELAY)
MODEL = "fal:flux-schnell"


@pytest.fixture
def store(redis: Redis) -> Store:
    return Store(redis)


async def watch(store: Store, job_id: str, url: str = URL) -> str:
    """Subscribe to `job_id` (which makes it watched and due now); the subscription id."""
    sid, created = await store.subscribe(new_id("sub"), OWNER, job_id, url, EVENTS, {}, 3600.0)
    assert created
    return sid


def seen(job_id: str, status: str = "processing") -> PollResult:
    job = {"job_id": job_id, "status": status, "model": MODEL,
           "created_at": "2026-02-13T10:00:00Z"}
    return PollResult(Outcome.ok, job=job, status_code=200)


def decisions_for(jobs: list[LeasedJob], token: str, now: float) -> list[dict[str, Any]]:
    """What a worker writes back after polling `jobs` and finding each `processing`."""
    return [decide(j.job_id, token, j.fields, seen(j.job_id), now, FIXED, PollPolicy())
            for j in jobs]


async def cycle(store: Store, budget: Budget = ROOMY, decisions: list[dict[str, Any]] | None = None,
                max_candidates: int = 100, min_interval: float | None = None) -> Candidates:
    return await store.poll_cycle(decisions or [], RETENTION, max_candidates, budget,
                                  min_interval)


async def poll_once(store: Store, job_ids: list[str], token: str = "tok-a") -> Candidates:
    """Lease `job_ids`, 'poll' them and write back; the write-back's reply."""
    found = await cycle(store)
    jobs = await store.lease(job_ids, token, LEASE, ROOMY)
    assert [j.job_id for j in jobs] == job_ids
    return await cycle(store, decisions=decisions_for(jobs, token, found.now), max_candidates=0)


async def watched(store: Store, count: int) -> list[str]:
    """`count` jobs, each watched by one subscription and due now."""
    ids = [f"job_{i}" for i in range(count)]
    for job_id in ids:
        await watch(store, job_id)
    return ids


async def due_at(store: Store, job_id: str) -> float | None:
    score: float | None = await store.redis.zscore(keys.DUE, job_id)
    return score


# --- candidates --------------------------------------------------------------------------------


async def test_due_jobs_come_back_as_candidates_with_their_fields_and_nothing_is_leased(
    store: Store
) -> None:
    """poll_cycle names every due job (reason `due`, no wait) with CANDIDATE_FIELDS as the
    watch has them (a new one: urgent, started, never polled) and the allowance (here the
    budget's room); it leases nothing and spends nothing, so asking again gives the same."""
    for job_id in ("job_a", "job_b", "job_c"):
        await watch(store, job_id)
    scores = {j: await due_at(store, j) for j in ("job_a", "job_b", "job_c")}

    found = await cycle(store)
    assert (found.reason, found.wait, found.allowance, found.kicked) == ("due", 0.0, 50, [])
    assert sorted(j.job_id for j in found.jobs) == ["job_a", "job_b", "job_c"]
    for job in found.jobs:
        assert tuple(job.fields) == CANDIDATE_FIELDS
        assert job.fields["urgent"] == OWNER  # whose subscription waits for a first look
        assert float(job.fields["started_at"]) == pytest.approx(found.now, abs=5)
        assert (job.fields["polls"], job.fields["last_polled_at"], job.fields["status"]) == (
            "", "", "")

    again = await cycle(store)
    assert again.allowance == 50 and sorted(j.job_id for j in again.jobs) == sorted(
        j.job_id for j in found.jobs)
    for job_id, score in scores.items():
        assert await store.redis.hget(keys.watch(job_id), "lease") is None
        assert await due_at(store, job_id) == score


async def test_candidates_carry_what_the_last_poll_saw(store: Store) -> None:
    """After a written-back poll the candidate fields hold the status, model, created_at,
    poll count and poll time, and no longer the urgent mark."""
    await watch(store, "job_seen")
    written = await poll_once(store, ["job_seen"])
    await store.redis.zadd(keys.DUE, {"job_seen": 0})
    found = await cycle(store)
    [job] = found.jobs
    assert job.fields["status"] == "processing"
    assert job.fields["model"] == MODEL
    assert job.fields["created_at"] == "2026-02-13T10:00:00.500Z"  # within Varg's second
    assert job.fields["polls"] == "1"
    assert float(job.fields["last_polled_at"]) == pytest.approx(written.now, abs=5)
    assert job.fields["urgent"] == ""


async def test_max_candidates_names_the_earliest_due_first(store: Store) -> None:
    """At most max_candidates jobs come back, the ones due longest."""
    for job_id in ("job_1", "job_2", "job_3", "job_4", "job_5"):
        await watch(store, job_id)
    scores = {"job_1": 50, "job_2": 10, "job_3": 40, "job_4": 20, "job_5": 30}
    await store.redis.zadd(keys.DUE, scores)
    found = await cycle(store, max_candidates=2)
    assert [j.job_id for j in found.jobs] == ["job_2", "job_4"]


async def test_nothing_due_is_idle_with_the_wait_until_the_next_due_job(store: Store) -> None:
    """With no due job: reason `idle`, no allowance, no candidates, and `wait` is the time
    until the next one is due (an hour when nothing is watched)."""
    empty = await cycle(store)
    assert (empty.reason, empty.allowance, empty.jobs, empty.wait) == ("idle", 0, [], 3600.0)

    await watch(store, "job_later")
    written = await poll_once(store, ["job_later"])  # due again DELAY seconds after this
    found = await cycle(store)
    assert (found.reason, found.allowance, found.jobs) == ("idle", 0, [])
    assert found.wait == pytest.approx(written.now + DELAY - found.now, abs=0.01)
    assert 0 < found.wait <= DELAY


async def test_max_candidates_zero_only_writes_back(store: Store) -> None:
    """poll_cycle(..., max_candidates=0) applies the decisions (the watch records the poll, the
    subscription gets its event and is kicked) but names no candidate, though one is due,
    and leaves the budget alone."""
    sid = await watch(store, "job_polled")
    await watch(store, "job_waiting")
    budget = Budget(limit=3, window=61.0, pace=0.0625, burst=64)
    found = await cycle(store, budget)
    [leased] = await store.lease(["job_polled"], "tok-w", LEASE, budget)

    written = await cycle(store, budget, decisions_for([leased], "tok-w", found.now),
                          max_candidates=0)
    assert (written.reason, written.allowance, written.jobs, written.wait) == ("idle", 0, [], 0.0)
    assert written.kicked == [sid]
    assert await store.redis.hget(keys.watch("job_polled"), "polls") == "1"
    assert await store.redis.hget(keys.watch("job_polled"), "status") == "processing"
    assert await store.redis.llen(keys.outbox(sid)) == 1
    # Only the one lease was charged: 2 of 3 left.
    assert (await cycle(store, budget)).allowance == 2


async def test_a_pause_names_no_candidate_but_still_writes_back(store: Store) -> None:
    """While the deployment-wide pause (a 429's Retry-After) lasts, poll_cycle answers `pause`
    with the time left and no candidates, but a batch polled before it is still written back."""
    await watch(store, "job_p")
    found = await cycle(store)
    jobs = await store.lease(["job_p"], "tok-p", LEASE, ROOMY)
    await store.pause_upstream(20)
    await store.redis.zadd(keys.DUE, {"job_other": 0})
    paused = await cycle(store, decisions=decisions_for(jobs, "tok-p", found.now))
    assert (paused.reason, paused.allowance, paused.jobs) == ("pause", 0, [])
    assert 15 < paused.wait <= 20
    assert await store.redis.hget(keys.watch("job_p"), "polls") == "1"


# --- the budget --------------------------------------------------------------------------------


async def test_leasing_takes_at_most_the_allowance_and_a_spent_window_says_budget(
    store: Store
) -> None:
    """Budget(limit=5, window=61) with a pace that never binds: the allowance is 5, a lease of
    8 ids takes 5, and then (5 requests within the window) the allowance is 0 with reason
    `budget` and a wait of about the window; a further lease takes nothing."""
    budget = Budget(limit=5, window=61.0, pace=0.0625, burst=64)
    ids = await watched(store, 8)
    found = await cycle(store, budget)
    assert (found.reason, found.allowance) == ("due", 5)

    leased = await store.lease(ids, "tok-1", LEASE, budget)
    assert [j.job_id for j in leased] == ids[:5]

    spent = await cycle(store, budget)
    assert (spent.reason, spent.allowance, spent.jobs) == ("budget", 0, [])
    assert 55 < spent.wait <= 61.0
    assert await store.lease(ids[5:], "tok-2", LEASE, budget) == []
    assert all([await store.redis.hget(keys.watch(j), "lease") is None for j in ids[5:]])


async def test_the_allowance_is_the_room_left_in_the_window(store: Store) -> None:
    """After 3 of 5 requests, the allowance is the 2 left, whatever the burst would allow."""
    budget = Budget(limit=5, window=61.0, pace=0.0625, burst=64)
    ids = await watched(store, 6)
    assert len(await store.lease(ids[:3], "tok-1", LEASE, budget)) == 3
    assert (await cycle(store, budget)).allowance == 2


async def test_the_window_slides(store: Store) -> None:
    """Budget(limit=2, window=1 s): spent, it waits at most the window, then allows 2 again.
    Sleeps about 1 s."""
    budget = Budget(limit=2, window=1.0, pace=0.0625, burst=64)
    ids = await watched(store, 4)
    assert len(await store.lease(ids[:2], "tok-1", LEASE, budget)) == 2
    spent = await cycle(store, budget)
    assert spent.reason == "budget" and 0 < spent.wait <= 1.0
    await asyncio.sleep(spent.wait + 0.05)
    again = await cycle(store, budget)
    assert (again.reason, again.allowance) == ("due", 2)


async def test_pacing_after_a_burst_the_next_request_waits_about_a_pace(store: Store) -> None:
    """Budget(limit=5, window=61, pace=12, burst=2) (5 a minute): a fresh budget allows the
    burst of 2, not the 5 the window has room for; once those are taken the next one waits
    about a pace (12 s), with reason `budget`."""
    budget = Budget(limit=5, window=61.0, pace=12.0, burst=2)
    ids = await watched(store, 4)
    found = await cycle(store, budget)
    assert (found.reason, found.allowance) == ("due", 2)
    assert [j.job_id for j in await store.lease(ids, "tok-1", LEASE, budget)] == ids[:2]

    paced = await cycle(store, budget)
    assert (paced.reason, paced.allowance, paced.jobs) == ("budget", 0, [])
    assert 11.0 < paced.wait <= 12.0
    assert await store.lease(ids[2:], "tok-2", LEASE, budget) == []


async def test_pacing_releases_one_request_per_pace(store: Store) -> None:
    """Budget(pace=0.5 s, burst=2): after the burst, one request is allowed once its wait
    has passed, and only one. Sleeps about 0.5 s."""
    budget = Budget(limit=100, window=61.0, pace=0.5, burst=2)
    ids = await watched(store, 4)
    assert len(await store.lease(ids, "tok-1", LEASE, budget)) == 2
    paced = await cycle(store, budget)
    assert paced.reason == "budget" and 0.3 < paced.wait <= 0.5
    await asyncio.sleep(paced.wait + 0.02)
    after = await cycle(store, budget)
    assert (after.reason, after.allowance) == ("due", 1)
    assert [j.job_id for j in await store.lease(ids[2:], "tok-2", LEASE, budget)] == ids[2:3]


@pytest.mark.parametrize("limit", [30, 45, 60, 100, 120])
async def test_an_unused_budget_allows_its_whole_burst(store: Store, limit: int) -> None:
    """The budget a worker builds from RELAY_UPSTREAM_RATE_LIMIT=limit (relay/upstream/poller.py
    `upstream_budget`: pace 61/limit, burst max(1, limit*2/60)), never used: the allowance is
    the whole burst.

    Fails today for limits whose pace is not an exact binary fraction (45, 100; also 7, 13,
    18, 26, 28, 29, 33, 35, ... per minute): budget.lua computes
    floor((clock + burst*pace - clock) / pace) with clock ~1.7e9, where a double keeps only
    2^-22 s, so `clock + burst*pace - clock` can round below burst*pace and the floor loses one
    request. With burst 1 (any limit under 60) that leaves 0 forever: nothing is ever taken,
    so the pacing key never moves, and the relay never polls (see
    tests/workers/test_budget.py::test_a_budget_under_60_a_minute_still_polls)."""
    budget = upstream_budget(limit)
    await watch(store, "job_fresh")
    found = await cycle(store, budget)
    assert (found.reason, found.allowance) == ("due", budget.burst)


# --- leases ------------------------------------------------------------------------------------


async def test_lease_takes_ids_in_the_given_order_while_the_allowance_lasts(store: Store) -> None:
    """With room for 2, a lease of [d, b, a, c] takes d and b (the worker's best first), not
    the first due nor the first by name; a and c stay due and unleased."""
    for job_id in ("job_a", "job_b", "job_c", "job_d"):
        await watch(store, job_id)
    budget = Budget(limit=2, window=61.0, pace=0.0625, burst=64)
    leased = await store.lease(["job_d", "job_b", "job_a", "job_c"], "tok-1", LEASE, budget)
    assert [j.job_id for j in leased] == ["job_d", "job_b"]
    for job_id in ("job_a", "job_c"):
        assert await store.redis.hget(keys.watch(job_id), "lease") is None
    assert sorted(j.job_id for j in (await cycle(store)).jobs) == ["job_a", "job_c"]


async def test_a_lease_returns_the_watch_sets_its_token_and_pushes_its_due_time(
    store: Store
) -> None:
    """A leased job comes back with WATCH_FIELDS, its watch holds the lease token, and its due
    score is now + the lease length: it is no longer a candidate, and a second lease of the
    same id (another worker, another token) gets nothing and leaves the first lease alone."""
    await watch(store, "job_l")
    before = await cycle(store)
    [job] = await store.lease(["job_l"], "tok-first", LEASE, ROOMY)
    after = await cycle(store)

    assert job.job_id == "job_l" and tuple(job.fields) == WATCH_FIELDS
    assert float(job.fields["deadline"]) == pytest.approx(before.now + 3600.0, abs=5)
    assert job.fields["failures"] == "0"
    assert await store.redis.hget(keys.watch("job_l"), "lease") == "tok-first"
    score = await due_at(store, "job_l")
    assert score is not None and before.now + LEASE <= score <= after.now + LEASE
    assert after.jobs == []

    assert await store.lease(["job_l"], "tok-second", LEASE, ROOMY) == []
    assert await store.redis.hget(keys.watch("job_l"), "lease") == "tok-first"
    assert await due_at(store, "job_l") == score


async def test_a_job_not_due_and_an_unknown_id_are_skipped_and_not_charged(store: Store) -> None:
    """lease([unknown, not due, due]) takes only the due one, leaves the other watch as it
    was, and charges the budget for one request (an empty lease charges nothing)."""
    await watch(store, "job_due")
    await watch(store, "job_later")
    await watch(store, "job_spare")  # stays due, so poll_cycle reports the allowance
    found = await cycle(store)
    later = found.now + 100
    await store.redis.zadd(keys.DUE, {"job_later": later})
    budget = Budget(limit=3, window=61.0, pace=0.0625, burst=64)

    leased = await store.lease(["job_nope", "job_later", "job_due"], "tok-1", LEASE, budget)
    assert [j.job_id for j in leased] == ["job_due"]
    assert await store.redis.hget(keys.watch("job_later"), "lease") is None
    assert await due_at(store, "job_later") == pytest.approx(later)
    assert not await store.redis.exists(keys.watch("job_nope"))
    assert (await cycle(store, budget)).allowance == 2
    assert await store.lease([], "tok-2", LEASE, budget) == []
    assert (await cycle(store, budget)).allowance == 2


# --- with budget to spare: any job past the minimum interval ----------------------------------

SPARE = 0.2  # the minimum interval of these tests: far below DELAY (when the schedule says)


async def test_with_budget_to_spare_a_job_not_due_is_pollable_after_the_min_interval(
    store: Store,
) -> None:
    """Polled once, its schedule says "not for DELAY seconds". Given a minimum interval, poll.lua
    names it (reason `due`) once that interval has passed, and lease.lua takes it; before, it
    is idle with the wait until then. Without one (None), only its due time counts. Sleeps
    SPARE."""
    await watch(store, "job_early")
    await poll_once(store, ["job_early"])
    soon = await cycle(store, min_interval=SPARE)
    assert (soon.reason, soon.jobs) == ("idle", [])
    assert 0 < soon.wait <= SPARE
    await asyncio.sleep(soon.wait + 0.01)
    assert (await cycle(store)).reason == "idle"  # by its schedule alone: not yet
    found = await cycle(store, min_interval=SPARE)
    assert (found.reason, [j.job_id for j in found.jobs]) == ("due", ["job_early"])
    assert await store.lease(["job_early"], "tok-x", LEASE, ROOMY) == []  # not due yet
    [job] = await store.lease(["job_early"], "tok-x", LEASE, ROOMY, SPARE)
    assert job.job_id == "job_early"
    assert await due_at(store, "job_early") == pytest.approx(found.now + LEASE, abs=1)


async def test_leased_or_failing_jobs_keep_their_own_schedule(store: Store) -> None:
    """Past the minimum interval, but leased (a poll in flight) or backing off after an
    upstream error: neither is named nor leased before its due time. Sleeps SPARE."""
    await watch(store, "job_leased")
    await watch(store, "job_failing")
    found = await cycle(store)
    jobs = await store.lease(["job_leased", "job_failing"], "tok-l", LEASE, ROOMY)
    failing = [j for j in jobs if j.job_id == "job_failing"]
    error = PollResult(Outcome.server_error, status_code=500)
    decisions = [decide(j.job_id, "tok-l", j.fields, error, found.now, FIXED, PollPolicy())
                 for j in failing]
    await cycle(store, decisions=decisions, max_candidates=0)
    await asyncio.sleep(SPARE + 0.01)
    later = await cycle(store, min_interval=SPARE)
    assert later.jobs == []
    assert await store.lease(["job_leased", "job_failing"], "tok-m", LEASE, ROOMY, SPARE) == []


async def test_next_poll_at_is_the_earliest_poll(store: Store) -> None:
    """With a minimum interval, the watch shows the earliest next poll (the interval after the
    poll: when it happens with budget to spare), while the due set keeps the schedule's time
    (its order)."""
    await watch(store, "job_n")
    found = await cycle(store)
    jobs = await store.lease(["job_n"], "tok-n", LEASE, ROOMY)
    written = await cycle(store, decisions=decisions_for(jobs, "tok-n", found.now),
                          max_candidates=0, min_interval=SPARE)
    next_poll = float(await store.redis.hget("vr:watch:job_n", "next_poll_at") or 0)
    assert next_poll == pytest.approx(found.now + SPARE, abs=0.002)
    assert await due_at(store, "job_n") == pytest.approx(written.now + DELAY, abs=0.001)


async def test_a_lease_notes_whose_first_look_it_was(store: Store) -> None:
    """vr:firstlooks: a new job's first poll counts for its subscriber's owner (and as an
    `other` poll); a re-subscribed job's for the new subscriber's owner and as a `tier` poll;
    any later poll as `other`. poll_cycle hands the hash to the worker."""
    await watch(store, "job_f1")
    found = await cycle(store)
    assert found.first_looks == {}
    [job] = await store.lease(["job_f1"], "tok-1", LEASE, ROOMY)
    looks = await store.redis.hgetall("vr:firstlooks")
    assert set(looks) == {OWNER, "other"}
    await cycle(store, decisions=decisions_for([job], "tok-1", found.now), max_candidates=0)

    other_owner = "f" * 32
    await store.subscribe(new_id("sub"), other_owner, "job_f1", URL, EVENTS, {}, 3600.0)
    found = await cycle(store)
    assert set(found.first_looks) == {OWNER, "other"}
    await store.lease(["job_f1"], "tok-2", LEASE, ROOMY)
    looks = await store.redis.hgetall("vr:firstlooks")
    assert set(looks) == {OWNER, other_owner, "other", "tier"}
    assert float(looks["tier"]) >= float(looks["other"])


# --- write-back --------------------------------------------------------------------------------


async def test_a_write_back_with_the_lease_token_clears_the_lease_and_reschedules(
    store: Store
) -> None:
    """The decision carrying the lease's token is applied: the lease (and urgent mark) go, the
    status and poll count are recorded, the subscription is kicked, and the job is due again
    at now + the decision's delay."""
    sid = await watch(store, "job_w")
    found = await cycle(store)
    jobs = await store.lease(["job_w"], "tok-w", LEASE, ROOMY)
    written = await cycle(store, decisions=decisions_for(jobs, "tok-w", found.now),
                          max_candidates=0)

    assert written.kicked == [sid]
    hash_ = await store.redis.hgetall(keys.watch("job_w"))
    assert "lease" not in hash_ and "urgent" not in hash_
    assert (hash_["status"], hash_["polls"], hash_["model"]) == ("processing", "1", MODEL)
    assert float(hash_["next_poll_at"]) == pytest.approx(written.now + DELAY, abs=0.002)
    assert await due_at(store, "job_w") == pytest.approx(written.now + DELAY, abs=0.001)


async def test_a_write_back_with_a_stale_token_is_ignored(store: Store) -> None:
    """Worker A's lease runs out (0.05 s here) and worker B leases the job again: A's late
    write-back changes nothing (no status, no poll counted, no event, B's lease and due time
    stay); B's is applied. Sleeps 0.1 s."""
    sid = await watch(store, "job_s")
    first = await cycle(store)
    a_jobs = await store.lease(["job_s"], "tok-a", 0.05, ROOMY)
    await asyncio.sleep(0.1)
    second = await cycle(store)
    assert [j.job_id for j in second.jobs] == ["job_s"]  # due again: A's lease ran out
    b_jobs = await store.lease(["job_s"], "tok-b", LEASE, ROOMY)
    assert [j.job_id for j in b_jobs] == ["job_s"]
    b_due = await due_at(store, "job_s")

    late = await cycle(store, decisions=decisions_for(a_jobs, "tok-a", first.now),
                       max_candidates=0)
    assert late.kicked == []
    hash_ = await store.redis.hgetall(keys.watch("job_s"))
    assert hash_["lease"] == "tok-b"
    assert "polls" not in hash_ and "status" not in hash_
    assert await due_at(store, "job_s") == b_due
    assert await store.redis.llen(keys.outbox(sid)) == 0

    applied = await cycle(store, decisions=decisions_for(b_jobs, "tok-b", second.now),
                          max_candidates=0)
    assert applied.kicked == [sid]
    assert await store.redis.hget(keys.watch("job_s"), "polls") == "1"


async def test_a_decision_is_applied_once(store: Store) -> None:
    """Writing back the same decisions twice (a retried round trip) counts one poll and
    queues one event: the first write-back consumed the lease token."""
    sid = await watch(store, "job_once")
    found = await cycle(store)
    jobs = await store.lease(["job_once"], "tok-o", LEASE, ROOMY)
    decisions = decisions_for(jobs, "tok-o", found.now)
    await cycle(store, decisions=decisions, max_candidates=0)
    again = await cycle(store, decisions=decisions, max_candidates=0)
    assert again.kicked == []
    assert await store.redis.hget(keys.watch("job_once"), "polls") == "1"
    assert await store.redis.llen(keys.outbox(sid)) == 1


# --- urgency -----------------------------------------------------------------------------------


async def test_a_new_subscription_marks_the_watch_urgent_and_the_write_back_clears_it(
    store: Store
) -> None:
    """subscribe.lua marks the watch urgent and due now; the write-back clears the mark. A
    second, different subscription to the polled job marks it urgent and due now again (and
    it is then worth FIRST_LOOK: the new subscriber waits for its first status); a duplicate
    of a live one (same owner, url, events) does neither."""
    await watch(store, "job_u")
    assert await store.redis.hget(keys.watch("job_u"), "urgent") == OWNER
    written = await poll_once(store, ["job_u"])
    assert await store.redis.hget(keys.watch("job_u"), "urgent") is None
    assert await due_at(store, "job_u") == pytest.approx(written.now + DELAY, abs=0.001)

    await store.subscribe(new_id("sub"), OWNER, "job_u", URL, EVENTS, {}, 3600.0)  # duplicate
    assert await store.redis.hget(keys.watch("job_u"), "urgent") is None
    assert (await cycle(store)).jobs == []

    await watch(store, "job_u", url=URL + "/second")
    assert await store.redis.hget(keys.watch("job_u"), "urgent") == OWNER
    found = await cycle(store)
    [job] = found.jobs
    assert job.job_id == "job_u" and job.fields["urgent"] == OWNER
    assert job.fields["polls"] == "1"
    limits = Limits(not_found_grace=60.0, min_interval=1.0, max_interval=60.0)
    assert priority(job.fields, found.now, limits, PollPolicy()) == (FIRST_LOOK, 0.0)


async def test_a_pause_taken_after_the_candidates_were_named_stops_the_lease(
    store: Store,
) -> None:
    """A 429 seen by another worker between this worker's poll.lua and its lease.lua: the
    lease takes nothing and charges nothing."""
    await watch(store, "job_p")
    found = await cycle(store)
    assert [j.job_id for j in found.jobs] == ["job_p"]
    await store.pause_upstream(5.0)
    assert await store.lease(["job_p"], "tok-a", LEASE, ROOMY) == []
    assert await store.redis.zcard(keys.RL_WINDOW) == 0
    assert await store.redis.hget(keys.watch("job_p"), "lease") is None


async def test_a_429_pauses_every_worker_and_is_counted_for_the_dashboard(store: Store) -> None:
    """upstream_rate_limited: Varg's 429s (two in a batch) pause the shared budget for the
    Retry-After and are remembered, one each, for the dashboard's chart."""
    await store.upstream_rate_limited(2, 5.0, time.time())
    assert 4000 < await store.redis.pttl(keys.PAUSE) <= 5000
    assert await store.redis.zcard(keys.RATE_LIMITED) == 2


async def test_a_new_subscription_leaves_a_poll_in_flight_alone(store: Store) -> None:
    """While a job is leased its due time is the lease's end; a second subscription does not
    make it due again (a second worker would poll it twice): the poll in flight's write-back
    tells the new subscription."""
    await watch(store, "job_f")
    await cycle(store)
    [job] = await store.lease(["job_f"], "tok-a", LEASE, ROOMY)
    leased_until = await due_at(store, "job_f")
    await watch(store, "job_f", url="https://hooks.example.com/second")
    assert await due_at(store, "job_f") == leased_until
    found = await cycle(store, decisions=decisions_for([job], "tok-a", leased_until or 0.0))
    assert found.kicked and len(set(found.kicked)) == 2  # both subscriptions hear `processing`


async def test_varg_s_own_lower_limit_caps_the_budget(store: Store) -> None:
    """Configured for 50 a minute, but Varg says the key allows 5: the window holds 5 and the
    pace slows tenfold, until the cap expires."""
    budget = Budget(limit=50, window=61.0, pace=1.2, burst=64)
    ids = await watched(store, 8)
    assert await store.cap_upstream(5, 60) is True
    assert await store.cap_upstream(5, 60) is False  # not news: logged once
    assert (await cycle(store, budget)).allowance == 5
    assert len(await store.lease(ids, "tok-1", LEASE, budget)) == 5
    spent = await cycle(store, budget)
    assert (spent.reason, spent.allowance) == ("budget", 0)
    assert 55 < spent.wait <= 61.0  # the capped window, not a 1.2 s pace


async def test_a_cap_above_the_configured_limit_changes_nothing(store: Store) -> None:
    budget = Budget(limit=5, window=61.0, pace=0.0625, burst=64)
    await watched(store, 8)
    await store.cap_upstream(500, 60)
    assert (await cycle(store, budget)).allowance == 5
