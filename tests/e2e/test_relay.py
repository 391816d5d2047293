"""End to end: the simulator, the API and two worker processes, a receiver that verifies every
signature with standardwebhooks, 20+ jobs with mixed endings, and a worker killed with SIGKILL
in the middle of a delivery."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from redis import Redis

from tests.conftest import REDIS_URL, Receiver, sim_job
from tests.e2e.processes import Relay
from tests.support import eventually_sync

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.redis]

FLOW = [("queued", 0), ("processing", 1.5), ("completed", 3.0)]
FLOW_EVENTS = ["job.queued", "job.processing", "job.completed"]


@pytest.fixture
def relay(simulator: str) -> Iterator[Relay]:
    Redis.from_url(REDIS_URL).flushdb()
    r = Relay(simulator)
    r.start_api()
    yield r
    codes = r.stop()
    assert set(codes.values()) <= {0}, codes  # every process stops cleanly on SIGTERM


def test_relay_end_to_end(relay: Relay, simulator: str, receiver: Receiver) -> None:
    # A worker dies with SIGKILL while a delivery to a slow receiver is in flight.
    victim = relay.add_worker("victim")
    receiver.delay["/slow"] = 1.0
    sim_job(simulator, "job_slow", [("completed", 0)])
    slow = relay.subscribe("job_slow", receiver.url("/slow"))
    eventually_sync(lambda: receiver.attempts, 10,
                    what="the first attempt to reach the slow receiver")
    victim.kill()
    receiver.delay.pop("/slow")
    relay.add_worker("worker-1")
    relay.add_worker("worker-2")

    # (path, job_id, upstream timeline or None for a job that never exists, expected events)
    fail = [("queued", 0), ("processing", 1.5), ("failed", 3.0)]
    odd = [("queued", 0), ("upscaling", 1.5), ("completed", 3.0)]
    cases = [(f"/ok{i}", f"job_ok_{i}", FLOW, FLOW_EVENTS) for i in range(8)]
    cases += [(f"/fail{i}", f"job_fail_{i}", fail, ["job.queued", "job.processing",
                                                   "job.failed"]) for i in range(3)]
    for i in range(2):
        cases += [
            (f"/cancel{i}", f"job_cancel_{i}", [("queued", 0), ("cancelled", 1.5)],
             ["job.queued", "job.cancelled"]),
            (f"/odd{i}", f"job_odd_{i}", odd, ["job.queued", "job.status_changed",
                                               "job.completed"]),
            (f"/before{i}", f"job_before_{i}", [("queued", 0), ("completed", 0)],
             ["job.completed"]),
        ]
    cases += [
        ("/shared1", "job_shared", FLOW, FLOW_EVENTS),
        ("/shared2", "job_shared", None, FLOW_EVENTS),
        ("/control", "job_control", FLOW, FLOW_EVENTS),
        ("/filtered", "job_filtered", FLOW, ["job.completed"]),
        ("/flaky", "job_flaky", FLOW, FLOW_EVENTS),
        ("/missing", "job_never_existed", None, ["job.not_found"]),
    ]
    receiver.plan["/flaky"] = [500, 500]
    receiver.plan["/gone"] = [410]

    expected = {path: events for path, _, _, events in cases}
    subs: dict[str, dict[str, Any]] = {}
    for path, job_id, timeline, _ in cases:
        if timeline is not None:
            sim_job(simulator, job_id, timeline, error="provider exploded")
        extra = {"events": ["job.completed"]} if path == "/filtered" else {}
        subs[path] = relay.subscribe(job_id, receiver.url(path), metadata={"path": path},
                                     **extra)
    sim_job(simulator, "job_gone", FLOW)
    gone = relay.subscribe("job_gone", receiver.url("/gone"))
    assert len(subs) >= 20

    def all_arrived() -> bool:
        # The killed worker never recorded its slow attempt, so another worker sends it again.
        slow_attempts = [p for p, _ in receiver.attempts if p == "/slow"]
        return all(receiver.types(p) == e for p, e in expected.items()) and len(slow_attempts) > 1

    try:
        eventually_sync(all_arrived, 60, what="every status change at every receiver")
    except AssertionError:
        got = {p: receiver.types(p) for p in [*expected, "/slow"]}
        raise AssertionError(f"expected {expected}\ngot {got}") from None

    assert receiver.rejected == []  # every request carried a valid signature
    for path, events in expected.items():
        assert receiver.types(path) == events, path
        bodies = receiver.events(path)
        # A filtered subscription still learns the statuses it does not want to hear about.
        first_previous = "processing" if path == "/filtered" else None
        assert bodies[0]["data"]["previous_status"] == first_previous
        for before, after in itertools.pairwise(bodies):
            assert after["data"]["previous_status"] == before["data"]["status"]
        assert all(b["data"]["metadata"] == {"path": path} for b in bodies)
        assert all(b["data"]["subscription_id"] == subs[path]["id"] for b in bodies)
    assert receiver.events("/fail0")[-1]["data"]["job"]["error"] == "provider exploded"

    # The slow delivery that was in flight when its worker died arrived, with its webhook-id.
    slow_ids = [wid for path, wid in receiver.attempts if path == "/slow"]
    assert len(set(slow_ids)) == 1 and len(slow_ids) >= 2
    eventually_sync(lambda: relay.subscription(slow["id"])["state"] == "done", 10, what="slow done")

    # A receiver failing twice saw the same webhook-id three times.
    flaky_ids = Counter(wid for path, wid in receiver.attempts if path == "/flaky")
    assert sorted(flaky_ids.values()) == [1, 1, 3]

    # 410 disables: one attempt, nothing more.
    eventually_sync(lambda: relay.subscription(gone["id"])["state"] == "disabled", 10,
                    what="disabled")
    # The 410 was recorded in the same atomic step that dropped the subscription's pending
    # events, and a disabled subscription gets no new ones: nothing more can be sent.
    assert [p for p, _ in receiver.attempts].count("/gone") == 1

    # Two subscriptions on one job share one upstream schedule.
    by_job = httpx.get(simulator + "/_sim/stats").json()["by_job"]
    assert by_job["job_shared"] <= by_job["job_control"] + 1
    view = relay.client.get("/v1/jobs/job_shared").json()
    assert len(view["subscriptions"]) == 2
    assert view["status"] == "completed"

    for path in ("/ok0", "/filtered", "/missing"):
        eventually_sync(lambda p=path: relay.subscription(subs[p]["id"])["state"] == "done", 10,
                        what=path)
