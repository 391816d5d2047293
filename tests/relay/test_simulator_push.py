"""The simulator's v1 job stream, its v2 API and its v2 webhooks, over real HTTP."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from relay.devtools.simulator import create_simulator
from relay.upstream.stream import SSEParser, SSEvent
from tests.conftest import SIM_KEY, ServerThread, eventually, sim_job

AUTH = {"authorization": f"Bearer {SIM_KEY}"}


def read_events(url: str, timeout: float = 10.0) -> tuple[list[SSEvent], list[bytes], float]:
    """(events, raw chunks, seconds the stream stayed open) of one stream connection."""
    parser, events, chunks = SSEParser(), [], []
    started = time.monotonic()
    with httpx.stream("GET", url, headers=AUTH, timeout=timeout) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for chunk in response.iter_bytes():
            chunks.append(chunk)
            events += parser.feed(chunk)
    return events, chunks, time.monotonic() - started


def configure(simulator: str, **body: Any) -> None:
    httpx.post(simulator + "/_sim/config", json=body).raise_for_status()


def stats(simulator: str) -> dict[str, Any]:
    found: dict[str, Any] = httpx.get(simulator + "/_sim/stats").json()
    return found


# --- v1 stream ---------------------------------------------------------------------------------


def test_stream_sends_each_change_as_the_job_json_and_closes_at_terminal(
    simulator: str,
) -> None:
    sim_job(simulator, "job_s", [("queued", 0), ("processing", 0.3), ("completed", 0.6)])
    events, _, _ = read_events(f"{simulator}/v1/jobs/job_s/stream")
    assert [e.event for e in events] == ["status"] * 3
    jobs = [httpx.Response(200, content=e.data).json() for e in events]
    assert [j["status"] for j in jobs] == ["queued", "processing", "completed"]
    polled = httpx.get(f"{simulator}/v1/jobs/job_s", headers=AUTH).json()
    assert jobs[-1] == polled  # the same shape a poll returns
    assert stats(simulator)["by_job"] == {"job_s": 2}  # one connection, one poll


def test_stream_keepalives_and_time_limit(simulator: str) -> None:
    configure(simulator, keepalive=0.05, stream_limit=0.4)
    sim_job(simulator, "job_k", [("processing", 0), ("completed", 60)])
    events, chunks, lasted = read_events(f"{simulator}/v1/jobs/job_k/stream")
    assert [json_status(e) for e in events] == ["processing"]
    assert sum(c.count(b": keepalive") for c in chunks) >= 3
    assert 0.3 < lasted < 5


def json_status(event: SSEvent) -> str:
    return str(httpx.Response(200, content=event.data).json()["status"])


def test_stream_off_answers_404(simulator: str) -> None:
    configure(simulator, stream=False)
    sim_job(simulator, "job_n", [("processing", 0)])
    response = httpx.get(f"{simulator}/v1/jobs/job_n/stream", headers=AUTH)
    assert response.status_code == 404
    assert httpx.get(f"{simulator}/v1/jobs/job_n", headers=AUTH).status_code == 200
    httpx.post(simulator + "/_sim/reset").raise_for_status()
    assert httpx.post(simulator + "/_sim/config", json={}).json()["stream"] is True


@pytest.mark.parametrize(("job", "code"), [("job_missing", 404), ("job_x", 401)])
def test_stream_errors(simulator: str, job: str, code: int) -> None:
    sim_job(simulator, "job_x", [("processing", 0)])
    headers = AUTH if code != 401 else {}
    assert httpx.get(f"{simulator}/v1/jobs/{job}/stream", headers=headers).status_code == code


def test_faults_apply_to_streams(simulator: str) -> None:
    sim_job(simulator, "job_f", [("processing", 0), ("completed", 0.2)])
    httpx.post(simulator + "/_sim/faults", json={"mode": "502", "count": 1}).raise_for_status()
    assert httpx.get(f"{simulator}/v1/jobs/job_f/stream", headers=AUTH).status_code == 502
    httpx.post(simulator + "/_sim/faults", json={"mode": "malformed", "count": 1})
    events, _, _ = read_events(f"{simulator}/v1/jobs/job_f/stream")
    assert events == [SSEvent("status", "{not json")]


def test_a_stream_counts_against_the_rate_limit() -> None:
    with ServerThread(create_simulator(api_key=SIM_KEY, rate_limit=2)) as server:
        httpx.post(server.url + "/_sim/jobs", json={"job_id": "j", "timeline": [
            {"status": "completed", "after": 0}]}).raise_for_status()
        read_events(f"{server.url}/v1/jobs/j/stream")
        assert httpx.get(f"{server.url}/v1/jobs/j", headers=AUTH).status_code == 200
        assert httpx.get(f"{server.url}/v1/jobs/j/stream", headers=AUTH).status_code == 429


async def test_streams_open_are_counted_while_open(simulator: str) -> None:
    sim_job(simulator, "job_o", [("processing", 0)])
    async with httpx.AsyncClient() as client, client.stream(
        "GET", f"{simulator}/v1/jobs/job_o/stream", headers=AUTH
    ) as response:
        assert response.status_code == 200
        await eventually(lambda: stats(simulator)["streams_open"] == 1)
    await eventually(lambda: stats(simulator)["streams_open"] == 0)
    assert stats(simulator)["streams_opened"] == 1


# --- v2 ----------------------------------------------------------------------------------------


def test_v2_job_shape(simulator: str) -> None:
    sim_job(simulator, "job_v", [("queued", 0), ("processing", 0.1), ("completed", 0.2)],
            model="fal:kling-v2.5")
    running = httpx.get(f"{simulator}/v2/jobs/job_v", headers=AUTH).json()
    assert running["id"] == "job_v" and "job_id" not in running
    assert running["status"] in ("queued", "running")
    assert running["input"] == {"model": "fal:kling-v2.5"}
    time.sleep(0.25)
    done = httpx.get(f"{simulator}/v2/jobs/job_v", headers=AUTH).json()
    assert done["status"] == "completed"
    assert done["output"]["outputs"][0]["media_type"] == "video/mp4"
    status = httpx.get(f"{simulator}/v2/jobs/job_v/status", headers=AUTH).json()
    assert status == {"id": "job_v", "status": "completed", "progress": 1.0,
                      "progress_message": "completed (100%)"}


def test_v2_errors_use_the_v2_envelope(simulator: str) -> None:
    missing = httpx.get(f"{simulator}/v2/jobs/nope", headers=AUTH)
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": "job_not_found", "message": "Job not found"}}
    assert httpx.get(f"{simulator}/v2/jobs/nope").json()["error"]["code"] == "unauthorized"
    httpx.post(simulator + "/_sim/faults", json={"mode": "429", "count": 1, "retry_after": 3})
    limited = httpx.get(f"{simulator}/v2/jobs/nope", headers=AUTH)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "3"
    assert limited.json()["error"]["code"] == "rate_limited"
    assert httpx.get(f"{simulator}/v2/jobs/nope/stream", headers=AUTH).status_code == 404


def test_v2_failed_job_error_object(simulator: str) -> None:
    sim_job(simulator, "job_e", [("failed", 0)], error="NSFW")
    body = httpx.get(f"{simulator}/v2/jobs/job_e", headers=AUTH).json()
    assert body["error"] == {"code": "provider_error", "message": "NSFW"}


# --- v2 webhooks -----------------------------------------------------------------------------

HOOK_SECRET = "varg_hook_secret_0123456789"


class Hooks:
    def __init__(self, plan: list[int]) -> None:
        self.plan = plan
        self.got: list[tuple[dict[str, str], bytes]] = []

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            self.got.append((dict(request.headers), await request.body()))
            code = self.plan.pop(0) if self.plan else 200
            return JSONResponse({}, status_code=code)

        return Starlette(routes=[Route("/hook", hook, methods=["POST"])])


@pytest.fixture
def signed_sim() -> Iterator[str]:
    app = create_simulator(api_key=SIM_KEY, webhook_secret=HOOK_SECRET)
    with ServerThread(app) as server:
        yield server.url


async def test_a_v2_webhook_at_the_terminal_status_signed_and_retried(signed_sim: str) -> None:
    hooks = Hooks([500])
    with ServerThread(hooks.app()) as receiver:
        sim_job(signed_sim, "job_w", [("queued", 0), ("completed", 0.2)],
                webhook_url=receiver.url + "/hook")
        await eventually(lambda: len(hooks.got) == 2)
    headers, body = hooks.got[1]
    assert headers["x-varg-event"] == "job.completed"
    signed = headers["x-varg-timestamp"].encode() + b"." + body
    digest = hmac.new(HOOK_SECRET.encode(), signed, hashlib.sha256).hexdigest()
    assert headers["x-varg-signature"] == "v1=" + digest
    assert abs(int(headers["x-varg-timestamp"]) / 1000 - time.time()) < 60
    assert httpx.Response(200, content=body).json()["id"] == "job_w"
    attempts = httpx.get(signed_sim + "/_sim/webhooks").json()["data"]
    assert [(a["attempt"], a["status_code"]) for a in attempts] == [(1, 500), (2, 200)]


def test_webhook_url_must_be_http(simulator: str) -> None:
    response = httpx.post(simulator + "/_sim/jobs", json={"webhook_url": "ftp://x"})
    assert response.status_code == 400
    assert response.json()["field"] == "webhook_url"
