"""An upstream that misbehaves: a body that trickles, a body too large, numbers and strings that
are not strict JSON. A real HTTP server plays Varg; the worker, Redis and receiver are real."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from relay.store import keys
from relay.upstream.client import BODY_MAX_BYTES, Outcome, VargClient
from tests.conftest import (
    SIM_KEY,
    Receiver,
    ServerThread,
    SettingsFactory,
    api_client,
    eventually,
    running_worker,
)


def job(job_id: str, **extra: Any) -> dict[str, Any]:
    return {"job_id": job_id, "status": "completed", "model": "fal:flux-schnell",
            "created_at": "2026-02-13T10:00:00.000Z", **extra}


async def trickle(job_id: str) -> AsyncIterator[bytes]:
    """A JobResponse one byte at a time, five a second: 60 s for the first 300 bytes. httpx's
    per-read timeout never fires."""
    yield b"{"
    for _ in range(300):
        await asyncio.sleep(0.2)
        yield b" "
    yield json.dumps(job(job_id)).encode()[1:]


async def padded(job_id: str, size: int) -> AsyncIterator[bytes]:
    """A job of about `size` bytes, sent chunked (no content-length to go by)."""
    body = json.dumps(job(job_id, padding="x" * size)).encode()
    for start in range(0, len(body), 64 * 1024):
        yield body[start:start + 64 * 1024]


def varg_app() -> Starlette:
    """Varg, badly behaved by job id prefix; any other id is a completed job."""

    async def get_job(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        kind = job_id.split("-")[0]
        if kind == "trickle":
            return StreamingResponse(trickle(job_id), media_type="application/json")
        if kind == "huge":  # with a content-length
            return Response(json.dumps(job(job_id, padding="x" * 30 * 1024 * 1024)),
                            media_type="application/json")
        if kind == "hugechunked":
            return StreamingResponse(padded(job_id, 2 * BODY_MAX_BYTES), media_type="x")
        if kind == "fits":
            return StreamingResponse(padded(job_id, BODY_MAX_BYTES - 1024), media_type="x")
        if kind == "nan":
            raw = (f'{{"job_id": "{job_id}", "status": "completed", "model": "m\\ud800", '
                   '"created_at": "2026-02-13T10:00:00.000Z", "progress": NaN, '
                   '"cost": 1e999, "eta": -Infinity, "output": {"seed": Infinity}}')
            return Response(raw, media_type="application/json")
        return Response(json.dumps(job(job_id)), media_type="application/json")

    return Starlette(routes=[Route("/v1/jobs/{job_id}", get_job)])


@pytest.fixture
def varg() -> Iterator[str]:
    with ServerThread(varg_app()) as server:
        yield server.url


def polls(outcome: str) -> float:
    return REGISTRY.get_sample_value("relay_polls_total", {"outcome": outcome}) or 0.0


def strict(raw: bytes) -> Any:
    def refuse(name: str) -> None:
        raise AssertionError(f"{name} is not JSON")

    return json.loads(raw.decode("utf-8"), parse_constant=refuse)


# --- the client alone ----------------------------------------------------------------------


async def client_get(varg: str, job_id: str, deadline: float = 10.0) -> Any:
    async with httpx.AsyncClient() as http:
        client = VargClient(varg + "/v1", SIM_KEY, http, deadline=deadline)
        # A client without a whole-request deadline would wait out the trickle (60 s).
        return await asyncio.wait_for(client.get_job(job_id), 30)


async def test_a_trickling_body_ends_at_the_deadline(varg: str) -> None:
    result = await client_get(varg, "trickle-1", deadline=0.5)
    assert result.outcome is Outcome.timeout and result.job is None


@pytest.mark.parametrize("job_id", ["huge-1", "hugechunked-1"])
async def test_a_body_past_the_cap_is_malformed_and_not_kept(varg: str, job_id: str) -> None:
    result = await client_get(varg, job_id)
    assert result.outcome is Outcome.malformed and result.job is None
    assert result.status_code == 200


async def test_a_body_within_the_cap_is_a_job(varg: str) -> None:
    result = await client_get(varg, "fits-1")
    assert result.outcome is Outcome.ok and result.status == "completed"


async def test_numbers_that_are_not_json_become_null(varg: str) -> None:
    result = await client_get(varg, "nan-1")
    assert result.outcome is Outcome.ok
    assert result.job == {**job("nan-1", model="m\ufffd"), "progress": None, "cost": None,
                          "eta": None, "output": {"seed": None}}


# --- through a worker ----------------------------------------------------------------------


async def subscribe(api: httpx.AsyncClient, job_id: str, url: str) -> str:
    response = await api.post("/v1/subscriptions", json={"job_id": job_id, "url": url})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_a_trickling_upstream_does_not_hold_the_other_jobs_of_its_batch(
    make_settings: SettingsFactory, redis: Redis, varg: str, receiver: Receiver
) -> None:
    """Subscribed before the worker starts, the three jobs are polled in one batch. The
    trickling one is given up at RELAY_UPSTREAM_TIMEOUT (1 s here); without a whole-request
    deadline the batch, and the other two webhooks, would wait for its 60 s body."""
    settings = make_settings(VARG_API_URL=varg + "/v1", RELAY_UPSTREAM_TIMEOUT="1s")
    timeouts = polls("timeout")
    async with api_client(settings) as api:
        for job_id in ("trickle-2", "fine-1", "fine-2"):
            await subscribe(api, job_id, receiver.url("/" + job_id))
        async with running_worker(settings):
            await eventually(lambda: receiver.types("/fine-1") == ["job.completed"]
                             and receiver.types("/fine-2") == ["job.completed"], timeout=15)
            await eventually(lambda: polls("timeout") > timeouts, timeout=15)
        view = (await api.get("/v1/jobs/trickle-2")).json()
    assert view["job"] is None and view["watching"] is True
    assert receiver.types("/trickle-2") == []


async def test_an_oversized_job_is_neither_stored_nor_sent(
    make_settings: SettingsFactory, redis: Redis, varg: str, receiver: Receiver
) -> None:
    """A 30 MB JobResponse is an upstream error: read no further than the cap, nothing kept in
    Redis, no webhook, polling backs off as for any malformed answer."""
    settings = make_settings(VARG_API_URL=varg + "/v1")
    malformed = polls("malformed")
    async with api_client(settings) as api:
        await subscribe(api, "huge-2", receiver.url("/huge"))
        await subscribe(api, "fine-3", receiver.url("/fine"))
        async with running_worker(settings):
            await eventually(lambda: receiver.types("/fine") == ["job.completed"], timeout=15)
            await eventually(lambda: polls("malformed") > malformed, timeout=15)
        view = (await api.get("/v1/jobs/huge-2")).json()
    assert view["job"] is None and view["status"] is None and view["polls"] >= 1
    assert not await redis.exists(keys.job("huge-2"))
    assert receiver.types("/huge") == []
    assert max([await redis.memory_usage(k) or 0 async for k in redis.scan_iter()]) < 64 * 1024


async def test_non_finite_numbers_and_lone_surrogates_upstream_reach_nobody(
    make_settings: SettingsFactory, redis: Redis, varg: str, receiver: Receiver
) -> None:
    """Varg answering NaN, 1e999, -Infinity and a lone surrogate: the webhook body, the job
    view and the delivery log are strict JSON, with null (and U+FFFD) in their place."""
    settings = make_settings(VARG_API_URL=varg + "/v1")
    async with api_client(settings) as api:
        sid = await subscribe(api, "nan-2", receiver.url("/nan"))
        async with running_worker(settings):
            await eventually(lambda: receiver.types("/nan") == ["job.completed"], timeout=15)
        job_view = await api.get("/v1/jobs/nan-2")
        log = await api.get(f"/v1/subscriptions/{sid}/deliveries")
    assert job_view.status_code == 200 and log.status_code == 200
    expected = {**job("nan-2", model="m\ufffd"), "progress": None, "cost": None, "eta": None,
                "output": {"seed": None}}
    assert strict(job_view.content)["job"] == expected
    delivery = strict(log.content)["data"][0]
    assert delivery["payload"]["data"]["job"] == expected
    assert receiver.events("/nan")[0]["data"]["job"] == expected
    strict(delivery_body(await redis.hget(keys.msg(delivery["id"]), "body")))
    assert receiver.rejected == []


def delivery_body(body: str | None) -> bytes:
    assert body is not None
    return body.encode()
