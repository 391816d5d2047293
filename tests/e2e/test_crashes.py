"""Nothing lost: crashes, Redis restarts and signals, with real `varg-relay` processes.

Each test states the guarantee it checks and the bound it allows. Bounds are generous
timeouts, never speed claims: a test fails only when something does not arrive at all.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis
from redis.exceptions import ConnectionError

from relay.devtools.redis_server import answers, free_port
from relay.store import keys
from relay.upstream.streams import STREAM_LEASE
from tests.conftest import REDIS_URL, TOKEN, Receiver, sim_job
from tests.e2e.processes import Relay, accepted_connections
from tests.support import eventually_sync

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.redis]


@pytest.fixture
def clean_redis() -> str:
    with Redis.from_url(REDIS_URL) as client:
        client.flushdb()
    return REDIS_URL


@pytest.fixture
def relays(simulator: str) -> Iterator[list[Relay]]:
    """Every Relay a test makes, stopped at the end whatever happened."""
    made: list[Relay] = []
    yield made
    for relay in made:
        relay.stop()


def new_relay(relays: list[Relay], simulator: str, **kw: Any) -> Relay:
    relay = Relay(simulator, **kw)
    relays.append(relay)
    return relay


def faults_left(simulator: str) -> int:
    return sum(f["count"] for f in httpx.get(simulator + "/_sim/faults").json()["data"])


# ---------------------------------------------------------------- 1. SIGKILL mid poll batch

KILL_JOBS = 4
LEASE = 5.0  # RELAY_POLL_LEASE here: longer than the 3 s slow poll below, short for the test
KILL_BOUND = LEASE + 15  # the dead worker's lease must expire; then one poll, one POST


def test_worker_killed_mid_poll_batch_loses_no_event(
    relays: list[Relay], clean_redis: str, simulator: str, receiver: Receiver
) -> None:
    """A worker SIGKILLed while its poll batch is in flight (upstream answering slowly) loses
    no watch: its leases expire after RELAY_POLL_LEASE (5 s here), another worker polls the
    jobs and every subscription gets its terminal event, in order after the events it already
    had. Bound: every event within RELAY_POLL_LEASE + 15 s of the kill."""
    relay = new_relay(relays, simulator, RELAY_POLL_LEASE=f"{LEASE}s",
                      RELAY_STREAM="off")  # streams: the test below
    relay.start_api()
    victim = relay.add_worker("victim")
    jobs = [f"job_kill_{i}" for i in range(KILL_JOBS)]
    for job in jobs:
        sim_job(simulator, job, [("queued", 0), ("completed", 6)])
        relay.subscribe(job, receiver.url("/" + job))
    eventually_sync(lambda: all(receiver.types("/" + j) == ["job.queued"] for j in jobs), 20,
               what="job.queued for every job")

    # The next poll of every job hangs for 3 s upstream. Batches run one after another, so
    # once the last slow answer is being waited for, the batch holding it is in flight.
    httpx.post(simulator + "/_sim/faults",
               json={"mode": "timeout", "delay": 3.0, "count": KILL_JOBS}).raise_for_status()
    eventually_sync(lambda: faults_left(simulator) == 0, 15, what="every job's slow poll to start")
    victim.kill()
    killed_at = time.monotonic()
    with Redis.from_url(clean_redis, decode_responses=True) as r:
        leased = [j for j in jobs if r.hget(keys.watch(j), "lease")]
    assert leased, "the kill should have hit a batch in flight (leases never written back)"

    relay.add_worker("survivor")
    expected = ["job.queued", "job.completed"]
    try:
        eventually_sync(lambda: all(receiver.types("/" + j) == expected for j in jobs),
                   KILL_BOUND - (time.monotonic() - killed_at), what="every job's job.completed")
    except AssertionError:
        got = {j: receiver.types("/" + j) for j in jobs}
        raise AssertionError(f"expected {expected} for each, got {got}") from None
    for job in jobs:
        first, last = receiver.events("/" + job)
        assert last["data"]["previous_status"] == "queued"
        assert first["data"]["previous_status"] is None
    assert receiver.rejected == []


# ---------------------------------------------------------------- 1b. SIGKILL holding streams

STREAM_JOBS = 4
STREAM_KILL_BOUND = STREAM_LEASE + 15  # the dead worker's stream leases run out; one request


def sim_stats(simulator: str) -> dict[str, Any]:
    found: dict[str, Any] = httpx.get(simulator + "/_sim/stats").json()
    return found


def test_worker_killed_while_holding_streams_loses_no_event(
    relays: list[Relay], clean_redis: str, simulator: str, receiver: Receiver
) -> None:
    """A worker SIGKILLed while it holds the stream of every job stops renewing their stream
    leases; within one lease (STREAM_LEASE, 10 s) another worker takes each job and every
    subscription gets its terminal event once, after the events it already had.
    Bound: every event within STREAM_LEASE + 15 s of the kill."""
    relay = new_relay(relays, simulator)
    relay.start_api()
    victim = relay.add_worker("victim")
    jobs = [f"job_streamkill_{i}" for i in range(STREAM_JOBS)]
    for job in jobs:
        sim_job(simulator, job, [("queued", 0), ("processing", 0.5), ("completed", 12)])
        relay.subscribe(job, receiver.url("/" + job))
    before = ["job.queued", "job.processing"]
    eventually_sync(lambda: all(receiver.types("/" + j) == before for j in jobs), 20,
                    what="job.processing for every job")
    eventually_sync(lambda: sim_stats(simulator)["streams_open"] == STREAM_JOBS, 10,
                    what="every stream")
    with Redis.from_url(clean_redis, decode_responses=True) as r:
        assert all(r.hget(keys.watch(j), "stream") == "1" for j in jobs)
    relay.add_worker("survivor")
    victim.kill()
    killed_at = time.monotonic()

    expected = [*before, "job.completed"]
    try:
        eventually_sync(lambda: all(receiver.types("/" + j) == expected for j in jobs),
                        STREAM_KILL_BOUND - (time.monotonic() - killed_at),
                        what="every job.completed")
    except AssertionError:
        got = {j: receiver.types("/" + j) for j in jobs}
        raise AssertionError(f"expected {expected} for each, got {got}") from None
    for job in jobs:
        assert receiver.events("/" + job)[-1]["data"]["previous_status"] == "processing"
        ids = [wid for path, wid in receiver.attempts if path == "/" + job]
        assert len(ids) == len(set(ids)) == 3
    assert sim_stats(simulator)["streams_opened"] >= STREAM_JOBS + 1  # the survivor streamed
    assert receiver.rejected == []


# ---------------------------------------------------------------- 2. Redis restart (AOF)


class RedisServer:
    """A redis-server of our own with AOF, on a free port, that a test may restart."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.dir = directory
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.skip("redis-server is not installed")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--appendonly", "yes",
             "--dir", str(self.dir), "--save", "", "--logfile", str(self.dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        # Not answering while it starts, or while it loads the AOF.
        eventually_sync(lambda: answers(self.url), 10, what="redis-server to answer")

    def shutdown(self) -> None:
        """SHUTDOWN as an operator would: the AOF is flushed, then the server exits."""
        assert self.proc is not None
        with Redis.from_url(self.url) as client, contextlib.suppress(ConnectionError):
            client.shutdown()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


RESTART_BOUND = 45.0  # sweeper (5 s) + retry schedule + upstream polls, with room to spare


def test_redis_restart_keeps_subscriptions_watches_and_pending_deliveries(
    own_redis: RedisServer, relays: list[Relay], simulator: str, receiver: Receiver
) -> None:
    """Redis SHUTDOWN and restarted (AOF, same port) while jobs are watched and deliveries
    pending: subscriptions, watches and pending events survive; API and worker reconnect on
    their own (no restart of either process); every event arrives, in order.
    Bound: every event within 45 s of Redis coming back."""
    relay = new_relay(relays, simulator, redis_url=own_redis.url,
                      RELAY_RETRY_SCHEDULE=",".join(["500ms"] + ["1s"] * 40))
    relay.start_api()
    worker = relay.add_worker("worker")

    # /held answers 500 until the test says otherwise: its events pile up as pending.
    receiver.plan["/held"] = [500] * 10_000
    sim_job(simulator, "job_held", [("queued", 0), ("processing", 1), ("completed", 14)])
    sim_job(simulator, "job_live", [("queued", 0), ("processing", 8), ("completed", 14)])
    held = relay.subscribe("job_held", receiver.url("/held"))
    live = relay.subscribe("job_live", receiver.url("/live"))
    eventually_sync(lambda: receiver.types("/live") == ["job.queued"], 20, what="job_live queued")
    eventually_sync(
        lambda: len(relay.get(f"/v1/subscriptions/{held['id']}/deliveries")["data"]) == 2, 20,
        what="two pending events for /held")
    before = relay.get(f"/v1/subscriptions/{held['id']}/deliveries")["data"]
    assert [d["status"] for d in before] == ["pending", "pending"]
    assert relay.get("/v1/jobs/job_live")["watching"] is True

    own_redis.shutdown()
    assert relay.client.get("/readyz").status_code == 503
    worker.wait_for_log("redis unavailable")  # down for a while: the worker noticed
    own_redis.start()
    back_at = time.monotonic()

    # Nothing was restarted but Redis: both processes must carry on by themselves.
    eventually_sync(lambda: relay.client.get("/readyz").status_code == 200, 15,
                    what="API ready again")
    assert relay.get(f"/v1/subscriptions/{live['id']}")["state"] == "active"
    after = relay.get(f"/v1/subscriptions/{held['id']}/deliveries")["data"]
    assert [d["id"] for d in after] == [d["id"] for d in before]
    assert relay.get("/v1/jobs/job_live")["watching"] is True
    sim_job(simulator, "job_after", [("queued", 0), ("completed", 2)])
    relay.subscribe("job_after", receiver.url("/after"))  # the API writes again too

    receiver.plan.pop("/held")
    expected = ["job.queued", "job.processing", "job.completed"]

    def arrived() -> bool:
        if worker.proc.poll() is not None:  # fail now, not at the bound
            raise AssertionError("the worker exited when Redis restarted (it must reconnect):"
                                 f"\n{worker.text()[-1500:]}")
        return (receiver.types("/held") == expected and receiver.types("/live") == expected
                and receiver.types("/after")[-1:] == ["job.completed"])

    try:
        eventually_sync(arrived, RESTART_BOUND - (time.monotonic() - back_at), what="every event")
    except AssertionError:
        got = {p: receiver.types(p) for p in ("/held", "/live", "/after")}
        raise AssertionError(
            f"expected {expected} at /held and /live, got {got}; worker alive: "
            f"{worker.proc.poll() is None}\n{worker.text()[-3000:]}") from None
    assert worker.proc.poll() is None, "the worker must survive a Redis restart"
    # The pending events kept their webhook-ids across the restart.
    held_ids = [d["id"] for d in before]
    assert [r.webhook_id for r in receiver.received if r.path == "/held"][:2] == held_ids
    # A retry through the API (which queues through its own, reconnected, arq pool) is sent.
    first = relay.get(f"/v1/subscriptions/{live['id']}/deliveries")["data"][0]["id"]
    retried = relay.client.post(f"/v1/subscriptions/{live['id']}/deliveries/{first}/retry")
    assert retried.status_code == 202, retried.text
    eventually_sync(lambda: [r.webhook_id for r in receiver.received].count(first) == 2, 15,
               what="the retried event")
    assert receiver.rejected == []


# ---------------------------------------------------------------- 5. SIGTERM


def test_api_sigterm_finishes_requests_in_flight(
    relays: list[Relay], clean_redis: str, simulator: str, receiver: Receiver
) -> None:
    """SIGTERM to the API while requests are in flight (bodies half sent): each completes
    with its normal answer (no reset), new connections are refused, and the exit code is 0.
    Bound: the API exits within 20 s of the last request finishing."""
    relay = new_relay(relays, simulator)
    api = relay.start_api()
    release = threading.Event()
    sent_half: list[threading.Event] = []
    results: dict[int, Any] = {}

    def slow_post(i: int) -> None:
        half = threading.Event()
        sent_half.append(half)
        body = (b'{"job_id": "job_term_%d", ' % i, b'"url": "%s"}' % receiver.url(f"/t{i}")
                .encode())

        def chunks() -> Iterator[bytes]:
            yield body[0]
            half.set()
            release.wait(20)
            yield body[1]

        try:
            with httpx.Client(timeout=30) as client:
                response = client.post(f"http://127.0.0.1:{relay.port}/v1/subscriptions",
                                       content=chunks(),
                                       headers={"authorization": f"Bearer {TOKEN}",
                                                "content-type": "application/json"})
            results[i] = response.status_code
        except httpx.HTTPError as exc:
            results[i] = repr(exc)

    threads = [threading.Thread(target=slow_post, args=(i,)) for i in range(5)]
    for thread in threads:
        thread.start()
    eventually_sync(lambda: len(sent_half) == 5 and all(e.is_set() for e in sent_half), 10,
               what="every request to be half sent")
    eventually_sync(lambda: accepted_connections(api.proc.pid, relay.port) == 5, 10,
                    what="the API to hold the five requests")
    api.proc.send_signal(15)

    def refusing() -> bool:
        try:
            httpx.get(f"http://127.0.0.1:{relay.port}/healthz", timeout=1)
        except httpx.ConnectError:
            return True
        except httpx.HTTPError:
            return False
        return False

    eventually_sync(refusing, 10, what="the API to stop accepting connections")
    assert api.proc.poll() is None, "the API must wait for requests in flight"
    release.set()
    for thread in threads:
        thread.join(30)
    assert results == dict.fromkeys(range(5), 201)
    assert api.terminate(timeout=20) == 0, api.text()[-2000:]
    with Redis.from_url(clean_redis, decode_responses=True) as r:
        assert len(r.keys(keys.sub("*"))) == 5  # each one was stored


def test_worker_sigterm_finishes_the_delivery_in_flight(
    relays: list[Relay], clean_redis: str, simulator: str, receiver: Receiver
) -> None:
    """SIGTERM to a worker while a webhook attempt is in flight (receiver takes 2 s,
    RELAY_DELIVERY_TIMEOUT 5 s): the attempt finishes and is recorded as succeeded, the
    worker exits 0, and nothing is sent twice. Bound: exit within the documented
    RELAY_DELIVERY_TIMEOUT + 5 s (+5 s of process slack)."""
    relay = new_relay(relays, simulator, RELAY_DELIVERY_TIMEOUT="5s", RELAY_LOG_LEVEL="DEBUG")
    relay.start_api()
    worker = relay.add_worker("worker")
    receiver.delay["/slow"] = 2.0
    sim_job(simulator, "job_term", [("completed", 0)])
    sub = relay.subscribe("job_term", receiver.url("/slow"))
    eventually_sync(lambda: receiver.attempts, 15, what="the attempt to reach the receiver")

    worker.proc.send_signal(15)
    assert worker.terminate(timeout=15) == 0, worker.text()[-3000:]
    assert receiver.types("/slow") == ["job.completed"]
    deliveries = relay.get(f"/v1/subscriptions/{sub['id']}/deliveries")["data"]
    assert [(d["status"], len(d["attempts"])) for d in deliveries] == [("succeeded", 1)]
    assert relay.get(f"/v1/subscriptions/{sub['id']}")["state"] == "done"

    # Another worker finds nothing left to send: its first sweep (at start-up) restarts nothing.
    relay.add_worker("next").wait_for_log("sweep restarted 0 chains")
    assert [p for p, _ in receiver.attempts] == ["/slow"]
