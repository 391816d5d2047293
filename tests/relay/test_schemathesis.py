"""Property tests of the relay API against its own OpenAPI document (schemathesis).

The first test is what a user would run: `st run --checks all` with every phase (examples,
coverage, fuzzing and the stateful phase, which chains create, read, list and delete through
the links it infers) against a real `varg-relay api` process over a flushed Redis. Every check
runs but `use_after_free`: a deleted subscription stays readable, with state `deleted`, until
RELAY_RETENTION passes, as the contract's states and the schema say.

The others seed a real subscription, delivery and watched job so that the 200/202/204 schemas
of the id-taking routes are exercised too, in process. (Operations are parametrized by hand:
`schemathesis.pytest.from_fixture` reads `request.node._nodeid`, gone in pytest 9.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
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
from relay.devtools.redis_server import free_port
from tests.conftest import REDIS_URL, TOKEN, Receiver, env_for, running_worker, sim_job
from tests.e2e.processes import start_api
from tests.support import eventually

pytestmark = [pytest.mark.slow, pytest.mark.redis]

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
    ("GET", "/v1/jobs/{job_id}"), ("GET", "/v1/jobs"), ("GET", "/v1/jobs/{job_id}/events"),
    ("GET", "/v1/deliveries"), ("POST", "/v1/deliveries/retry"), ("GET", "/v1/upstream"),
    ("POST", "/v1/ingest/varg"),
    ("GET", "/healthz"), ("GET", "/readyz"),
    ("GET", "/metrics"), ("GET", "/openapi.json"),
]


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


ST = str(Path(sys.executable).with_name("st"))
EVERY_CHECK_BUT = "use_after_free"  # deleted subscriptions stay readable, as documented
ST_EXAMPLES = 25


def test_st_run_with_every_check_and_phase_finds_nothing(
    simulator: str, tmp_path: Path
) -> None:
    flush_redis()
    port = free_port()
    # With VARG_WEBHOOK_SECRET set, the ingest route checks its signature (401 without one).
    api = start_api(env_for(simulator, RELAY_LOG_LEVEL="WARNING",
                            VARG_WEBHOOK_SECRET="vhook_schemathesis"), port)
    try:
        result = subprocess.run(
            [ST, "run", f"http://127.0.0.1:{port}/openapi.json", "--checks", "all",
             "--exclude-checks", EVERY_CHECK_BUT, "--phases", "examples,coverage,fuzzing,stateful",
             "--max-examples", str(ST_EXAMPLES), "-H", f"Authorization: Bearer {TOKEN}",
             "--no-color"],
            cwd=tmp_path, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        )
    finally:
        assert api.terminate() == 0, api.text()[-2000:]
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    assert "Stateful" in result.stdout and "failures" not in result.stdout.split("SUMMARY")[-1]


# ---- with real ids: the success schemas of the id-taking routes ----------------------------


@pytest.fixture
async def seeded(settings: Settings, simulator: str, receiver: Receiver) -> dict[str, str]:
    """A completed job with one subscription whose first delivery failed once then succeeded
    (the relay may see the job queued first, or only completed)."""
    flush_redis()
    receiver.plan["/seed"] = [500]
    app = create_app(settings)
    async with app.router.lifespan_context(app), running_worker(settings):
        # Made once the worker runs, and `queued` for a second: on a busy machine a first poll
        # later than that would see only `completed`, one delivery where two are awaited.
        sim_job(simulator, "job_seed", [("queued", 0), ("completed", 1.0)])
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
                return bool(data) and data[-1]["event_type"] == "job.completed" and all(
                    d["status"] == "succeeded" for d in data)

            await eventually(all_succeeded, what="the seeded deliveries")
            mid = (await delivered())[0]["id"]
    return {"sid": sid, "mid": mid, "job_id": "job_seed"}


ID_OPERATIONS = [op for op in OPERATIONS if "{" in op[1]] + [
    ("GET", "/v1/subscriptions"), ("GET", "/v1/jobs"), ("GET", "/v1/deliveries")]


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
