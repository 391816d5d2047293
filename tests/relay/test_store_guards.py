"""The Lua scripts against records that are gone or finished: Redis does not undo a script's
earlier writes when it fails later, so each script checks its record before writing anything.
Real Redis; every key left behind is listed."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from relay.ids import new_id
from relay.store import keys
from relay.store.store import CapReached, Resent, Store
from tests.relay.test_store import OWNER, URL, ok, poll, subscribe

ATTEMPT = {"at": 1.0, "status_code": 500, "error": "HTTP 500", "duration_ms": 1}


@pytest.fixture
def store(redis: Redis) -> Store:
    return Store(redis)


async def all_keys(redis: Redis) -> set[str]:
    return {key async for key in redis.scan_iter(match=keys.PREFIX + "*")}


async def purged_with_a_pending_delivery(store: Store, job_id: str) -> tuple[str, dict[str, str]]:
    """A subscription with an event queued, deleted and purged: its delivery, as a chain that
    read it just before would still hold it."""
    sid = await subscribe(store, job_id)
    await poll(store, {job_id: ok(job_id, "queued")})
    head = await store.outbox_head(sid)
    assert head is not None
    assert await store.delete(sid)
    assert await store.purge_finished(before=time.time() + 1) == 1
    return sid, head[0]


def of(sid: str, mid: str, found: set[str]) -> set[str]:
    return {k for k in found if sid in k or mid in k}


@pytest.mark.parametrize("outcome", ["succeeded", "failed", "retry", "disabled"])
async def test_an_attempt_recorded_after_a_purge_writes_nothing(
    store: Store, redis: Redis, outcome: str
) -> None:
    sid, msg = await purged_with_a_pending_delivery(store, "job_a")
    before = await all_keys(redis)
    assert of(sid, msg["id"], before) == set()
    assert await store.record_attempt(msg, ATTEMPT, outcome, time.time() + 5) is False
    assert await all_keys(redis) == before
    assert not await redis.zscore(keys.FINISHED, sid)
    assert not await redis.sismember(keys.OUTBOXES, sid)


async def test_a_delete_after_a_purge_writes_nothing(store: Store, redis: Redis) -> None:
    sid, _ = await purged_with_a_pending_delivery(store, "job_b")
    before = await all_keys(redis)
    assert await store.delete(sid) is False
    assert await all_keys(redis) == before
    assert await redis.zscore(keys.FINISHED, sid) is None


async def test_a_resend_after_a_purge_queues_nothing(store: Store, redis: Redis) -> None:
    sid, msg = await purged_with_a_pending_delivery(store, "job_c")
    before = await all_keys(redis)
    assert await store.resend(msg["id"], sid) is Resent.missing
    assert await all_keys(redis) == before
    assert await store.outbox_head(sid) is None


async def test_a_resend_of_a_delivery_of_another_subscription_is_missing(
    store: Store, redis: Redis
) -> None:
    mine = await subscribe(store, "job_d")
    theirs = await subscribe(store, "job_d", url="https://other.example.com/h")
    await poll(store, {"job_d": ok("job_d", "queued")})
    head = await store.outbox_head(theirs)
    assert head is not None
    before = await all_keys(redis)
    assert await store.resend(head[0]["id"], mine) is Resent.missing
    assert await all_keys(redis) == before


async def test_a_resend_for_a_deleted_subscription_is_refused(
    store: Store, redis: Redis
) -> None:
    sid = await subscribe(store, "job_e")
    await poll(store, {"job_e": ok("job_e", "queued")})
    head = await store.outbox_head(sid)
    assert head is not None
    await store.delete(sid)
    assert await store.resend(head[0]["id"], sid) is Resent.deleted
    assert await store.outbox_head(sid) is None


@pytest.mark.parametrize("outcome", ["disabled", "succeeded", "failed", "retry"])
async def test_deleted_is_final_whatever_answer_arrives_after_it(
    store: Store, redis: Redis, outcome: str
) -> None:
    """The attempt was in flight when the DELETE came; a 410 (or anything) answered later."""
    sid = await subscribe(store, "job_f")
    await poll(store, {"job_f": ok("job_f", "completed")})  # terminal: would finish it `done`
    head = await store.outbox_head(sid)
    assert head is not None
    assert await store.delete(sid)
    deleted = await store.subscription(sid)
    assert deleted is not None and deleted["state"] == "deleted"
    assert await store.record_attempt(head[0], ATTEMPT, outcome, time.time() + 5) is True
    after = await store.subscription(sid)
    assert after is not None
    assert (after["state"], after["updated_at"]) == ("deleted", deleted["updated_at"])
    msg = (await store.deliveries([head[0]["id"]]))[0][0]
    assert msg["next_attempt_at"] == ""  # never rescheduled
    assert not await redis.sismember(keys.OUTBOXES, sid)


async def test_a_second_delete_changes_nothing(store: Store, redis: Redis) -> None:
    sid = await subscribe(store, "job_g")
    assert await store.delete(sid)
    first = await store.subscription(sid)
    finished = await redis.zscore(keys.FINISHED, sid)
    await asyncio.sleep(0.01)
    assert await store.delete(sid)
    assert await store.subscription(sid) == first
    assert await redis.zscore(keys.FINISHED, sid) == finished


async def test_a_write_back_for_a_purged_subscription_recreates_nothing(
    store: Store, redis: Redis
) -> None:
    """A subscription purged while its job's index still lists it as listening (written by an
    older version, or by hand): the fan-out forgets it instead of writing to its hash."""
    sid = await subscribe(store, "job_h")
    gone = "sub_01JZZZZZZZZZZZZZZZZZZZZZZZ"
    await redis.hset(keys.jobsubs("job_h"), gone, "1")
    await poll(store, {"job_h": ok("job_h", "queued")})
    assert not await redis.exists(keys.sub(gone), keys.outbox(gone), keys.msgs(gone))
    index = await redis.hgetall(keys.jobsubs("job_h"))
    assert gone not in index and index[sid] == "1"


async def test_a_pause_only_ever_grows(store: Store, redis: Redis) -> None:
    await store.pause_upstream(30)  # a 429's Retry-After
    await store.pause_upstream(1)  # a 401 pause, a moment later
    assert await redis.pttl(keys.PAUSE) > 25_000
    await store.pause_upstream(60)
    assert await redis.pttl(keys.PAUSE) > 55_000


async def test_concurrent_pauses_keep_the_longest(store: Store, redis: Redis) -> None:
    lengths = [0.5, 40, 1, 2, 3, 0.2] * 10
    await asyncio.gather(*(store.pause_upstream(seconds) for seconds in lengths))
    assert await redis.pttl(keys.PAUSE) > 35_000


# --- the per-owner count the subscription cap reads ----------------------------------------


async def capped_subscribe(store: Store, job_id: str, cap: int = 1,
                           events: list[str] | None = None) -> str:
    sid, created = await store.subscribe(
        new_id("sub"), OWNER, job_id, URL, events or ["job.queued", "job.completed"], {},
        3600.0, cap=cap)
    assert created
    return sid


@pytest.mark.parametrize("outcome", ["succeeded", "failed", "disabled"])
async def test_a_subscription_finished_by_its_last_delivery_frees_its_place(
    store: Store, outcome: str
) -> None:
    sid = await capped_subscribe(store, "job_i")
    with pytest.raises(CapReached):
        await capped_subscribe(store, "job_j")
    await poll(store, {"job_i": ok("job_i", "completed")})
    head = await store.outbox_head(sid)
    assert head is not None
    await store.record_attempt(head[0], ATTEMPT, outcome, None)
    assert await store.active_count(OWNER) == 0
    await capped_subscribe(store, "job_j")
    assert await store.active_count(OWNER) == 1


async def test_a_subscription_finished_without_a_delivery_frees_its_place(
    store: Store
) -> None:
    """Its job ended with an event it did not ask for."""
    await capped_subscribe(store, "job_k", events=["job.queued"])
    await poll(store, {"job_k": ok("job_k", "completed")})
    assert await store.active_count(OWNER) == 0
    await capped_subscribe(store, "job_l")


async def test_finishing_twice_frees_one_place(store: Store) -> None:
    """A 410 after a DELETE, a second DELETE: the count drops once, never below the truth."""
    first = await capped_subscribe(store, "job_m", cap=2)
    await capped_subscribe(store, "job_n", cap=2)
    await poll(store, {"job_m": ok("job_m", "queued"), "job_n": ok("job_n", "queued")})
    head = await store.outbox_head(first)
    assert head is not None
    await store.delete(first)
    await store.delete(first)
    await store.record_attempt(head[0], ATTEMPT, "disabled", None)
    assert await store.active_count(OWNER) == 1
    await capped_subscribe(store, "job_o", cap=2)
    with pytest.raises(CapReached):
        await capped_subscribe(store, "job_p", cap=2)
