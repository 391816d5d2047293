"""Tests for the local Varg API simulator (relay.devtools.simulator)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from relay.devtools.simulator import Step, create_simulator, status_at, visible_changes

T0 = 1_760_000_000.0
KEY = "varg_sim"
AUTH = {"Authorization": f"Bearer {KEY}"}


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def client_for(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim")


@pytest.fixture
async def client(clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(create_simulator(clock=clock)) as c:
        yield c


@pytest.fixture
async def limited(clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(create_simulator(rate_limit=3, clock=clock)) as c:
        yield c


async def make_job(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/_sim/jobs", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def get_job(client: httpx.AsyncClient, job_id: str) -> httpx.Response:
    return await client.get(f"/v1/jobs/{job_id}", headers=AUTH)


async def add_fault(client: httpx.AsyncClient, **body: Any) -> None:
    response = await client.post("/_sim/faults", json=body)
    assert response.status_code == 201, response.text


# --- pure helpers ----------------------------------------------------------------------------


def test_status_at_picks_last_passed_step() -> None:
    timeline = [("queued", 0.0), ("processing", 2.0), ("completed", 6.0)]
    assert status_at(timeline, 0) == "queued"
    assert status_at(timeline, 5.9) == "processing"
    assert status_at(timeline, 6) == "completed"
    assert status_at(timeline, 1e9) == "completed"


def test_status_at_none_before_first_step() -> None:
    assert status_at([("queued", 1.0)], 0.5) is None
    assert status_at([], 10) is None


def test_status_at_later_step_wins_a_tie() -> None:
    assert status_at([("queued", 0.0), ("processing", 0.0)], 0) == "processing"


def test_visible_changes_hides_steps_before_appearance_and_repeats() -> None:
    timeline = [Step("queued", 0), Step("processing", 2), Step("processing", 3), Step("done", 9)]
    assert visible_changes(timeline, 5) == [Step("processing", 5), Step("done", 9)]


# --- GET /v1/jobs/{job_id} -------------------------------------------------------------------


async def test_missing_auth_is_401_in_seed_shape(client: httpx.AsyncClient) -> None:
    await make_job(client, job_id="job_a")
    response = await client.get("/v1/jobs/job_a")
    assert response.status_code == 401
    assert response.json() == {
        "error": "AuthError",
        "message": "Invalid API key",
        "statusCode": 401,
    }


async def test_wrong_key_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/jobs/job_a", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    response = await client.get("/v1/jobs/job_a", headers={"Authorization": KEY})
    assert response.status_code == 401


async def test_custom_api_key(clock: FakeClock) -> None:
    async with client_for(create_simulator(api_key="varg_other", clock=clock)) as c:
        assert (await get_job(c, "x")).status_code == 401
        ok = await c.get("/v1/jobs/x", headers={"Authorization": "Bearer varg_other"})
        assert ok.status_code == 404


async def test_unknown_job_is_404(client: httpx.AsyncClient) -> None:
    response = await get_job(client, "job_missing")
    assert response.status_code == 404
    assert response.json() == {
        "error": "NotFoundError",
        "message": "Job not found",
        "statusCode": 404,
    }


async def test_default_timeline_progresses(client: httpx.AsyncClient, clock: FakeClock) -> None:
    await make_job(client, job_id="job_a")
    body = (await get_job(client, "job_a")).json()
    assert body["status"] == "queued"
    assert body["model"] == "fal:flux-schnell"
    assert body["created_at"] == "2025-10-09T08:53:20Z"
    assert "completed_at" not in body and "output" not in body and "error" not in body
    assert body["cache"]["hit"] is False
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", body["cache"]["key"])
    clock.advance(2)
    assert (await get_job(client, "job_a")).json()["status"] == "processing"
    clock.advance(4)
    body = (await get_job(client, "job_a")).json()
    assert body["status"] == "completed"
    assert body["completed_at"] == "2025-10-09T08:53:26Z"
    assert body["output"] == {"url": "https://s3.varg.ai/o/job_a.png", "media_type": "image/png"}


@pytest.mark.parametrize(
    ("model", "url_suffix", "media_type"),
    [
        ("fal:kling-v2.5", "mp4", "video/mp4"),
        ("elevenlabs:eleven_v3", "mp3", "audio/mpeg"),
        ("fal:flux-pro", "png", "image/png"),
    ],
)
async def test_output_media_type_follows_model(
    client: httpx.AsyncClient, model: str, url_suffix: str, media_type: str
) -> None:
    await make_job(client, job_id="job_m", model=model, timeline=[{"status": "completed"}])
    output = (await get_job(client, "job_m")).json()["output"]
    assert output == {"url": f"https://s3.varg.ai/o/job_m.{url_suffix}", "media_type": media_type}


async def test_output_given_at_creation_is_used(client: httpx.AsyncClient) -> None:
    output = {"url": "https://example.com/a.webm", "media_type": "video/webm"}
    await make_job(client, job_id="job_o", output=output, timeline=[{"status": "completed"}])
    assert (await get_job(client, "job_o")).json()["output"] == output


async def test_a_cache_hit_says_so(client: httpx.AsyncClient) -> None:
    await make_job(client, job_id="job_c", cache_hit=True, timeline=[{"status": "completed"}])
    await make_job(client, job_id="job_n", timeline=[{"status": "completed"}])
    assert (await get_job(client, "job_c")).json()["cache"]["hit"] is True
    assert (await get_job(client, "job_n")).json()["cache"]["hit"] is False


async def test_failed_job_has_error(client: httpx.AsyncClient, clock: FakeClock) -> None:
    timeline = [{"status": "queued", "after": 0}, {"status": "failed", "after": 3}]
    await make_job(client, job_id="job_f", timeline=timeline, error="NSFW content detected")
    clock.advance(3.5)
    body = (await get_job(client, "job_f")).json()
    assert body["status"] == "failed"
    assert body["error"] == "NSFW content detected"
    assert body["completed_at"] == "2025-10-09T08:53:23Z"
    assert "output" not in body


async def test_cancelled_job_has_completed_at_only(client: httpx.AsyncClient) -> None:
    await make_job(client, job_id="job_c", timeline=[{"status": "cancelled", "after": 0}])
    body = (await get_job(client, "job_c")).json()
    assert body["status"] == "cancelled"
    assert "completed_at" in body
    assert "output" not in body and "error" not in body


async def test_unknown_status_passes_through(client: httpx.AsyncClient, clock: FakeClock) -> None:
    timeline = [{"status": "processing", "after": 0}, {"status": "upscaling", "after": 1}]
    await make_job(client, job_id="job_u", timeline=timeline)
    clock.advance(1)
    body = (await get_job(client, "job_u")).json()
    assert body["status"] == "upscaling"
    assert "completed_at" not in body


async def test_appears_after_answers_404_until_then(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await make_job(client, job_id="job_late", appears_after=5)
    assert (await get_job(client, "job_late")).status_code == 404
    clock.advance(4.9)
    assert (await get_job(client, "job_late")).status_code == 404
    clock.advance(0.1)
    response = await get_job(client, "job_late")
    assert response.status_code == 200
    assert response.json()["status"] == "processing"


async def test_job_404_before_first_timeline_step(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await make_job(client, job_id="job_s", timeline=[{"status": "queued", "after": 2}])
    assert (await get_job(client, "job_s")).status_code == 404
    clock.advance(2)
    assert (await get_job(client, "job_s")).json()["status"] == "queued"


# --- control API -----------------------------------------------------------------------------


async def test_create_generates_job_id(client: httpx.AsyncClient) -> None:
    created = await make_job(client)
    assert re.fullmatch(r"job_[0-9a-f]{12}", created["job_id"])
    assert (await get_job(client, created["job_id"])).status_code == 200


async def test_control_view_lists_past_changes(client: httpx.AsyncClient, clock: FakeClock) -> None:
    created = await make_job(client, job_id="job_v")
    assert created["current"] == "queued"
    assert created["changes"] == [{"status": "queued", "at": T0}]
    clock.advance(3)
    view = (await client.get("/_sim/jobs/job_v")).json()
    assert view["job_id"] == "job_v"
    assert view["model"] == "fal:flux-schnell"
    assert view["created_at"] == "2025-10-09T08:53:20Z"
    assert view["current"] == "processing"
    assert view["timeline"] == [
        {"status": "queued", "after": 0.0},
        {"status": "processing", "after": 2.0},
        {"status": "completed", "after": 6.0},
    ]
    assert view["changes"] == [
        {"status": "queued", "at": T0},
        {"status": "processing", "at": T0 + 2},
    ]


async def test_control_view_changes_start_when_job_appears(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await make_job(client, job_id="job_v", appears_after=4)
    clock.advance(10)
    view = (await client.get("/_sim/jobs/job_v")).json()
    assert view["changes"] == [
        {"status": "processing", "at": T0 + 4},
        {"status": "completed", "at": T0 + 6},
    ]


async def test_control_view_unknown_job_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/_sim/jobs/nope")
    assert response.status_code == 404
    assert response.json()["error"] == "NotFoundError"


async def test_list_jobs(client: httpx.AsyncClient) -> None:
    await make_job(client, job_id="job_1")
    await make_job(client, job_id="job_2")
    data = (await client.get("/_sim/jobs")).json()["data"]
    assert [job["job_id"] for job in data] == ["job_1", "job_2"]


async def test_repost_replaces_job(client: httpx.AsyncClient, clock: FakeClock) -> None:
    await make_job(client, job_id="job_r")
    clock.advance(10)
    assert (await get_job(client, "job_r")).json()["status"] == "completed"
    await make_job(client, job_id="job_r", model="fal:kling-v2.5")
    body = (await get_job(client, "job_r")).json()
    assert body["status"] == "queued"
    assert body["model"] == "fal:kling-v2.5"


async def test_unknown_route_is_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v2/nothing")
    assert response.status_code == 404
    assert response.json()["error"] == "NotFoundError"


# --- faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (
            "500",
            {
                "error": "InternalError",
                "message": "An unexpected error occurred",
                "statusCode": 500,
            },
        ),
        (
            "502",
            {
                "error": "ProviderError",
                "message": "Provider returned an error",
                "provider": "fal",
                "statusCode": 502,
            },
        ),
        ("401", {"error": "AuthError", "message": "Invalid API key", "statusCode": 401}),
    ],
)
async def test_error_faults_use_seed_error_shape(
    client: httpx.AsyncClient, mode: str, expected: dict[str, Any]
) -> None:
    await make_job(client, job_id="job_a")
    await add_fault(client, mode=mode, count=1)
    response = await get_job(client, "job_a")
    assert response.status_code == expected["statusCode"]
    assert response.json() == expected
    assert (await get_job(client, "job_a")).status_code == 200


async def test_429_fault_has_retry_after(client: httpx.AsyncClient) -> None:
    await add_fault(client, mode="429", count=2, retry_after=7)
    for _ in range(2):
        response = await get_job(client, "any")
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "7"
        assert response.json() == {
            "error": "RateLimitError",
            "message": "Rate limit exceeded",
            "statusCode": 429,
        }
    assert (await get_job(client, "any")).status_code == 404


async def test_429_fault_default_retry_after_is_1(client: httpx.AsyncClient) -> None:
    await add_fault(client, mode="429", count=1)
    assert (await get_job(client, "any")).headers["Retry-After"] == "1"


async def test_timeout_fault_delays_then_answers(client: httpx.AsyncClient) -> None:
    await make_job(client, job_id="job_a")
    await add_fault(client, mode="timeout", count=1, delay=0.01)
    response = await get_job(client, "job_a")
    assert response.status_code == 200
    assert response.json()["status"] == "queued"


async def test_malformed_fault_returns_broken_json(client: httpx.AsyncClient) -> None:
    await add_fault(client, mode="malformed", count=1)
    response = await get_job(client, "job_a")
    assert response.status_code == 200
    assert response.text == "{not json"


async def test_missing_fields_fault(client: httpx.AsyncClient, clock: FakeClock) -> None:
    await make_job(client, job_id="job_a")
    clock.advance(2)
    await add_fault(client, mode="missing_fields", count=1)
    response = await get_job(client, "job_a")
    assert response.status_code == 200
    assert response.json() == {"job_id": "job_a", "status": "processing"}


async def test_faults_queue_in_order(client: httpx.AsyncClient) -> None:
    await add_fault(client, mode="500", count=1)
    await add_fault(client, mode="502", count=1)
    listed = (await client.get("/_sim/faults")).json()["data"]
    assert [f["mode"] for f in listed] == ["500", "502"]
    assert (await get_job(client, "x")).status_code == 500
    assert (await get_job(client, "x")).status_code == 502
    assert (await get_job(client, "x")).status_code == 404


async def test_bad_key_does_not_consume_fault(client: httpx.AsyncClient) -> None:
    await add_fault(client, mode="500", count=1)
    assert (await client.get("/v1/jobs/x")).status_code == 401
    assert (await get_job(client, "x")).status_code == 500


# --- rate limit ------------------------------------------------------------------------------


async def test_rate_limit_headers_count_down(limited: httpx.AsyncClient) -> None:
    for remaining in ("2", "1", "0"):
        response = await get_job(limited, "x")
        assert response.status_code == 404
        assert response.headers["X-RateLimit-Limit"] == "3"
        assert response.headers["X-RateLimit-Remaining"] == remaining
        assert response.headers["X-RateLimit-Reset"] == str(int(T0 + 60))


async def test_rate_limit_rejects_over_budget(limited: httpx.AsyncClient, clock: FakeClock) -> None:
    for _ in range(3):
        await get_job(limited, "x")
    clock.advance(20.5)
    response = await get_job(limited, "x")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "40"
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert response.json() == {
        "error": "RateLimitError",
        "message": "Rate limit exceeded",
        "statusCode": 429,
    }


async def test_rate_limit_window_slides(limited: httpx.AsyncClient, clock: FakeClock) -> None:
    await get_job(limited, "x")
    clock.advance(30)
    await get_job(limited, "x")
    await get_job(limited, "x")
    assert (await get_job(limited, "x")).status_code == 429
    clock.advance(30)  # the first request leaves the window
    response = await get_job(limited, "x")
    assert response.status_code == 404
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert response.headers["X-RateLimit-Reset"] == str(int(T0 + 90))
    assert (await get_job(limited, "x")).status_code == 429


async def test_rejected_requests_do_not_fill_window(
    limited: httpx.AsyncClient, clock: FakeClock
) -> None:
    for _ in range(3):
        await get_job(limited, "x")
    for _ in range(5):
        assert (await get_job(limited, "x")).status_code == 429
    clock.advance(60)
    assert (await get_job(limited, "x")).headers["X-RateLimit-Remaining"] == "2"


async def test_no_rate_limit_headers_without_limit(client: httpx.AsyncClient) -> None:
    assert "X-RateLimit-Limit" not in (await get_job(client, "x")).headers


async def test_rate_limited_requests_count_as_429(limited: httpx.AsyncClient) -> None:
    for _ in range(4):
        await get_job(limited, "x")
    stats = (await limited.get("/_sim/stats")).json()
    assert stats["by_code"] == {"404": 3, "429": 1}


def test_rate_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rate_limit"):
        create_simulator(rate_limit=0)


# --- stats and reset -------------------------------------------------------------------------


async def test_stats_count_requests(client: httpx.AsyncClient) -> None:
    await make_job(client, job_id="job_a")
    await get_job(client, "job_a")
    await get_job(client, "job_a")
    await get_job(client, "job_b")
    await client.get("/v1/jobs/job_a")
    await client.get("/_sim/jobs/job_a")  # control requests are not counted
    stats = (await client.get("/_sim/stats")).json()
    assert stats == {
        "requests": 4,
        "by_code": {"200": 2, "404": 1, "401": 1},
        "by_job": {"job_a": 3, "job_b": 1},
        "streams_opened": 0,
        "streams_open": 0,
    }


async def test_reset_clears_everything(limited: httpx.AsyncClient) -> None:
    await make_job(limited, job_id="job_a")
    for _ in range(3):
        await get_job(limited, "job_a")
    await add_fault(limited, mode="500", count=5)
    response = await limited.post("/_sim/reset")
    assert response.status_code == 200
    assert (await limited.get("/_sim/stats")).json() == {
        "requests": 0, "by_code": {}, "by_job": {}, "streams_opened": 0, "streams_open": 0}
    assert (await limited.get("/_sim/faults")).json() == {"data": []}
    response = await get_job(limited, "job_a")
    assert response.status_code == 404
    assert response.headers["X-RateLimit-Remaining"] == "2"


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"job_id": ""}, "job_id"),
        ({"job_id": "has space"}, "job_id"),
        ({"job_id": 5}, "job_id"),
        ({"model": ""}, "model"),
        ({"model": 3}, "model"),
        ({"timeline": []}, "timeline"),
        ({"timeline": "queued"}, "timeline"),
        ({"timeline": ["queued"]}, "timeline[0]"),
        ({"timeline": [{"after": 1}]}, "timeline[0].status"),
        ({"timeline": [{"status": "queued", "after": -1}]}, "timeline[0].after"),
        ({"timeline": [{"status": "queued", "after": "1"}]}, "timeline[0].after"),
        ({"timeline": [{"status": "queued", "after": True}]}, "timeline[0].after"),
        ({"timeline": [{"status": "queued", "when": 1}]}, "when"),
        (
            {"timeline": [{"status": "a", "after": 5}, {"status": "b", "after": 1}]},
            "timeline[1].after",
        ),
        ({"output": "x"}, "output"),
        ({"output": {"url": 1}}, "output.url"),
        ({"error": None}, "error"),
        ({"appears_after": -0.1}, "appears_after"),
        ({"cache_hit": "yes"}, "cache_hit"),
        ({"colour": "blue"}, "colour"),
    ],
)
async def test_create_job_validation(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/_sim/jobs", json=body)
    assert response.status_code == 400
    payload = response.json()
    assert payload["error"] == "ValidationError"
    assert payload["field"] == field
    assert payload["statusCode"] == 400
    assert payload["message"]


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'"text"', b"NaN"])
async def test_create_job_rejects_non_object_body(
    client: httpx.AsyncClient, content: bytes
) -> None:
    response = await client.post("/_sim/jobs", content=content)
    assert response.status_code == 400
    assert response.json()["error"] == "ValidationError"


async def test_create_job_rejects_non_finite_offsets(client: httpx.AsyncClient) -> None:
    content = b'{"timeline": [{"status": "queued", "after": Infinity}]}'
    response = await client.post("/_sim/jobs", content=content)
    assert response.status_code == 400
    assert response.json()["field"] == "timeline[0].after"


async def test_create_job_empty_body_uses_defaults(client: httpx.AsyncClient) -> None:
    response = await client.post("/_sim/jobs")
    assert response.status_code == 201
    assert response.json()["model"] == "fal:flux-schnell"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"count": 1}, "mode"),
        ({"mode": "503", "count": 1}, "mode"),
        ({"mode": "500"}, "count"),
        ({"mode": "500", "count": 0}, "count"),
        ({"mode": "500", "count": 1.5}, "count"),
        ({"mode": "429", "count": 1, "retry_after": -1}, "retry_after"),
        ({"mode": "timeout", "count": 1, "delay": "slow"}, "delay"),
        ({"mode": "500", "count": 1, "extra": 1}, "extra"),
    ],
)
async def test_fault_validation(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/_sim/faults", json=body)
    assert response.status_code == 400
    assert response.json()["field"] == field
    assert (await client.get("/_sim/faults")).json() == {"data": []}
