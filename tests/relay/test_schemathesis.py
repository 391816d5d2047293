"""Property tests of the relay API against its own OpenAPI document (schemathesis).

Every operation of `/openapi.json` gets generated requests, valid and (where it has inputs)
invalid, sent with a valid bearer token (negative cases may drop it, testing 401). Every answer
must not be a 5xx, must use a documented status code and content type, and must conform to the
documented schema. The app's lifespan runs in schemathesis's own event loop thread, over a
flushed Redis; a second test seeds a real subscription, delivery and watched job so that the
200/202/204 schemas of the id-taking routes are exercised too. (Operations are parametrized by
hand: `schemathesis.pytest.from_fixture` reads `request.node._nodeid`, gone in pytest 9.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis as redis_sync
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.python import asgi as st_asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import Route

from config import Settings
from relay.api.openapi import openapi_document
from relay.app import create_app
from tests.conftest import REDIS_URL, TOKEN, Receiver, running_worker, sim_job

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
AUTH = {"authorization": f"Bearer {TOKEN}"}
EXAMPLES = 25


def flush_redis() -> None:
    client = redis_sync.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    finally:
        client.close()


OPERATIONS = [
    ("POST", "/v1/subscriptions"), ("GET", "/v1/subscriptions"),
    ("GET", "/v1/subscriptions/{sid}"), ("DELETE", "/v1/subscriptions/{sid}"),
    ("GET", "/v1/subscriptions/{sid}/deliveries"),
    ("POST", "/v1/subscriptions/{sid}/deliveries/{mid}/retry"),
    ("GET", "/v1/jobs/{job_id}"), ("POST", "/v1/ingest/varg"), ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"), ("GET", "/openapi.json"),
]


@pytest.fixture
def loaded(settings: Settings) -> Iterator[Any]:
    """The schema as the app serves it, bound to that app (its lifespan runs on first use)."""
    flush_redis()
    try:
        yield schemathesis.openapi.from_asgi("/openapi.json", create_app(settings))
    finally:
        st_asgi.shutdown_lifespans()  # the lifespan schemathesis started for this app


def fuzz(operation: Any, real_ids: dict[str, str] | None = None) -> None:
    """`EXAMPLES` generated requests; with `real_ids`, about half use those path values."""

    strategy = operation.as_strategy(GenerationMode.POSITIVE)
    if operation.path_parameters or operation.query or operation.body:
        strategy |= operation.as_strategy(GenerationMode.NEGATIVE)

    @given(case=strategy, real=st.booleans())
    @hsettings(max_examples=EXAMPLES, deadline=None, database=None,
               suppress_health_check=list(HealthCheck))
    def run(case: Any, real: bool) -> None:
        if real and real_ids:
            for name in list(case.path_parameters or {}):
                case.path_parameters[name] = real_ids.get(name, case.path_parameters[name])
            if case.query:
                case.query.pop("cursor", None)
        case.call_and_validate(headers=AUTH, checks=CHECKS)

    run()


def test_schema_documents_every_route(settings: Settings) -> None:
    routes = {(method, route.path) for route in create_app(settings).routes
              if isinstance(route, Route) for method in route.methods or () if method != "HEAD"}
    documented = {(method.upper(), path) for path, item in openapi_document()["paths"].items()
                  for method in item}
    assert routes == documented == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_operation_conforms_and_never_5xx(loaded: Any, method: str, path: str) -> None:
    fuzz(loaded[path][method])


# ---- with real ids: the success schemas of the id-taking routes ----------------------------


@pytest.fixture
async def seeded(settings: Settings, simulator: str, receiver: Receiver) -> dict[str, str]:
    """A completed job with one subscription whose delivery failed once then succeeded."""
    flush_redis()
    receiver.plan["/seed"] = [500]
    app = create_app(settings)
    async with app.router.lifespan_context(app), running_worker(settings):
        # Created once the worker runs, so its first look finds it queued (two events).
        sim_job(simulator, "job_seed", [("queued", 0), ("completed", 0.5)])
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://relay",
                                     headers=AUTH) as client:
            created = await client.post("/v1/subscriptions", json={
                "job_id": "job_seed", "url": receiver.url("/seed"),
                "metadata": {"k": [1, None, "x"]}})
            sid = created.json()["id"]

            async def delivered() -> list[dict[str, Any]]:
                answer = await client.get(f"/v1/subscriptions/{sid}/deliveries")
                return list(answer.json()["data"])

            async def all_succeeded() -> bool:
                data = await delivered()
                return len(data) >= 2 and all(d["status"] == "succeeded" for d in data)

            await eventually_async(all_succeeded)
            mid = (await delivered())[0]["id"]
    return {"sid": sid, "mid": mid, "job_id": "job_seed"}


async def eventually_async(check: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "the seeded deliveries did not succeed"
        await asyncio.sleep(0.05)


ID_OPERATIONS = [op for op in OPERATIONS if "{" in op[1]] + [("GET", "/v1/subscriptions")]


@pytest.mark.parametrize(("method", "path"), ID_OPERATIONS)
def test_success_answers_conform_with_real_ids(
    settings: Settings, seeded: dict[str, str], method: str, path: str
) -> None:
    api = schemathesis.openapi.from_asgi("/openapi.json", create_app(settings))
    try:
        operation = api[path][method]
        fuzz(operation, seeded)
        probe = operation.Case(
            path_parameters={k: seeded[k] for k in ("sid", "mid", "job_id") if "{" + k in path},
            query={"job_id": seeded["job_id"]} if path == "/v1/subscriptions" else None,
        )
        response = probe.call_and_validate(headers=AUTH, checks=CHECKS)
        assert response.status_code in (200, 202, 204)
    finally:
        st_asgi.shutdown_lifespans()


def test_ingest_with_a_secret_conforms_and_never_5xx(make_settings: Any) -> None:
    """With VARG_WEBHOOK_SECRET set, generated webhooks (all unsigned or forged) get 400/401,
    never a 5xx or an undocumented answer."""
    flush_redis()
    settings = make_settings(VARG_WEBHOOK_SECRET="vhook_fuzz_secret_0123456789")
    api = schemathesis.openapi.from_asgi("/openapi.json", create_app(settings))
    try:
        fuzz(api["/v1/ingest/varg"]["POST"])
    finally:
        st_asgi.shutdown_lifespans()
