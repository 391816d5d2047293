"""relay.store and its Lua scripts against a real Redis: what is kept where, and in how little.

Polls are driven by hand (lease, `decide`, write back) so each test controls what Varg says.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from relay.events import ALL_EVENTS
from relay.ids import new_id
from relay.store import keys
from relay.store.store import Budget, Store
from relay.upstream.client import Outcome, PollResult
from relay.upstream.policy import decide
from relay.upstream.runtimes import Limits, PollPolicy

OWNER = "0123456789abcdef0123456789abcdef"  # as api.owner_of makes them
URL = "https://hooks.example.com/varg"
LIMITS = Limits(not_found_grace=0.0, min_interval=60.0, max_interval=60.0)
BUDGET = Budget(limit=1000, window=61.0, pace=0.001, burst=1000)
RETENTION = 3600.0
# A job as Varg returns it: long enough (200+ bytes) to matter for Redis's compact encoding.
CACHE = {"hit": False, "key": "sha256:" + "fa" * 32}


def varg_job(job_id: str, status: str) -> dict[str, Any]:
    return {"job_id": job_id, "status": status, "model": "fal:flux-schnell",
            "created_at": "2026-02-13T10:00:00.000Z", "cache": CACHE}


def ok(job_id: str, status: str) -> PollResult:
    return PollResult(Outcome.ok, job=varg_job(job_id, status), status_code=200)


NOT_FOUND = PollResult(Outcome.not_found, status_code=404)


@pytest.fixture
def store(redis: Redis) -> Store:
    return Store(redis)


async def subscribe(store: Store, job_id: str, url: str = URL,
                    events: list[str] | None = None, metadata: dict[str, Any] | None = None,
                    owner: str = OWNER) -> str:
    events = events or ["job.queued", "job.processing", "job.completed", "job.not_found"]
    sid, _ = await store.subscribe(new_id("sub"), owner, job_id, url, events,
                                   metadata or {}, 3600.0)
    return sid


async def poll(store: Store, results: dict[str, PollResult]) -> list[str]:
    """Lease every due job, answer each with its result, write back; the subscriptions kicked."""
    token = new_id("lease")
    found = await store.poll_cycle([], RETENTION, 100, BUDGET)
    jobs = await store.lease([j.job_id for j in found.jobs], token, 30.0, BUDGET)
    decisions = [decide(j.job_id, token, j.fields, results[j.job_id], found.now, LIMITS,
                        PollPolicy()) for j in jobs]
    assert decisions, "nothing was due"
    written = await store.poll_cycle(decisions, RETENTION, 0, BUDGET)
    return written.kicked


async def make_due(redis: Redis, job_id: str) -> None:
    await redis.zadd(keys.DUE, {job_id: 0})


async def bodies(store: Store, sid: str) -> list[dict[str, Any]]:
    found = await store.deliveries(await store.delivery_ids(sid))
    return [json.loads(msg["body"]) for msg, _ in found]


# --- the watch and the job JSON ------------------------------------------------------------


async def test_the_job_json_is_kept_apart_so_the_watch_hash_stays_compact(
    store: Store, redis: Redis
) -> None:
    await subscribe(store, "job_a")
    await poll(store, {"job_a": ok("job_a", "queued")})
    job_json = await redis.get(keys.job("job_a"))
    assert json.loads(job_json) == varg_job("job_a", "queued")
    assert len(job_json) > 64  # what would convert the watch hash
    assert await redis.object("encoding", keys.watch("job_a")) == "listpack"
    watch = await store.watch("job_a")
    assert watch is not None
    assert json.loads(watch["job"]) == varg_job("job_a", "queued")
    assert watch["status"] == "queued"


async def test_not_found_announces_the_job_as_last_seen(store: Store, redis: Redis) -> None:
    sid = await subscribe(store, "job_b")
    await poll(store, {"job_b": ok("job_b", "processing")})
    await make_due(redis, "job_b")
    await poll(store, {"job_b": NOT_FOUND})
    last = await bodies(store, sid)
    assert [b["type"] for b in last] == ["job.processing", "job.not_found"]
    assert last[-1]["data"]["job"] == varg_job("job_b", "processing")


async def test_not_found_before_any_job_was_seen_announces_none(store: Store) -> None:
    sid = await subscribe(store, "job_c")
    await poll(store, {"job_c": NOT_FOUND})
    assert [b["data"]["job"] for b in await bodies(store, sid)] == [None]


async def test_an_ended_watch_expires_with_its_job_and_a_new_subscription_keeps_both(
    store: Store, redis: Redis
) -> None:
    await subscribe(store, "job_d")
    await poll(store, {"job_d": ok("job_d", "completed")})
    for key in (keys.watch("job_d"), keys.job("job_d")):
        assert 0 < await redis.ttl(key) <= RETENTION
    await subscribe(store, "job_d", url=URL + "/again")
    for key in (keys.watch("job_d"), keys.job("job_d")):
        assert await redis.ttl(key) == -1


# --- subscriptions ---------------------------------------------------------------------------


async def test_events_are_stored_as_letters_and_filter_the_fan_out(
    store: Store, redis: Redis
) -> None:
    wants_all = await subscribe(store, "job_e", url=URL + "/all")
    only_done = await subscribe(store, "job_e", url=URL + "/done",
                                events=["job.completed", "job.failed"])
    assert await redis.hget(keys.sub(only_done), "events") == "cf"
    await poll(store, {"job_e": ok("job_e", "processing")})
    await make_due(redis, "job_e")
    await poll(store, {"job_e": ok("job_e", "completed")})
    assert [b["type"] for b in await bodies(store, wants_all)] == [
        "job.processing", "job.completed"]
    assert [b["type"] for b in await bodies(store, only_done)] == ["job.completed"]


async def test_a_live_duplicate_is_folded_into_the_first(store: Store, redis: Redis) -> None:
    first = await subscribe(store, "job_f", events=["job.completed", "job.failed"])
    again, created = await store.subscribe(new_id("sub"), OWNER, "job_f", URL,
                                           ["job.failed", "job.completed"], {}, 3600.0)
    assert (again, created) == (first, False)
    other_owner = await subscribe(store, "job_f", events=["job.completed", "job.failed"],
                                  owner="f" * 32)
    other_url = await subscribe(store, "job_f", url=URL + "?x",
                                events=["job.completed", "job.failed"])
    assert len({first, other_owner, other_url}) == 3
    assert await store.job_subscription_ids("job_f") == sorted([first, other_owner, other_url])


async def test_a_finished_subscription_is_kept_for_listing_but_not_folded_into(
    store: Store, redis: Redis
) -> None:
    first = await subscribe(store, "job_g")
    await store.delete(first)
    second = await subscribe(store, "job_g")
    assert second != first
    assert await store.job_subscription_ids("job_g") == sorted([first, second])
    index = await redis.hgetall(keys.jobsubs("job_g"))
    assert (index[first], index[second]) == ("0", "1")
    assert list(index.values()).count(second) == 1 and first not in index.values()


async def test_the_watch_ends_when_no_subscription_wants_its_events(
    store: Store, redis: Redis
) -> None:
    sid = await subscribe(store, "job_h")
    await poll(store, {"job_h": ok("job_h", "queued")})
    assert await redis.zscore(keys.DUE, "job_h") is not None
    await store.delete(sid)
    await make_due(redis, "job_h")
    await poll(store, {"job_h": ok("job_h", "processing")})
    assert await redis.zscore(keys.DUE, "job_h") is None
    assert await redis.hget(keys.watch("job_h"), "active") == "0"
    assert [b["type"] for b in await bodies(store, sid)] == ["job.queued"]


async def test_a_watch_with_one_subscription_is_compact_after_a_poll(
    store: Store, redis: Redis
) -> None:
    sid = await subscribe(store, "job_i", events=[str(e) for e in ALL_EVENTS],
                          metadata={"order": 42})
    await poll(store, {"job_i": ok("job_i", "queued")})
    for key in (keys.sub(sid), keys.watch("job_i"), keys.jobsubs("job_i")):
        assert await redis.object("encoding", key) == "listpack", key
    sub, watch = await redis.hgetall(keys.sub(sid)), await redis.hgetall(keys.watch("job_i"))
    assert sub["last_status"] == "queued"
    times = [sub["created_at"], sub["updated_at"], watch["started_at"], watch["deadline"],
             watch["last_polled_at"], watch["next_poll_at"]]
    assert all(re.fullmatch(r"\d{10}\.\d{3}", t) for t in times), times  # to the millisecond


async def test_purge_forgets_every_key_of_a_finished_subscription(
    store: Store, redis: Redis
) -> None:
    sid = await subscribe(store, "job_j")
    await poll(store, {"job_j": ok("job_j", "queued")})
    await store.delete(sid)
    assert await store.purge_finished(before=time.time() + 1) == 1
    left = {key async for key in redis.scan_iter(match=keys.PREFIX + "*")}
    assert not {key for key in left if sid in key or key.startswith(keys.msg("msg_"))}
    assert not left & {keys.owner(OWNER), keys.jobsubs("job_j"), keys.FINISHED}


LONG_URL = "https://hooks.example.com/varg/webhooks/a1b2c3d4e5f6/events?token=" + "t" * 54
LONG_METADATA = {"order_id": "ord_" + "9" * 40, "customer": "cus_" + "7" * 30}


async def test_a_long_url_and_metadata_get_keys_of_their_own(
    store: Store, redis: Redis
) -> None:
    assert len(LONG_URL) == 120
    sid = await subscribe(store, "job_k", url=LONG_URL, metadata=LONG_METADATA)
    await poll(store, {"job_k": ok("job_k", "queued")})
    assert await redis.object("encoding", keys.sub(sid)) == "listpack"
    assert await redis.get(keys.spilled(sid, "url")) == LONG_URL
    assert json.loads(await redis.get(keys.spilled(sid, "metadata"))) == LONG_METADATA
    sub = await store.subscription(sid)
    assert sub is not None
    assert (sub["url"], json.loads(sub["metadata"])) == (LONG_URL, LONG_METADATA)
    assert (await store.subscriptions([sid, "sub_gone"]))[0]["url"] == LONG_URL
    assert [b["data"]["metadata"] for b in await bodies(store, sid)] == [LONG_METADATA]
    head = await store.outbox_head(sid)
    assert head is not None and head[1]["url"] == LONG_URL


async def test_a_short_url_and_metadata_stay_in_the_hash(store: Store, redis: Redis) -> None:
    metadata = {"a": "x" * 56}  # 64 bytes of JSON without spaces, as stored
    sid = await subscribe(store, "job_l", metadata=metadata)
    stored = await redis.hmget(keys.sub(sid), ["url", "metadata"])
    assert stored == [URL, '{"a":"' + "x" * 56 + '"}']
    assert not await redis.exists(keys.spilled(sid, "url"), keys.spilled(sid, "metadata"))


async def test_purge_forgets_long_values_too(store: Store, redis: Redis) -> None:
    sid = await subscribe(store, "job_m", url=LONG_URL, metadata=LONG_METADATA)
    await store.delete(sid)
    assert await store.purge_finished(before=time.time() + 1) == 1
    assert not [key async for key in redis.scan_iter(match=keys.sub(sid) + "*")]


@pytest.mark.parametrize(("outcome", "state"), [("succeeded", "done"), ("disabled", "disabled")])
async def test_a_subscription_finished_by_delivery_frees_its_place(
    store: Store, redis: Redis, outcome: str, state: str
) -> None:
    sid = await subscribe(store, "job_n")
    await poll(store, {"job_n": ok("job_n", "completed")})
    head = await store.outbox_head(sid)
    assert head is not None
    attempt = {"at": time.time(), "status_code": 200, "error": None, "duration_ms": 1}
    await store.record_attempt(head[0], attempt, outcome, None)
    assert (await store.subscription(sid) or {}).get("state") == state
    assert await redis.hgetall(keys.jobsubs("job_n")) == {sid: "0"}
    assert await redis.zscore(keys.FINISHED, sid) is not None
    assert await subscribe(store, "job_n") != sid
