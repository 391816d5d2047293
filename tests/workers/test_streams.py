"""Stream mode against the simulator over real HTTP: an in-process worker follows jobs on
`GET /v1/jobs/{id}/stream`, and a receiver verifies every webhook.

Each test states what it checks. Bounds are generous timeouts (`eventually`), never speed
claims; what a test counts (requests, events, webhook ids) is exact.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from config import load_settings
from relay.devtools.simulator import SimJob, Step, create_simulator
from relay.store import keys
from relay.store.decision import Decision
from relay.store.keys import STREAM_OFF
from relay.store.store import Store
from tests.conftest import (
    SIM_KEY,
    Receiver,
    ServerThread,
    SettingsFactory,
    api_client,
    env_for,
    eventually,
    running_worker,
    sim_job,
)

# A new job is first looked at within the poller's idle wait (0.25 s) plus a connection:
# each status here lasts long enough for that on a loaded machine.
FLOW = [("queued", 0), ("processing", 1.0), ("completed", 1.6)]
FLOW_EVENTS = ["job.queued", "job.processing", "job.completed"]


def stats(simulator: str) -> dict[str, Any]:
    found: dict[str, Any] = httpx.get(simulator + "/_sim/stats").json()
    return found


def configure(simulator: str, **body: Any) -> None:
    httpx.post(simulator + "/_sim/config", json=body).raise_for_status()


def fault(simulator: str, mode: str, count: int, **extra: Any) -> None:
    httpx.post(simulator + "/_sim/faults", json={"mode": mode, "count": count, **extra}
               ).raise_for_status()


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def subscribe(api: httpx.AsyncClient, job_id: str, url: str) -> dict[str, Any]:
    response = await api.post("/v1/subscriptions", json={"job_id": job_id, "url": url})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def one_webhook_per_change(receiver: Receiver, path: str) -> None:
    ids = [wid for p, wid in receiver.attempts if p == path]
    assert len(ids) == len(set(ids)), ids  # each event sent once (none failed)
    assert receiver.rejected == []


async def test_stream_happy_path_one_request_per_job(
    make_settings: SettingsFactory, redis: Redis, simulator: str, receiver: Receiver
) -> None:
    """A streamed job is never polled: its one request is the stream, and every change
    arrives in order, each once."""
    settings = make_settings()
    async with api_client(settings) as api, running_worker(settings):
        sim_job(simulator, "job_s", FLOW)
        await subscribe(api, "job_s", receiver.url("/s"))
        await eventually(lambda: receiver.types("/s") == FLOW_EVENTS)
        view = (await api.get("/v1/jobs/job_s")).json()
    assert stats(simulator)["by_job"] == {"job_s": 1}
    assert stats(simulator)["streams_opened"] == 1
    assert view["polls"] == 0 and view["watching"] is False
    one_webhook_per_change(receiver, "/s")
    last = receiver.events("/s")[-1]["data"]
    assert last["previous_status"] == "processing"
    assert last["job"]["output"]["url"].endswith("job_s.png")


async def test_a_stream_cut_mid_job_reconnects_and_misses_nothing(
    make_settings: SettingsFactory, redis: Redis, simulator: str, receiver: Receiver
) -> None:
    """The connection breaks after the first event (twice): the worker reconnects with
    backoff, each reconnection spends one request, and every change arrives once."""
    settings = make_settings()
    fault(simulator, "cut", 2, delay=0.1)
    before = sample("relay_stream_reconnects_total")
    async with api_client(settings) as api, running_worker(settings):
        sim_job(simulator, "job_c", [("queued", 0), ("processing", 1.0), ("completed", 1.8)])
        await subscribe(api, "job_c", receiver.url("/c"))
        await eventually(lambda: receiver.types("/c") == FLOW_EVENTS)
    assert stats(simulator)["streams_opened"] == 3
    assert stats(simulator)["by_job"] == {"job_c": 3}
    assert sample("relay_stream_reconnects_total") - before == 2
    one_webhook_per_change(receiver, "/c")


async def test_the_stream_time_limit_reconnects_without_repeating_events(
    make_settings: SettingsFactory, redis: Redis, simulator: str, receiver: Receiver
) -> None:
    """Varg closes a stream after 10 minutes (here 0.3 s); the worker opens another, whose
    first event repeats the current status: no second webhook for it."""
    settings = make_settings()
    configure(simulator, stream_limit=0.3, keepalive=0.1)
    async with api_client(settings) as api, running_worker(settings):
        sim_job(simulator, "job_l", [("queued", 0), ("processing", 1.0), ("completed", 2.0)])
        await subscribe(api, "job_l", receiver.url("/l"))
        await eventually(lambda: receiver.types("/l") == FLOW_EVENTS)
    assert stats(simulator)["streams_opened"] >= 4
    assert stats(simulator)["by_job"]["job_l"] == stats(simulator)["streams_opened"]
    one_webhook_per_change(receiver, "/l")


async def test_an_upstream_without_the_stream_turns_stream_mode_off_and_polls(
    make_settings: SettingsFactory, redis: Redis, simulator: str, receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The stream answers 404. A 404 for a job not seen yet may mean the job is not there
    yet, so that job is polled; once a job the poll found gets a 404 too, stream mode goes
    off for every worker (logged once, shown on /readyz) and every job is polled."""
    settings = make_settings()
    configure(simulator, stream=False)
    caplog.set_level(logging.WARNING, logger="relay.streams")
    async with api_client(settings, token=None) as anon, api_client(settings) as api:
        async with running_worker(settings):
            sim_job(simulator, "job_n", [("queued", 0), ("processing", 1), ("completed", 2.5)])
            await subscribe(api, "job_n", receiver.url("/n"))
            await eventually(lambda: receiver.types("/n") == FLOW_EVENTS)
            assert await redis.exists(STREAM_OFF)
            ready = (await anon.get("/readyz")).json()
            late = [f"job_late{i}" for i in range(3)]
            for job_id in late:
                sim_job(simulator, job_id, [("completed", 0)])
                await subscribe(api, job_id, receiver.url("/" + job_id))
            await eventually(lambda: all(receiver.types("/" + j) == ["job.completed"]
                                         for j in late))
    assert ready["status"] == "ready" and ready["stream"].startswith("off for now")
    assert [r.message for r in caplog.records].count(next(
        r.message for r in caplog.records if "stream mode off" in r.message)) == 1
    assert stats(simulator)["by_code"]["404"] == 2  # two stream attempts, then never again
    one_webhook_per_change(receiver, "/n")


async def test_a_job_seen_by_a_stream_and_a_poll_delivers_one_event(
    make_settings: SettingsFactory, redis: Redis, simulator: str, receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker holding a job's stream stalls (its renewals stop) and its stream lease runs
    out while the stream still runs: a poll takes the job and sees the statuses the stream
    also sees. The stream's writes under its old lease are refused; one event per change
    reaches the receiver."""
    settings = make_settings()
    stalled: list[bool] = []
    real_renew = Store.stream_renew

    async def renew(self: Store, held: list[tuple[str, str]], lease_s: float) -> Any:
        return ([], []) if stalled else await real_renew(self, held, lease_s)

    monkeypatch.setattr(Store, "stream_renew", renew)
    async with api_client(settings) as api, running_worker(settings):
        sim_job(simulator, "job_b", [("queued", 0), ("processing", 1.0), ("completed", 3.0)])
        await subscribe(api, "job_b", receiver.url("/b"))
        await eventually(lambda: receiver.types("/b") == FLOW_EVENTS[:1])
        stalled.append(True)
        await redis.zadd(keys.DUE, {"job_b": 0})  # the stream lease ran out
        await eventually(lambda: stats(simulator)["by_job"]["job_b"] >= 2)  # polled too
        await eventually(lambda: receiver.types("/b") == FLOW_EVENTS)
    one_webhook_per_change(receiver, "/b")
    assert Counter(receiver.types("/b")) == Counter(FLOW_EVENTS)


async def test_stream_caps_leave_the_rest_to_polling(
    make_settings: SettingsFactory, redis: Redis, simulator: str, receiver: Receiver
) -> None:
    """RELAY_STREAMS_PER_WORKER=2 with five live jobs: at most two streams are open at any
    time, the others are polled (a freed slot goes to a job due next), and every job's
    changes arrive."""
    settings = make_settings(RELAY_STREAMS_PER_WORKER="2")
    jobs = [f"job_cap{i}" for i in range(5)]
    opened: list[int] = []
    async with api_client(settings) as api, running_worker(settings):
        for job_id in jobs:
            sim_job(simulator, job_id, [("queued", 0), ("completed", 1.5)])
            await subscribe(api, job_id, receiver.url("/" + job_id))

        def all_done() -> bool:
            opened.append(stats(simulator)["streams_open"])
            return all(receiver.types("/" + j) == ["job.queued", "job.completed"]
                       for j in jobs)

        await eventually(all_done)
    assert max(opened) <= 2
    polls = sum(stats(simulator)["by_job"].values()) - stats(simulator)["streams_opened"]
    assert polls >= 3  # the three jobs without a stream at first were polled


async def test_a_budget_too_short_for_every_stream_at_once_spends_each_request_on_one(
    make_settings: SettingsFactory, redis: Redis, simulator: str, receiver: Receiver
) -> None:
    """Ten jobs at once, a budget of 4 requests ahead and one every 0.5 s: the streams open
    as the budget allows, and no request goes to a poll meanwhile (a stream costs one
    request for the whole job, a poll one for one look)."""
    settings = make_settings(RELAY_UPSTREAM_RATE_LIMIT="120")
    jobs = [f"job_short{i}" for i in range(10)]
    async with api_client(settings) as api, running_worker(settings):
        for job_id in jobs:
            sim_job(simulator, job_id, [("queued", 0), ("completed", 12.0)])
            await subscribe(api, job_id, receiver.url("/" + job_id))
        await eventually(lambda: stats(simulator)["streams_opened"] == len(jobs), timeout=30)
        await eventually(lambda: all(receiver.types("/" + j) == ["job.queued", "job.completed"]
                                     for j in jobs), timeout=30)
    assert stats(simulator)["by_job"] == dict.fromkeys(jobs, 1)


async def test_stream_mode_off_polls_only(
    make_settings: SettingsFactory, redis: Redis, simulator: str, receiver: Receiver
) -> None:
    settings = make_settings(RELAY_STREAM="off")
    async with api_client(settings) as api, running_worker(settings):
        sim_job(simulator, "job_p", FLOW)
        await subscribe(api, "job_p", receiver.url("/p"))
        await eventually(lambda: receiver.types("/p") == FLOW_EVENTS)
        assert (await api.get("/readyz")).json()["stream"] == "off: RELAY_STREAM=off"
    assert stats(simulator)["streams_opened"] == 0


async def test_a_new_subscriber_on_a_streamed_job_hears_its_status(
    make_settings: SettingsFactory, redis: Redis, simulator: str, receiver: Receiver
) -> None:
    """A second subscription while the job is streamed (and not changing) still gets the
    current status with previous_status null, from what the stream knows: no extra request."""
    settings = make_settings()
    async with api_client(settings) as api, running_worker(settings):
        sim_job(simulator, "job_u", [("processing", 0), ("completed", 60)])
        await subscribe(api, "job_u", receiver.url("/u1"))
        await eventually(lambda: receiver.types("/u1") == ["job.processing"])
        await subscribe(api, "job_u", receiver.url("/u2"))
        await eventually(lambda: receiver.types("/u2") == ["job.processing"])
    assert receiver.events("/u2")[0]["data"]["previous_status"] is None
    assert stats(simulator)["by_job"] == {"job_u": 1}


async def test_shutdown_hands_streamed_jobs_back_at_once(
    make_settings: SettingsFactory, redis: Redis, simulator: str, receiver: Receiver
) -> None:
    settings = make_settings()
    async with api_client(settings) as api:
        async with running_worker(settings):
            sim_job(simulator, "job_h", [("processing", 0), ("completed", 60)])
            await subscribe(api, "job_h", receiver.url("/h"))
            await eventually(lambda: receiver.types("/h") == ["job.processing"])
            assert await redis.hget(keys.watch("job_h"), "stream") == "1"
        watch = await redis.hgetall(keys.watch("job_h"))
        assert "lease" not in watch and "stream" not in watch
        assert await redis.zscore(keys.DUE, "job_h") is not None
        assert await redis.zcard(keys.STREAMS) == 0


STREAM_STORMS: dict[str, dict[str, Any]] = {
    "500": {}, "502": {}, "malformed": {}, "missing_fields": {},
    "timeout": {"delay": 2.0},  # the answer comes after the stream's 1 s read deadline
    "429": {"retry_after": 1},
}


@pytest.mark.parametrize("mode", list(STREAM_STORMS))
async def test_an_upstream_storm_on_streams_loses_no_watch(
    mode: str, make_settings: SettingsFactory, redis: Redis, simulator: str,
    receiver: Receiver,
) -> None:
    """The first stream connections of a job meet an upstream storm: the worker reconnects
    with backoff (a 429 pauses every worker and hands the job to polling; three failures in
    a row do too), nothing crashes, and the job still ends with its terminal webhook, events
    in order. Bound: 30 s."""
    settings = make_settings(RELAY_STREAM_IDLE_TIMEOUT="1s")
    fault(simulator, mode, 4, **STREAM_STORMS[mode])
    fallbacks = sum(sample("relay_stream_fallbacks_total", reason=r)
                    for r in ("errors", "rate_limited"))
    reconnects = sample("relay_stream_reconnects_total")
    job_id = f"job_sstorm_{mode}"
    async with api_client(settings) as api, running_worker(settings) as worker:
        sim_job(simulator, job_id, [("queued", 0), ("processing", 1), ("completed", 3)])
        await subscribe(api, job_id, receiver.url("/storm"))
        await eventually(lambda: "job.completed" in receiver.types("/storm"), timeout=30)
        assert not worker.main_task or not worker.main_task.done()
    seen = receiver.types("/storm")
    assert seen == sorted(set(seen), key=FLOW_EVENTS.index), seen
    after = sum(sample("relay_stream_fallbacks_total", reason=r)
                for r in ("errors", "rate_limited"))
    assert after > fallbacks or sample("relay_stream_reconnects_total") > reconnects
    assert httpx.get(simulator + "/_sim/faults").json()["data"] == []  # every fault was met
    one_webhook_per_change(receiver, "/storm")


async def test_redis_error_at_stream_write_back_loses_no_status(
    make_settings: SettingsFactory, redis: Redis, simulator: str, receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis failing once as a stream's `processing` is written back: the write-back is
    retried, and every status still reaches the subscriber, in order. Bound: 20 s."""
    caplog.set_level(logging.INFO, logger="relay")
    real = Store.poll_cycle
    failed: list[str] = []

    async def flaky(self: Store, decisions: list[Decision], *args: Any) -> Any:
        if not failed and any(d.stream and d.status == "processing" for d in decisions):
            failed.append("processing")
            raise RedisConnectionError("Connection reset by peer (injected)")
        return await real(self, decisions, *args)

    monkeypatch.setattr(Store, "poll_cycle", flaky)
    settings = make_settings()
    async with api_client(settings) as api, running_worker(settings):
        sim_job(simulator, "job_sblip", [("queued", 0), ("processing", 1.0), ("completed", 2.5)])
        await subscribe(api, "job_sblip", receiver.url("/sblip"))
        await eventually(lambda: receiver.types("/sblip")[-1:] == ["job.completed"], timeout=20)
    assert failed == ["processing"]
    assert "stream write-back failed" in caplog.text
    assert receiver.types("/sblip") == FLOW_EVENTS


async def test_a_full_worker_hands_a_stream_to_a_job_worth_more(
    make_settings: SettingsFactory, redis: Redis, receiver: Receiver
) -> None:
    """One stream slot, held by a video that just started (it will not end for minutes). An
    image job created 9 s ago (images take ~10 s) becomes due: worth far more than twice the
    video's stream, it takes the slot; the video goes back to polling. Bound: 15 s."""
    app = create_simulator(api_key=SIM_KEY)
    with ServerThread(app) as sim:
        settings = load_settings(env_for(sim.url, RELAY_STREAMS_PER_WORKER="1"))
        sim_job(sim.url, "job_video", [("processing", 0), ("completed", 600)],
                model="fal:kling-v2.5")
        old = SimJob("job_image", "fal:flux-schnell", time.time() - 9.0,
                     (Step("processing", 0.0), Step("completed", 600.0)))
        app.state.simulator.add_job(old)
        handed = sample("relay_stream_fallbacks_total", reason="preempted")
        async with api_client(settings) as api, running_worker(settings):
            await subscribe(api, "job_video", receiver.url("/video"))
            await eventually(lambda: stats(sim.url)["streams_open"] == 1)
            await subscribe(api, "job_image", receiver.url("/image"))

            async def image_streamed() -> bool:
                return (await redis.hget(keys.watch("job_image"), "stream") == "1"
                        and await redis.hget(keys.watch("job_video"), "stream") is None)

            await eventually(image_streamed)
        assert sample("relay_stream_fallbacks_total", reason="preempted") == handed + 1
        assert stats(sim.url)["by_job"]["job_video"] >= 2  # its stream, then polls


async def test_varg_s_lower_limit_on_a_stream_answer_tightens_the_budget(
    redis: Redis, receiver: Receiver
) -> None:
    """Varg's X-RateLimit-Limit on a stream's answer counts as on a poll's: below
    RELAY_UPSTREAM_RATE_LIMIT (6000 here), it becomes the budget every worker shares."""
    with ServerThread(create_simulator(api_key=SIM_KEY, rate_limit=600)) as sim:
        settings = load_settings(env_for(sim.url))
        async with api_client(settings) as api, running_worker(settings):
            sim_job(sim.url, "job_rl", [("processing", 0), ("completed", 60)])
            await subscribe(api, "job_rl", receiver.url("/rl"))
            await eventually(lambda: receiver.types("/rl") == ["job.processing"])

            async def capped() -> bool:
                return await redis.get(keys.RL_CAP) == "600"

            await eventually(capped)
        assert stats(sim.url)["by_job"] == {"job_rl": 1}  # it came with the stream
