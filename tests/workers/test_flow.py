"""The whole path in one process: API registers, the worker polls the simulator and delivers."""

from __future__ import annotations

import asyncio

import httpx
from arq.worker import Worker

from config import Settings
from relay.worker import running_worker
from tests.conftest import Receiver, eventually, sim_job


async def test_status_changes_arrive_in_order(
    api: httpx.AsyncClient, worker: Worker, simulator: str, receiver: Receiver
) -> None:
    sim_job(simulator, "job_flow", [("queued", 0), ("processing", 1.0), ("completed", 1.5)])
    response = await api.post("/v1/subscriptions", json={"job_id": "job_flow",
                                                         "url": receiver.url("/a")})
    assert response.status_code == 201

    await eventually(lambda: receiver.types("/a") == ["job.queued", "job.processing",
                                                     "job.completed"])
    assert receiver.rejected == []

    async def state() -> dict[str, str]:
        body: dict[str, str] = (await api.get(response.headers["location"])).json()
        return body

    for _ in range(100):  # the state is recorded just after the receiver answers
        if (sub := await state())["state"] == "done":
            break
        await asyncio.sleep(0.02)
    assert sub["state"] == "done"
    assert sub["last_status"] == "completed"


async def test_the_poller_wakes_delivery_without_waiting_for_the_queue_poll(
    api: httpx.AsyncClient, settings: Settings, simulator: str, receiver: Receiver
) -> None:
    """arq looks at its queue only every `poll_delay`; here a minute. The poller wakes its own
    worker when it queues a delivery, so the webhook still arrives at once. Bound: 15 s."""
    sim_job(simulator, "job_wake", [("completed", 0)])
    async with running_worker(settings, poll_delay=60.0):
        await asyncio.sleep(0.5)  # past the worker's first look at its (empty) queue
        response = await api.post("/v1/subscriptions", json={"job_id": "job_wake",
                                                             "url": receiver.url("/wake")})
        assert response.status_code == 201
        await eventually(lambda: receiver.types("/wake") == ["job.completed"])
