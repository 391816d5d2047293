"""The whole path in one process: API registers, the worker polls the simulator and delivers."""

from __future__ import annotations

import httpx
from arq.worker import Worker

from tests.conftest import Receiver, eventually, sim_job


async def test_status_changes_arrive_in_order(
    api: httpx.AsyncClient, worker: Worker, simulator: str, receiver: Receiver
) -> None:
    sim_job(simulator, "job_flow", [("queued", 0), ("processing", 0.3), ("completed", 0.8)])
    response = await api.post("/v1/subscriptions", json={"job_id": "job_flow",
                                                         "url": receiver.url("/a")})
    assert response.status_code == 201

    await eventually(lambda: receiver.types("/a") == ["job.queued", "job.processing",
                                                     "job.completed"])
    assert receiver.rejected == []
    sub = (await api.get(response.headers["location"])).json()
    assert sub["state"] == "done"
    assert sub["last_status"] == "completed"
