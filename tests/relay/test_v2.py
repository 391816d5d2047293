"""relay.upstream.v2: Varg's v2 job read as the one shape the relay uses."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from relay.events import EventType, event_for, is_terminal
from relay.upstream.client import Outcome, PollResult, VargClient
from relay.upstream.policy import decide
from relay.upstream.runtimes import Limits, PollPolicy
from relay.upstream.v2 import api_base, classify_v2, normalise, parse_v2_job

V2_JOB: dict[str, Any] = {
    "id": "job_a1b2c3d4e5f6", "status": "running", "tool": "video",
    "input": {"model": "kling_v3", "prompt": "a bird"}, "created_at": "2026-02-13T10:00:00Z",
    "urls": {"self": "https://api.varg.ai/v2/jobs/job_a1b2c3d4e5f6"},
}


def test_normalise_reads_id_status_and_input_model() -> None:
    assert normalise(V2_JOB) == {"job_id": "job_a1b2c3d4e5f6", "status": "running",
                                 "model": "kling_v3", "created_at": "2026-02-13T10:00:00Z"}


def test_normalise_falls_back_to_the_tool_and_keeps_completed_at() -> None:
    job = {"id": "j", "status": "completed", "tool": "image", "completed_at": "2026-02-13T10:01Z"}
    assert normalise(job) == {"job_id": "j", "status": "completed", "model": "image",
                              "created_at": "", "completed_at": "2026-02-13T10:01Z"}


@pytest.mark.parametrize("job", [
    {"job_id": "j", "status": "queued"},  # a v1 job is not a v2 job
    {"id": 7, "status": "queued"},
    {"id": "j"},
    {"id": "j", "status": ""},
])
def test_not_a_v2_job(job: dict[str, Any]) -> None:
    assert normalise(job) is None


@pytest.mark.parametrize("body", [b"[]", b"{oops", b'{"id": "j", "status": NaN}', b"null"])
def test_unreadable_bodies(body: bytes) -> None:
    assert parse_v2_job(body) is None


def test_classify_keeps_the_job_as_received() -> None:
    response = httpx.Response(200, json=V2_JOB, headers={"X-RateLimit-Limit": "100"})
    result = classify_v2(response, 0.0, response.content)
    assert result.outcome is Outcome.ok
    assert result.status == "running"
    assert result.received == V2_JOB
    assert result.rate_headers == {"x-ratelimit-limit": "100"}


@pytest.mark.parametrize(("code", "outcome"), [
    (404, Outcome.not_found), (401, Outcome.unauthorized), (429, Outcome.rate_limited),
    (503, Outcome.server_error),
])
def test_v2_errors_classify_by_status_code(code: int, outcome: Outcome) -> None:
    body = {"error": {"code": "job_not_found", "message": "Job not found"}}
    response = httpx.Response(code, json=body)
    assert classify_v2(response, 0.0, response.content).outcome is outcome


def test_a_v1_body_from_a_v2_url_is_malformed() -> None:
    v1 = {"job_id": "j", "status": "queued", "model": "m", "created_at": "x"}
    response = httpx.Response(200, json=v1)
    assert classify_v2(response, 0.0, response.content).outcome is Outcome.malformed


@pytest.mark.parametrize(("url", "version", "base"), [
    ("https://api.varg.ai/v1", "v2", "https://api.varg.ai/v2"),
    ("https://api.varg.ai/v1/", "v2", "https://api.varg.ai/v2"),
    ("https://api.varg.ai/v2", "v2", "https://api.varg.ai/v2"),
    ("http://sim:8001/v1", "v1", "http://sim:8001/v1"),
    ("https://proxy.example/varg", "v2", "https://proxy.example/varg"),
])
def test_api_base(url: str, version: str, base: str) -> None:
    assert api_base(url, version) == base


@pytest.mark.parametrize(("status", "event"), [
    ("submitting", EventType.processing), ("running", EventType.processing),
    ("queued", EventType.queued), ("completed", EventType.completed),
])
def test_v2_statuses_map_to_events(status: str, event: EventType) -> None:
    assert event_for(status) == event
    assert not is_terminal("running")


def test_a_v2_decision_announces_the_job_as_received() -> None:
    response = httpx.Response(200, json=V2_JOB)
    result = classify_v2(response, 0.0, response.content)
    limits = Limits(60.0, 1.0, 60.0)
    d = decide("job_a1b2c3d4e5f6", "t", {}, result, 1.77e9, limits, PollPolicy())
    assert d.status == "running"
    assert d.model == "kling_v3"
    assert d.job is not None and json.loads(d.job) == V2_JOB
    assert d.lua()["event_type"] == "job.processing"


async def test_client_polls_v2_jobs_by_id() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json=V2_JOB)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = VargClient("https://api.varg.ai/v2", "k", http, classify_v2)
        result: PollResult = await client.get_job("job_a1b2c3d4e5f6")
    assert seen == ["https://api.varg.ai/v2/jobs/job_a1b2c3d4e5f6"]
    assert result.outcome is Outcome.ok and result.duration >= 0
