"""The routes the dashboard reads (relay/api/dashboard.py), through ASGITransport against a real
Redis; those that need polls and deliveries run the in-process worker against the simulator and
the verifying receiver."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from arq.worker import Worker
from redis.asyncio import Redis

from config import Settings
from relay.api import dashboard
from relay.store.store import Store
from tests.conftest import OTHER_TOKEN, Receiver, api_client, sim_job, subscribe
from tests.relay.test_api import (
    HOOK,
    assert_error,
    assert_validation,
    deliveries,
    is_iso,
)
from tests.support import eventually

Json = dict[str, Any]
SVG_NAMESPACE = "http://www.w3.org/2000/svg"  # a name, not a place anything is loaded from
JOB_KEYS = {"job_id", "status", "model", "created_at", "watching", "last_polled_at",
            "next_poll_at", "polls", "subscription_count"}


@pytest.fixture
async def bob(settings: Settings, redis: Redis) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings, OTHER_TOKEN) as client:
        yield client


async def get_json(client: httpx.AsyncClient, path: str, **params: Any) -> Json:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return body


async def walk(client: httpx.AsyncClient, path: str, **params: Any) -> list[Json]:
    """Every item of a paged list; fails on a loop or a duplicate."""
    seen: list[Json] = []
    cursor = None
    for _ in range(200):
        page = await get_json(client, path, **params, **({"cursor": cursor} if cursor else {}))
        assert set(page) == {"data", "next_cursor"}
        assert len(page["data"]) <= int(params.get("limit", 20))
        seen.extend(page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError("the pages never end")


def iso_ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat()


# --- GET /v1/jobs ------------------------------------------------------------------------------


async def test_jobs_lists_own_jobs_newest_first_with_counts(
    api: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    await subscribe(api, job_id="job_a", url=HOOK + "/1")
    await subscribe(api, job_id="job_b", url=HOOK + "/1")
    await subscribe(api, job_id="job_a", url=HOOK + "/2")  # job_a now has the newest subscription
    await subscribe(bob, job_id="job_c")
    page = await get_json(api, "/v1/jobs")
    assert [j["job_id"] for j in page["data"]] == ["job_a", "job_b"]
    assert page["next_cursor"] is None
    first = page["data"][0]
    assert set(first) == JOB_KEYS
    assert first["subscription_count"] == 2 and page["data"][1]["subscription_count"] == 1
    assert first["watching"] is True and first["status"] is None and first["polls"] == 0
    assert is_iso(first["created_at"]) and is_iso(first["next_poll_at"])
    assert [j["job_id"] for j in (await get_json(bob, "/v1/jobs"))["data"]] == ["job_c"]


async def test_jobs_count_only_the_callers_subscriptions(
    api: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    await subscribe(api, job_id="job_shared")
    await subscribe(bob, job_id="job_shared")
    await subscribe(bob, job_id="job_shared", url=HOOK + "/b")
    [mine] = (await get_json(api, "/v1/jobs"))["data"]
    [theirs] = (await get_json(bob, "/v1/jobs"))["data"]
    assert (mine["subscription_count"], theirs["subscription_count"]) == (1, 2)


async def test_jobs_pages_walk_every_job_once(api: httpx.AsyncClient) -> None:
    for n in range(7):
        await subscribe(api, job_id=f"job_{n}")
    await subscribe(api, job_id="job_2", url=HOOK + "/again")  # moves job_2 to the front
    jobs = await walk(api, "/v1/jobs", limit=2)
    assert [j["job_id"] for j in jobs] == ["job_2", "job_6", "job_5", "job_4", "job_3", "job_1",
                                           "job_0"]


async def test_jobs_pages_hold_when_a_job_moves_between_pages(api: httpx.AsyncClient) -> None:
    for n in range(4):
        await subscribe(api, job_id=f"job_{n}")
    first = await get_json(api, "/v1/jobs", limit=2)
    assert [j["job_id"] for j in first["data"]] == ["job_3", "job_2"]
    await subscribe(api, job_id="job_0", url=HOOK + "/new")  # job_0 now belongs before page 1
    rest = await walk(api, "/v1/jobs", limit=2, cursor=first["next_cursor"])
    assert [j["job_id"] for j in rest] == ["job_1"]


async def test_jobs_search_by_part_of_the_id(api: httpx.AsyncClient) -> None:
    for job_id in ("img_one", "vid_two", "img_three"):
        await subscribe(api, job_id=job_id)
    found = await get_json(api, "/v1/jobs", q="img_")
    assert [j["job_id"] for j in found["data"]] == ["img_three", "img_one"]
    assert (await get_json(api, "/v1/jobs", q="nothing"))["data"] == []


async def test_jobs_filter_by_status(
    api: httpx.AsyncClient, worker: Worker, simulator: str
) -> None:
    sim_job(simulator, "job_done", [("completed", 0)])
    sim_job(simulator, "job_wait", [("queued", 0)])
    await subscribe(api, job_id="job_done")
    await subscribe(api, job_id="job_wait")

    async def polled() -> Json:
        page = await get_json(api, "/v1/jobs")
        assert {j["job_id"]: j["status"] for j in page["data"]} == {
            "job_done": "completed", "job_wait": "queued"}, page
        return page

    page = await eventually(polled)
    done = next(j for j in page["data"] if j["job_id"] == "job_done")
    assert done["model"] == "fal:flux-schnell"  # polled or streamed: `polls` counts polls only
    assert done["watching"] is False and done["next_poll_at"] is None
    assert is_iso(done["last_polled_at"])
    completed = await get_json(api, "/v1/jobs", status="completed")
    assert [j["job_id"] for j in completed["data"]] == ["job_done"]
    assert (await get_json(api, "/v1/jobs", status="failed"))["data"] == []


async def test_jobs_a_short_page_still_has_a_cursor_when_the_scan_stops(
    api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dashboard, "SCAN_CHUNK", 2)
    monkeypatch.setattr(dashboard, "SCAN_MAX", 4)
    for n in range(6):
        await subscribe(api, job_id=f"job_{n}")
    first = await get_json(api, "/v1/jobs", q="job_0")
    assert first["data"] == [] and first["next_cursor"] is not None
    second = await get_json(api, "/v1/jobs", q="job_0", cursor=first["next_cursor"])
    assert [j["job_id"] for j in second["data"]] == ["job_0"]
    assert second["next_cursor"] is None


@pytest.mark.parametrize(("params", "field"), [
    ({"status": "Completed"}, "status"), ({"status": "x" * 33}, "status"),
    ({"q": "a b"}, "q"), ({"q": "x" * 129}, "q"), ({"limit": "0"}, "limit"),
    ({"limit": "101"}, "limit"), ({"cursor": "job_1"}, "cursor"),
])
async def test_jobs_invalid_parameters(api: httpx.AsyncClient, params: Json, field: str) -> None:
    assert_validation(await api.get("/v1/jobs", params=params), field)


async def test_jobs_need_a_token(settings: Settings, redis: Redis) -> None:
    async with api_client(settings, None) as anonymous:
        assert_error(await anonymous.get("/v1/jobs"), 401, "AuthError")


# --- GET /v1/jobs/{job_id}/events --------------------------------------------------------------


async def test_timeline_lists_each_observed_status_with_its_webhooks(
    api: httpx.AsyncClient, bob: httpx.AsyncClient, worker: Worker, simulator: str,
    receiver: Receiver,
) -> None:
    sim_job(simulator, "job_t", [("queued", 0), ("completed", 0.6)])
    one = await subscribe(api, job_id="job_t", url=receiver.url("/t1"))
    two = await subscribe(api, job_id="job_t", url=receiver.url("/t2"), events=["job.completed"])
    await subscribe(bob, job_id="job_t", url=receiver.url("/bob"))

    async def done() -> Json:
        body = await get_json(api, "/v1/jobs/job_t/events")
        assert [e["status"] for e in body["data"]][-1:] == ["completed"], body
        assert all(w["status"] == "succeeded" for e in body["data"] for w in e["webhooks"])
        return body

    body = await eventually(done)
    assert body["job_id"] == "job_t"
    queued, completed = body["data"]
    assert queued["status"] == "queued" and is_iso(queued["observed_at"])
    assert queued["observed_at"] < completed["observed_at"]
    assert [(w["subscription_id"], w["event_type"]) for w in queued["webhooks"]] == [
        (one["id"], "job.queued")]
    assert {w["subscription_id"] for w in completed["webhooks"]} == {one["id"], two["id"]}
    sent = {d["id"] for sid in (one["id"], two["id"]) for d in await deliveries(api, sid)}
    assert {w["id"] for e in body["data"] for w in e["webhooks"]} == sent
    assert all(w["attempts"] == 1 for e in body["data"] for w in e["webhooks"])
    bobs = await get_json(bob, "/v1/jobs/job_t/events")
    assert {w["subscription_id"] for e in bobs["data"] for w in e["webhooks"]}.isdisjoint(
        {one["id"], two["id"]})


async def test_timeline_of_a_job_without_events_is_empty(api: httpx.AsyncClient) -> None:
    await subscribe(api, job_id="job_new")
    assert await get_json(api, "/v1/jobs/job_new/events") == {"job_id": "job_new", "data": []}


async def test_timeline_of_another_tokens_job_is_404(
    api: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    await subscribe(bob, job_id="job_bob")
    assert_error(await api.get("/v1/jobs/job_bob/events"), 404, "NotFoundError")
    assert_error(await api.get("/v1/jobs/job_none/events"), 404, "NotFoundError")
    assert_validation(await api.get("/v1/jobs/a%20b/events"), "job_id")


# --- GET /v1/deliveries, POST /v1/deliveries/retry ---------------------------------------------


async def failing_subscription(api: httpx.AsyncClient, simulator: str, receiver: Receiver,
                               job_id: str, path: str) -> Json:
    """A subscription whose one event fails every attempt of the (short) retry schedule."""
    receiver.plan[path] = [500] * 4
    sim_job(simulator, job_id, [("completed", 0)])
    sub = await subscribe(api, job_id=job_id, url=receiver.url(path), events=["job.completed"])

    async def failed() -> Json:
        found = await deliveries(api, sub["id"])
        assert [d["status"] for d in found] == ["failed"], found
        return sub

    return await eventually(failed)


async def test_failed_deliveries_across_subscriptions(
    api: httpx.AsyncClient, bob: httpx.AsyncClient, worker: Worker, simulator: str,
    receiver: Receiver,
) -> None:
    one = await failing_subscription(api, simulator, receiver, "job_f1", "/f1")
    two = await failing_subscription(api, simulator, receiver, "job_f2", "/f2")
    sim_job(simulator, "job_ok", [("completed", 0)])
    ok = await subscribe(api, job_id="job_ok", url=receiver.url("/ok"))
    await eventually(lambda: _succeeded(api, ok["id"]))
    gone = await failing_subscription(api, simulator, receiver, "job_f3", "/f3")
    assert (await api.delete(f"/v1/subscriptions/{gone['id']}")).status_code == 204

    failed = await get_json(api, "/v1/deliveries", status="failed")
    assert [d["subscription_id"] for d in failed["data"]] == [two["id"], one["id"]]
    assert all(d["status"] == "failed" for d in failed["data"]), failed
    assert [len(d["attempts"]) for d in failed["data"]] == [4, 4], failed
    everything = await get_json(api, "/v1/deliveries")
    assert {d["subscription_id"] for d in everything["data"]} == {one["id"], two["id"], ok["id"]}
    assert (await get_json(api, "/v1/deliveries", status="failed", since=iso_ago(-60)))[
        "data"] == []
    assert (await get_json(bob, "/v1/deliveries"))["data"] == []


async def _succeeded(api: httpx.AsyncClient, sid: str) -> Json:
    found = await deliveries(api, sid)
    assert found and all(d["status"] == "succeeded" for d in found), found
    return {"data": found}


async def test_deliveries_pages_walk_every_delivery_once(
    api: httpx.AsyncClient, worker: Worker, simulator: str, receiver: Receiver
) -> None:
    sim_job(simulator, "job_p1", [("queued", 0)])
    sim_job(simulator, "job_p2", [("queued", 0)])
    one = await subscribe(api, job_id="job_p1", url=receiver.url("/p1"))
    two = await subscribe(api, job_id="job_p2", url=receiver.url("/p2"))
    # Each job completes once its `queued` was seen: two deliveries each, whatever the load.
    for job_id, path in (("job_p1", "/p1"), ("job_p2", "/p2")):
        await eventually(lambda path=path: receiver.types(path) == ["job.queued"])
        sim_job(simulator, job_id, [("completed", 0)])
    for sub in (one, two):
        await eventually(lambda sub=sub: _two_succeeded(api, sub["id"]))
    walked = await walk(api, "/v1/deliveries", limit=1)
    expected = [d["id"] for sid in (two["id"], one["id"])
                for d in reversed(await deliveries(api, sid))]
    assert [d["id"] for d in walked] == expected


async def _two_succeeded(api: httpx.AsyncClient, sid: str) -> Json:
    found = await _succeeded(api, sid)
    assert len(found["data"]) == 2
    return found


async def test_retry_all_failed_since_queues_them_again(
    api: httpx.AsyncClient, bob: httpx.AsyncClient, worker: Worker, simulator: str,
    receiver: Receiver,
) -> None:
    one = await failing_subscription(api, simulator, receiver, "job_r1", "/r1")
    two = await failing_subscription(api, simulator, receiver, "job_r2", "/r2")
    response = await bob.post("/v1/deliveries/retry", json={"since": iso_ago(3600)})
    assert response.status_code == 202 and response.json() == {"queued": 0, "subscriptions": 0}
    late = await api.post("/v1/deliveries/retry", json={"since": iso_ago(-60)})
    assert late.status_code == 202 and late.json()["queued"] == 0

    response = await api.post("/v1/deliveries/retry", json={"since": iso_ago(3600)})
    assert response.status_code == 202, response.text
    assert response.json() == {"queued": 2, "subscriptions": 2}
    for sub in (one, two):  # the receiver's plan is spent: the next attempt succeeds
        found = await eventually(lambda sub=sub: _succeeded(api, sub["id"]))
        assert len(found["data"][0]["attempts"]) == 5
    assert (await get_json(api, "/v1/deliveries", status="failed"))["data"] == []
    assert receiver.rejected == []


@pytest.mark.parametrize(("body", "field"), [
    ({}, "since"), ({"since": None}, "since"), ({"since": "yesterday"}, "since"),
    ({"since": 1700000000}, "since"), ({"since": "2026-13-01"}, "since"),
    ({"since": "2026-01-01T00:00:00Z", "status": "failed"}, "status"),
])
async def test_retry_all_invalid_bodies(api: httpx.AsyncClient, body: Json, field: str) -> None:
    assert_validation(await api.post("/v1/deliveries/retry", json=body), field)


async def test_retry_all_needs_a_json_object(api: httpx.AsyncClient) -> None:
    assert_validation(await api.post("/v1/deliveries/retry", content=b"[1]"), None)


@pytest.mark.parametrize(("params", "field"), [
    ({"status": "lost"}, "status"), ({"since": "soon"}, "since"), ({"cursor": "msg_1"}, "cursor"),
    ({"cursor": "sub_01JZZZZZZZZZZZZZZZZZZZZZZZ.x"}, "cursor"), ({"limit": "x"}, "limit"),
])
async def test_deliveries_invalid_parameters(
    api: httpx.AsyncClient, params: Json, field: str
) -> None:
    assert_validation(await api.get("/v1/deliveries", params=params), field)


# --- GET /v1/upstream --------------------------------------------------------------------------


async def test_upstream_shows_requests_429s_and_the_key_state(
    api: httpx.AsyncClient, bob: httpx.AsyncClient, redis: Redis, worker: Worker,
    simulator: str,
) -> None:
    sim_job(simulator, "job_u", [("completed", 0)])
    await subscribe(api, job_id="job_u")

    async def polled() -> Json:
        body = await get_json(api, "/v1/upstream")
        assert body["requests_last_minute"] >= 1, body
        return body

    body = await eventually(polled)
    assert body["budget_per_minute"] == body["configured_per_minute"] == 6000
    assert len(body["requests"]) == 12 and len(body["rate_limited"]) == 12
    assert sum(b["count"] for b in body["requests"]) == body["requests_last_minute"]
    assert all(is_iso(b["start"]) for b in body["requests"] + body["rate_limited"])
    assert body["polls_per_second"] >= 0.1
    assert body["rate_limited_last_hour"] == 0 and body["unauthorized"] is False
    assert body["watches"] == {"total": 0, "due": 0, "overdue": 0}

    store = Store(redis)
    await store.note_rate_limited(3, time.time())
    await store.set_upstream_unauthorized(60)
    await store.pause_upstream(30)
    await store.cap_upstream(50, 60)
    seen = await get_json(bob, "/v1/upstream")  # deployment-wide: every token sees the same
    assert seen["rate_limited_last_hour"] == 3 and seen["rate_limited"][-1]["count"] == 3
    assert seen["unauthorized"] is True and 25 < seen["paused_for"] <= 30
    assert seen["budget_per_minute"] == 50


async def test_upstream_needs_a_token(settings: Settings, redis: Redis) -> None:
    async with api_client(settings, None) as anonymous:
        assert_error(await anonymous.get("/v1/upstream"), 401, "AuthError")


# --- /ui -------------------------------------------------------------------------------------


async def test_ui_is_served_with_a_strict_content_security_policy(
    api: httpx.AsyncClient,
) -> None:
    assert (await api.get("/ui")).status_code in (307, 308)
    page = await api.get("/ui/", headers={"accept-encoding": "gzip"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    script = await api.get("/ui/app.js", headers={"accept-encoding": "gzip"})
    assert script.headers["content-type"].startswith(("text/javascript",
                                                      "application/javascript"))
    assert script.headers["content-encoding"] == "gzip"
    assert_error(await api.get("/ui/missing.js"), 404, "NotFoundError")


async def test_ui_loads_nothing_from_another_host(api: httpx.AsyncClient) -> None:
    for name in ("", "app.js", "app.css"):
        text = (await api.get(f"/ui/{name}")).text.replace(SVG_NAMESPACE, "")
        assert not re.search(r"https?:|(?:src|href)=[\"']?//|url\(\s*[\"']?//|@import", text), name
