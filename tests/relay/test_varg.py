"""relay.varg.VargClient.get_job over httpx.MockTransport: every answer mapped to an Outcome."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from relay.upstream.client import MAX_ERROR, Outcome, PollResult, VargClient, unreachable

Handler = Callable[[httpx.Request], httpx.Response]
JOB = {"job_id": "job_1", "status": "completed", "model": "fal:kling-v2.5",
       "created_at": "2026-02-13T10:00:00Z", "completed_at": "2026-02-13T10:02:30Z",
       "output": {"url": "https://s3.varg.ai/o/job_1.mp4", "media_type": "video/mp4"}}


async def get_job(handler: Handler, api_key: str | None = "varg_key") -> PollResult:
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = VargClient("https://api.varg.test/v1/", api_key, http)
        return await client.get_job("job_1")


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.Response(status, content=content, headers=headers)

    return handler


def varg_error(name: str, code: int) -> dict[str, Any]:
    return {"error": name, "message": "no", "statusCode": code}


async def test_ok() -> None:
    result = await get_job(answer(200, JOB))
    assert result.outcome is Outcome.ok
    assert result.job == JOB
    assert result.status == "completed"
    assert result.status_code == 200
    assert result.duration >= 0


async def test_unknown_status_is_still_ok() -> None:
    result = await get_job(answer(200, {**JOB, "status": "upscaling"}))
    assert result.outcome is Outcome.ok
    assert result.status == "upscaling"


@pytest.mark.parametrize("missing", ["job_id", "status", "model", "created_at"])
async def test_missing_required_field_is_malformed(missing: str) -> None:
    body = {k: v for k, v in JOB.items() if k != missing}
    result = await get_job(answer(200, body))
    assert result.outcome is Outcome.malformed
    assert result.job is None
    assert result.status is None


@pytest.mark.parametrize(
    "body", [{**JOB, "status": 3}, {**JOB, "created_at": None}, [JOB], "completed", None]
)
async def test_wrong_shape_is_malformed(body: Any) -> None:
    assert (await get_job(answer(200, body))).outcome is Outcome.malformed


@pytest.mark.parametrize("content", [b"", b"<html>502</html>", b'{"job_id": ', b"\xff\xfe\xfd"])
async def test_bad_json_is_malformed(content: bytes) -> None:
    assert (await get_job(answer(200, content))).outcome is Outcome.malformed


async def test_401_is_unauthorized() -> None:
    result = await get_job(answer(401, varg_error("AuthError", 401)))
    assert result.outcome is Outcome.unauthorized
    assert result.status_code == 401
    assert result.job is None


async def test_404_is_not_found() -> None:
    result = await get_job(answer(404, varg_error("NotFoundError", 404)))
    assert result.outcome is Outcome.not_found


async def test_429_with_retry_after() -> None:
    result = await get_job(answer(429, varg_error("RateLimitError", 429), {"Retry-After": "17"}))
    assert result.outcome is Outcome.rate_limited
    assert result.retry_after == 17.0


async def test_429_without_retry_after() -> None:
    result = await get_job(answer(429, varg_error("RateLimitError", 429)))
    assert result.outcome is Outcome.rate_limited
    assert result.retry_after is None


@pytest.mark.parametrize("code", [500, 502, 503, 504])
async def test_5xx_is_server_error(code: int) -> None:
    result = await get_job(answer(code, varg_error("ProviderError", code)))
    assert result.outcome is Outcome.server_error
    assert result.status_code == code


async def test_503_keeps_retry_after() -> None:
    result = await get_job(answer(503, b"", {"Retry-After": "30"}))
    assert result.retry_after == 30.0


async def test_transport_timeout() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    result = await get_job(handler)
    assert result.outcome is Outcome.timeout
    assert result.status_code is None


async def test_connection_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    result = await get_job(handler)
    assert result.outcome is Outcome.timeout
    assert result.status_code is None


async def test_bearer_header_and_url() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=JOB)

    await get_job(handler)
    assert [str(r.url) for r in seen] == ["https://api.varg.test/v1/jobs/job_1"]
    assert seen[0].method == "GET"
    assert seen[0].headers["authorization"] == "Bearer varg_key"


async def test_no_key_no_authorization_header() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(401, json=varg_error("AuthError", 401))

    await get_job(handler, api_key=None)
    assert "authorization" not in seen[0].headers


@pytest.mark.parametrize("code", [200, 429])
async def test_rate_limit_headers_captured(code: int) -> None:
    headers = {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0",
               "X-RateLimit-Reset": "30", "X-Request-Id": "abc"}
    result = await get_job(answer(code, JOB, headers))
    assert result.rate_headers == {"x-ratelimit-limit": "100", "x-ratelimit-remaining": "0",
                                   "x-ratelimit-reset": "30"}


async def test_no_rate_limit_headers() -> None:
    assert (await get_job(answer(200, JOB))).rate_headers == {}


async def test_no_answer_says_why_and_where() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno -2] Name or service not known", request=request)

    result = await get_job(handler)
    assert result.error == "api.varg.test:443: ConnectError: [Errno -2] Name or service not known"


async def test_a_timeout_without_text_is_named_by_its_kind() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("", request=request)

    assert (await get_job(handler)).error == "api.varg.test:443: ReadTimeout"


@pytest.mark.parametrize("code", [200, 401, 404, 500])
async def test_an_answer_has_no_error(code: int) -> None:
    assert (await get_job(answer(code, JOB if code == 200 else {}))).error is None


async def probe(handler: Handler, base_url: str = "https://api.varg.test/v1/") -> str | None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        return await VargClient(base_url, "varg_key", http).probe()


@pytest.mark.parametrize("code", [200, 401, 404, 503])
async def test_probe_counts_any_status_as_an_answer(code: int) -> None:
    assert await probe(answer(code, {})) is None


async def test_probe_spends_no_budget_of_the_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(404)

    await probe(handler)
    assert [str(r.url) for r in seen] == ["https://api.varg.test/v1"]
    assert "authorization" not in seen[0].headers


async def test_probe_says_why_it_got_no_answer() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("All connection attempts failed", request=request)

    reason = await probe(handler, "http://simulator:8001/v1")
    assert reason == "simulator:8001: ConnectError: All connection attempts failed"


def test_unreachable_only_when_nothing_answered() -> None:
    assert unreachable(["a:1: ConnectError", "a:1: ReadTimeout"]) == "a:1: ConnectError"
    assert unreachable(["a:1: ConnectError", None]) is None
    assert unreachable([None]) is None
    assert unreachable([]) is None


async def test_a_long_reason_is_cut() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("x" * 1000, request=request)

    assert len((await get_job(handler)).error or "") == MAX_ERROR
