"""Nothing lost: receiver outages and upstream storms, with an in-process worker.

Each test states the guarantee it checks and the bound it allows. Bounds are generous
timeouts (`tests.support.eventually`), never speed claims.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

import relay.upstream.poller
from relay.store.decision import Decision
from relay.store.store import Store
from tests.conftest import (
    SECRET,
    Receiver,
    ServerThread,
    SettingsFactory,
    api_client,
    deliveries,
    running_worker,
    sim_job,
    subscribe,
)
from tests.support import eventually

pytestmark = pytest.mark.slow

FLOW = [("queued", 0), ("processing", 1.0), ("completed", 2.5)]
FLOW_EVENTS = ["job.queued", "job.processing", "job.completed"]
RETRY = "200ms,200ms,500ms,1s,1s,2s,4s"  # 7 retries over ~9 s, then `failed`


def polls(outcome: str) -> float:
    return REGISTRY.get_sample_value("relay_polls_total", {"outcome": outcome}) or 0.0


def waits(reason: str) -> float:
    return REGISTRY.get_sample_value("relay_rate_limit_waits_total", {"reason": reason}) or 0.0


def fault(simulator: str, mode: str, count: int, **extra: Any) -> None:
    body = {"mode": mode, "count": count, **extra}
    httpx.post(simulator + "/_sim/faults", json=body).raise_for_status()


def attempt_ids(receiver: Receiver, path: str) -> list[str]:
    return [wid for p, wid in receiver.attempts if p == path]


def runs(ids: list[str]) -> list[tuple[str, int]]:
    """[(webhook-id, consecutive attempts)] in the order the receiver saw them."""
    out: list[tuple[str, int]] = []
    for wid in ids:
        if out and out[-1][0] == wid:
            out[-1] = (wid, out[-1][1] + 1)
        else:
            out.append((wid, 1))
    return out


def in_flow_order(types: list[str]) -> bool:
    """Each status at most once, in the order the job went through them."""
    return types == sorted(set(types), key=FLOW_EVENTS.index)


# ---------------------------------------------------------------- 3. receiver outages


async def test_receiver_503s_then_recovers_nothing_dropped_in_order(
    make_settings: SettingsFactory, redis: Redis, simulator: str, receiver: Receiver
) -> None:
    """A receiver answering 503 for its first 4 attempts (RELAY_RETRY_SCHEDULE
    200ms,200ms,500ms,1s,…) gets every event once it recovers: in order, nothing dropped,
    each event under one webhook-id on every attempt, and the next event is not sent before
    the one before it succeeded. A healthy subscription to the same job is not held back and
    hears the same events (what the relay saw; a loaded machine may miss a short status).
    Bound: 20 s."""
    settings = make_settings(RELAY_RETRY_SCHEDULE=RETRY)
    receiver.plan["/down"] = [503] * 4
    sim_job(simulator, "job_outage", FLOW)
    async with api_client(settings) as api, running_worker(settings):
        down = await subscribe(api, "job_outage", receiver.url("/down"))
        await subscribe(api, "job_outage", receiver.url("/up"))
        await eventually(lambda: receiver.types("/up")[-1:] == ["job.completed"], timeout=20)
        seen = receiver.types("/up")
        assert in_flow_order(seen) and len(seen) >= 2, seen
        await eventually(lambda: receiver.types("/down") == seen, timeout=20)
        log = await deliveries(api, down["id"])

    # The first event took 5 attempts under one id; the later ones waited behind it.
    ids = attempt_ids(receiver, "/down")
    assert runs(ids) == [(e["id"], len(e["attempts"])) for e in log]
    assert [n for _, n in runs(ids)] == [5] + [1] * (len(seen) - 1)
    assert [r.webhook_id for r in receiver.received if r.path == "/down"] == [e["id"]
                                                                             for e in log]
    assert [a["status_code"] for a in log[0]["attempts"]] == [503, 503, 503, 503, 200]
    assert [e["status"] for e in log] == ["succeeded"] * len(seen)
    assert receiver.rejected == []


async def test_receiver_port_closed_then_open_nothing_dropped_in_order(
    make_settings: SettingsFactory, redis: Redis, simulator: str, receiver: Receiver
) -> None:
    """A callback whose port refuses connections for several attempts, then starts listening,
    gets every event the relay saw (as a healthy subscription to the same job did): in order,
    each under one webhook-id. Bound: 20 s after it listens."""
    settings = make_settings(RELAY_RETRY_SCHEDULE=RETRY)
    late = Receiver()
    server = ServerThread(late.app(SECRET))  # its port is chosen but nothing listens yet
    late.base_url = server.url
    sim_job(simulator, "job_closed", FLOW)
    async with api_client(settings) as api, running_worker(settings):
        sub = await subscribe(api, "job_closed", late.url("/late"))
        await subscribe(api, "job_closed", receiver.url("/control"))

        async def refused_attempts() -> int:
            log = await deliveries(api, sub["id"])
            return len(log[0]["attempts"]) if log else 0

        await eventually(refused_attempts, 15, until=lambda n: n >= 3)
        with server:
            await eventually(lambda: receiver.types("/control")[-1:] == ["job.completed"],
                             timeout=20)
            seen = receiver.types("/control")
            assert in_flow_order(seen), seen
            await eventually(lambda: late.types("/late") == seen, timeout=20)
            log = await deliveries(api, sub["id"])

    first = log[0]["attempts"]
    assert all(a["status_code"] is None and a["error"] for a in first[:-1])
    assert first[-1]["status_code"] == 200
    assert [r.webhook_id for r in late.received] == [e["id"] for e in log]
    assert late.rejected == []


# ---------------------------------------------------------------- 4. upstream storms

STORMS: dict[str, tuple[dict[str, Any], str]] = {
    # mode: (fault options, the poll outcome it must be counted as)
    "500": ({}, "server_error"),
    "502": ({}, "server_error"),
    "timeout": ({"delay": 2.0}, "timeout"),  # the upstream client gives up after 1 s here
    "429": ({"retry_after": 1}, "rate_limited"),
    "malformed": ({}, "malformed"),
    "missing_fields": ({}, "malformed"),
}
STORM_SIZE = 4


@pytest.mark.parametrize("mode", list(STORMS))
async def test_upstream_storm_loses_no_watch(
    mode: str, make_settings: SettingsFactory, redis: Redis, simulator: str,
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """The first polls of a job meet an upstream storm (500s, 502s, timeouts, 429s with
    Retry-After, malformed JSON, bodies missing required fields): the worker does not crash,
    the watch survives, each bad answer is counted by outcome and logged, polling backs off
    (429: every worker pauses), and the job still ends with its terminal webhook, events in
    order. Bound: 30 s."""
    monkeypatch.setattr("relay.upstream.client.DEFAULT_TIMEOUT", httpx.Timeout(1.0))
    caplog.set_level(logging.INFO, logger="relay")
    options, outcome = STORMS[mode]
    before, paused = polls(outcome), waits("pause")
    settings = make_settings(RELAY_STREAM="off")  # the polls meet the storm (streams: below)
    fault(simulator, mode, STORM_SIZE, **options)
    sim_job(simulator, f"job_storm_{mode}", [("queued", 0), ("processing", 1), ("completed", 3)])
    async with api_client(settings) as api, running_worker(settings) as worker:
        await subscribe(api, f"job_storm_{mode}", receiver.url("/storm"))
        await eventually(lambda: "job.completed" in receiver.types("/storm"), timeout=30)
        assert not worker.main_task or not worker.main_task.done()
        view = (await api.get(f"/v1/jobs/job_storm_{mode}")).json()

    assert polls(outcome) - before >= STORM_SIZE
    assert in_flow_order(receiver.types("/storm")), receiver.types("/storm")
    assert view["status"] == "completed" and view["watching"] is False
    if outcome == "rate_limited":
        assert waits("pause") > paused  # the pause was seen and waited out
        assert "every worker pauses 1.0s" in caplog.text
    else:
        assert f"poll of job_storm_{mode}: {outcome}" in caplog.text
    assert "poll step failed" not in caplog.text


async def test_upstream_401_shows_in_readyz_then_recovers(
    make_settings: SettingsFactory, redis: Redis, simulator: str, receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """Upstream answers 401 (key refused): no watch stops, polling pauses (UNAUTHORIZED_PAUSE,
    cut to 2 s here), `/readyz` says `upstream: unauthorized` while it lasts and 200 once a
    poll succeeds again, and the job still ends with its terminal webhook. Bound: 30 s."""
    monkeypatch.setattr(relay.upstream.poller, "UNAUTHORIZED_PAUSE", 2.0)
    caplog.set_level(logging.INFO, logger="relay")
    before, paused = polls("unauthorized"), waits("pause")
    settings = make_settings()
    fault(simulator, "401", 2)
    sim_job(simulator, "job_401", [("queued", 0), ("completed", 1)])
    async with api_client(settings) as api, running_worker(settings):
        readiness: list[tuple[int, Any]] = []

        async def ready() -> tuple[int, Any]:
            response = await api.get("/readyz")
            readiness.append((response.status_code, response.json().get("reason")))
            return readiness[-1]

        await subscribe(api, "job_401", receiver.url("/auth"))
        await eventually(ready, 15, until=lambda r: r == (503, "upstream: unauthorized"))
        await eventually(ready, 30, until=lambda r: r[0] == 200)
        await eventually(lambda: receiver.types("/auth") == ["job.completed"], timeout=30)

    assert polls("unauthorized") - before >= 1
    assert waits("pause") > paused
    assert "upstream: unauthorized" in caplog.text
    assert "upstream: authorized again" in caplog.text


# ---------------------------------------------------------------- Redis blip at write-back


async def test_redis_error_at_poll_write_back_loses_no_status(
    make_settings: SettingsFactory, redis: Redis, simulator: str, receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis failing once (a restart, a dropped connection) just as a poll batch is written
    back loses no status the relay saw: the write-back is retried, so the `processing` it
    polled (a status that lasts 4 s, far less than a 30 s lease) still reaches the
    subscriber, in order. Bound: 20 s."""
    caplog.set_level(logging.INFO, logger="relay")
    real = Store.poll_cycle
    failed: list[str] = []

    async def flaky(self: Store, decisions: list[Decision], *args: Any) -> Any:
        if not failed and any(d.status == "processing" for d in decisions):
            failed.append("processing")
            raise RedisConnectionError("Connection reset by peer (injected)")
        return await real(self, decisions, *args)

    monkeypatch.setattr(Store, "poll_cycle", flaky)
    settings = make_settings(RELAY_STREAM="off")  # a poll batch's write-back (streams: below)
    sim_job(simulator, "job_blip", [("queued", 0), ("processing", 1), ("completed", 5)])
    async with api_client(settings) as api, running_worker(settings):
        await subscribe(api, "job_blip", receiver.url("/blip"))
        await eventually(lambda: failed, timeout=10)
        await eventually(lambda: receiver.types("/blip")[-1:] == ["job.completed"], timeout=20)

    assert "poll step failed" in caplog.text  # the injected error did hit the poller
    assert receiver.types("/blip") == FLOW_EVENTS
